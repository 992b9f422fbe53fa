"""Run onnxc's generated CUDA kernels on a real GPU: correctness against references, and timings.

    python scripts/gpu_check.py              # on a machine with an NVIDIA GPU, nvcc and CuPy
    python scripts/gpu_check.py --dry-run    # anywhere with nvcc: build, render, compile only

For each model of tests/cuda_models.py (small correctness models, and bigger BENCH models) it
plans the model as runtime/build.py does, renders one CUDA module, compiles it with nvcc (one
call: sm_80, sm_90, the GPU's own arch, and PTX), loads the fatbin with CuPy, uploads weights
once, then per run does one host->device copy per input, every launch in plan order, and one
device->host copy per output. Outputs are checked against onnxruntime (or numpy, where
cuda_models says so) and timed with CUDA events: median of --runs runs, kernels only and end to
end with copies, next to onnxruntime on the CPU for scale.

CuPy drives these timings (it is on the GPU machines; pycuda is not). ``--pycuda`` runs the node
cases through onnxc's own pycuda driver instead (scripts/gpu_check.sh builds pycuda there from
the sdist it brings). PyTorch runs the same graphs on the same GPU for the "torch ms" column
(scripts/torch_ref.py), with TF32 off like onnxc.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def bootstrap_onnxc() -> None:
    """Import onnxc from this checkout even where it is not pip-installed (package-dir map)."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]
    try:
        import onnxc  # noqa: F401

        return
    except ImportError:
        pass
    import importlib.abc
    import importlib.util
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        mapping = tomllib.load(f)["tool"]["setuptools"]["package-dir"]

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in mapping:
                return None
            folder = ROOT / mapping[name]
            return importlib.util.spec_from_file_location(
                name, folder / "__init__.py", submodule_search_locations=[str(folder)])

    sys.meta_path.insert(0, Finder())


class GpuPlan:
    """A plan's module loaded on the GPU with its buffers and pre-built launch arguments."""

    def __init__(self, cp, plan, module, raw):
        self.cp, self.plan, self.module = cp, plan, module
        self.fns = {e: raw.get_function(e) for e in module.entries}
        self.consts = [cp.asarray(np.ascontiguousarray(c)) for c in plan.constants]  # once
        self.inputs = [cp.empty(s.shape, s.dtype) for s in plan.inputs]
        self.outputs = [cp.empty(s.shape, s.dtype) for s in plan.outputs]
        for o in self.outputs:  # NaN bytes: an element no kernel writes cannot pass by luck
            o.reshape(-1).view(cp.uint8)[...] = 255
        self.arena = cp.empty(max(plan.arena_bytes, 1), cp.uint8)  # 256-byte aligned
        tables = {"input": self.inputs, "output": self.outputs, "const": self.consts}
        self.launches = []
        for ln in module.launches:
            if ln.total == 0:
                continue
            args = tuple(self.arena[i:] if region == "arena" else tables[region][i]
                         for region, i in ln.slots)
            self.launches.append((self.fns[ln.entry], (ln.grid,), (ln.block,), args))

    def kernels(self) -> None:
        for fn, grid, block, args in self.launches:
            fn(grid, block, args)

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        for dev, host in zip(self.inputs, feeds):
            host = np.asarray(host)  # not ascontiguousarray: it makes 0-d arrays 1-d
            dev.set(host if host.flags.c_contiguous else np.array(host, order="C"))
        self.kernels()
        return [o.get() for o in self.outputs]


def median_ms(cp, fn, runs: int) -> float:
    for _ in range(3):
        fn()
    cp.cuda.Device().synchronize()
    times = []
    for _ in range(runs):
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end))
    return statistics.median(times)


def ort_ms(model, feeds: dict, runs: int) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sess.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def compare(got, ref, rtol: float, atol: float) -> tuple[bool, float]:
    worst, ok = 0.0, True
    for g, r in zip(got, ref):
        r = np.asarray(r)
        if g.dtype != r.dtype or g.shape != r.shape:
            return False, float("inf")
        g64, r64 = g.astype(np.float64), r.astype(np.float64)
        both_nan = np.isnan(g64) & np.isnan(r64)
        diff = np.where(both_nan, 0.0, np.abs(g64 - r64))
        worst = max(worst, float(np.nanmax(diff, initial=0.0)))
        ok &= bool(np.all((diff <= atol + rtol * np.abs(r64)) | both_nan))
    return ok, worst


def node_cases(cp, archs: list[str], tmp: str, pycuda: bool = False) -> int:
    """Every ONNX node test case that passes on the cpu backend, all in one module; run with
    CuPy, or with ``pycuda`` through onnxc's own driver (backends/cuda/driver.py: one
    GpuModule per case, constants uploaded once, one copy in and out per run)."""
    import cuda_models
    from onnxc.backends.cuda import compile_cuda, render_module
    from onnxc.backends.cuda.codegen import merge_modules
    from onnxc.runtime.build import plan_for_model

    jobs, failures, unplanned = [], {}, []
    for case, feeds, outputs in cuda_models.node_cases():
        try:
            plan = plan_for_model(case.model, feeds)
        except Exception:  # the core's business: test_onnx_node_cases.py
            unplanned.append(case.name)
            continue
        try:
            jobs.append((case, feeds, outputs, plan, render_module(plan.calls)))
        except Exception as exc:
            failures[case.name] = f"render: {type(exc).__name__}: {exc}"
    source, modules = merge_modules([job[-1] for job in jobs])
    out = compile_cuda(source, archs)
    total = len(jobs) + len(failures)
    if unplanned:
        print(f"node cases the core cannot plan (not counted): {', '.join(unplanned)}")
    print(f"node cases: {total} data sets, {len(jobs)} planned, one module of "
          f"{sum(len(m.entries) for m in modules)} kernels, nvcc {out['seconds']:.1f}s")
    if cp is not None:
        path = os.path.join(tmp, "node_cases.fatbin")
        Path(path).write_bytes(out["fatbin"])
        raw = None if pycuda else cp.RawModule(path=path)
        for (case, feeds, outputs, plan, _), module in zip(jobs, modules):
            try:
                host = [np.asarray(feeds[s.name]) for s in plan.inputs]
                if pycuda:
                    from onnxc.backends.cuda.driver import GpuModule

                    gpu = GpuModule(out["fatbin"], [np.ascontiguousarray(c)
                                                    for c in plan.constants])
                    got = gpu.run(module.launches, [np.ascontiguousarray(h) for h in host],
                                  plan.outputs, plan.arena_bytes)
                else:
                    got = GpuPlan(cp, plan, module, raw).run(host)
                for g, want in zip(got, outputs):
                    assert g.dtype == want.dtype, (g.dtype, want.dtype)
                    np.testing.assert_allclose(g, want, rtol=case.rtol, atol=case.atol)
            except Exception as exc:
                failures[case.name] = f"run: {type(exc).__name__}: {str(exc)[:300]}"
    for name, why in sorted(failures.items()):
        print(f"FAIL {name}: {why}")
    done = "compiled" if cp is None else "passed on the GPU"
    print(f"{'FAIL' if failures else 'PASS'} node cases: {total - len(failures)} of {total} "
          f"{done}")
    return len(failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="build, render and nvcc-compile only (no GPU or CuPy needed)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per model (median)")
    parser.add_argument("--models", default="", help="comma-separated subset of model names")
    parser.add_argument("--arch", action="append", default=[],
                        help="extra nvcc arch (default: sm_80, sm_90 and the GPU's own)")
    parser.add_argument("--keep", default="", help="folder to write each module's .cu into")
    parser.add_argument("--node-cases", action="store_true",
                        help="also run the ONNX node test cases (one module, the GPU's arch)")
    parser.add_argument("--pycuda", action="store_true",
                        help="run the node cases through target 'cuda' (onnxc's pycuda driver) "
                             "instead of CuPy")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch timings")
    args = parser.parse_args(argv)

    bootstrap_onnxc()
    import cuda_models
    from onnxc.backends.cuda import compile_cuda, render_module
    from onnxc.runtime.build import plan_for_model

    cp, device_arch = None, []
    archs = ["sm_80", "sm_90"] + args.arch
    if not args.dry_run:
        import cupy as cp

        dev = cp.cuda.Device()
        cc = dev.compute_capability
        device_arch = [f"sm_{cc}"]
        archs += device_arch
        props = cp.cuda.runtime.getDeviceProperties(dev.id)
        print(f"GPU: {props['name'].decode()} (sm_{cc}), CuPy {cp.__version__}")
    archs = list(dict.fromkeys(archs))

    models = {**{k: (v, False) for k, v in cuda_models.MODELS.items()},
              **{k: (v, True) for k, v in cuda_models.BENCH.items()}}
    if args.models:
        models = {k: v for k, v in models.items() if k in args.models.split(",")}
    rows, failures = [], 0
    with tempfile.TemporaryDirectory(prefix="onnxc-gpu-") as tmp:
        for name, (build, bench) in models.items():
            try:
                model, feeds = build()
                plan = plan_for_model(model, feeds)
                module = render_module(plan.calls)
                if args.keep:
                    os.makedirs(args.keep, exist_ok=True)
                    Path(args.keep, f"{name}.cu").write_text(module.source)
                out = compile_cuda(module.source, archs)
            except Exception as exc:
                failures += 1
                print(f"FAIL {name}: build/compile: {type(exc).__name__}: {exc}")
                continue
            line = (f"{name}: {len(plan.calls)} kernels, {len(module.launches)} launches, "
                    f"nvcc {out['seconds']:.1f}s for {', '.join(out['archs'])} + "
                    f"{out['ptx_arch']}")
            if args.dry_run:
                print(f"PASS {line} (compiled; not run: --dry-run)")
                continue
            try:
                path = os.path.join(tmp, f"{name}.fatbin")
                Path(path).write_bytes(out["fatbin"])
                gpu = GpuPlan(cp, plan, module, cp.RawModule(path=path))
                host = [feeds[s.name] for s in plan.inputs]
                got = gpu.run(host)
                ref = cuda_models.reference(model, feeds, name)
                ok, err = compare(got, ref, 1e-3 if bench else 1e-4, 1e-4)
            except Exception as exc:
                failures += 1
                print(f"FAIL {line}: run: {type(exc).__name__}: {exc}")
                continue
            failures += not ok
            print(f"{'PASS' if ok else 'FAIL'} {line}; max abs error {err:.3g}")
            k_ms = median_ms(cp, gpu.kernels, args.runs)
            e_ms = median_ms(cp, lambda: gpu.run(host), args.runs)
            try:
                o_ms = ort_ms(model, feeds, args.runs)
            except Exception:
                o_ms = float("nan")
            t_ms = float("nan")
            if not args.no_torch:
                try:
                    from torch_ref import torch_ms

                    t_ms = torch_ms(model, feeds, ref, args.runs)
                except Exception as exc:  # no torch here, or a graph it cannot run
                    print(f"  torch: {type(exc).__name__}: {exc}")
            rows.append((name, len(gpu.launches), k_ms, e_ms, t_ms, o_ms))
        node_failures = 0
        if args.node_cases:
            node_failures = node_cases(cp, device_arch or archs, tmp, args.pycuda)
    if rows:
        print(f"\n{'model':<20} {'launches':>8} {'kernels ms':>11} {'e2e ms':>9} "
              f"{'torch ms':>9} {'ort-cpu ms':>11}   (median of {args.runs}; torch: same "
              "graph, same GPU, kernels only)")
        for name, n, k_ms, e_ms, t_ms, o_ms in rows:
            print(f"{name:<20} {n:>8} {k_ms:>11.4f} {e_ms:>9.4f} {t_ms:>9.4f} {o_ms:>11.4f}")
    print(f"\n{'FAIL' if failures else 'PASS'}: {len(models) - failures} of {len(models)} models")
    return 1 if failures or node_failures else 0


if __name__ == "__main__":
    sys.exit(main())
