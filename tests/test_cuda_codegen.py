"""The CUDA backend without a GPU: generated CUDA C compiles with nvcc, and runs correctly on
cuda-sim (the same source compiled for the CPU under an emulation of the CUDA execution model).

References are onnxruntime, or numpy where onnxruntime itself departs from ONNX (see
tests/cuda_models.py), and the reference outputs shipped with ONNX's node test cases.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import cuda_models
from onnxc.backends.cuda import compile_cuda, find_nvcc, render_kernel, render_module
from onnxc.backends.cuda.codegen import merge_modules
from onnxc.runtime.build import plan_for_model
from onnxc.backends.cuda.sim import (SimModule, find_cxx, run_launches,
                                     run_plan_sim)
from onnxc.ir.errors import CompileError

needs_nvcc = pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found (no CUDA toolkit on "
                                "PATH, CUDA_HOME or /usr/local/cuda*/bin)")
needs_cxx = pytest.mark.skipif(find_cxx() is None, reason="cuda-sim needs g++ or clang++")
MODEL_NAMES = sorted(cuda_models.MODELS)


def _plan(name: str):
    model, feeds = cuda_models.MODELS[name]()
    return model, feeds, plan_for_model(model, feeds)


def assert_outputs(got, ref, rtol=1e-4, atol=1e-4) -> None:
    assert len(got) == len(ref)
    for k, (g, r) in enumerate(zip(got, ref)):
        r = np.asarray(r)
        assert g.dtype == r.dtype and g.shape == r.shape, (k, g.dtype, g.shape, r.dtype, r.shape)
        if g.dtype.kind in "biu":
            np.testing.assert_array_equal(g, r, err_msg=f"output {k}")
        else:
            np.testing.assert_allclose(g.astype(np.float64), r.astype(np.float64), rtol=rtol,
                                       atol=atol, equal_nan=True, err_msg=f"output {k}")


# -- generated source --------------------------------------------------------------------------
def test_render_kernel_shape_of_source():
    _, _, plan = _plan("mlp")
    kernel = plan.calls[0].kernel
    source, entries = render_kernel(kernel)
    assert entries == [f"{kernel.name}_s{k}" for k in range(len(kernel.stages))]
    for entry in entries:  # GEMM stages state their block size with __launch_bounds__
        assert re.search(rf'extern "C" __global__ void (__launch_bounds__\(\d+\) )?{entry}\(',
                         source)
    assert "const float* __restrict__ p0" in source  # inputs are const and restrict
    assert "#include <cuda_fp16.h>" in source


def test_render_module_dedupes_identical_kernels():
    model, feeds = cuda_models.mlp(2, (8, 8, 8, 8))  # layers 1 and 2 have the same shapes
    plan = plan_for_model(model, feeds)
    mod = render_module(plan.calls)
    distinct = {ln.entry for ln in mod.launches}
    assert len(mod.launches) == sum(len(c.kernel.stages) for c in plan.calls)
    assert len(distinct) < len(mod.launches)
    assert sorted(distinct) == sorted(mod.entries)
    assert all(ln.grid >= 1 and 32 <= ln.block <= 256 for ln in mod.launches)


# -- nvcc ----------------------------------------------------------------------------------------
@needs_nvcc
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_compile_with_nvcc(name):
    _, _, plan = _plan(name)
    mod = render_module(plan.calls)
    out = compile_cuda(mod.source)
    assert out["fatbin"] and set(out["cubins"]) == {"sm_80", "sm_90"}
    for entry in mod.entries:
        assert f".entry {entry}(" in out["ptx"]
    assert "warning" not in out["log"], out["log"]


@needs_nvcc
def test_nvcc_failure_is_a_compile_error():
    with pytest.raises(CompileError, match=r"(?s)nvcc failed.*undefined_thing"):
        compile_cuda('extern "C" __global__ void f(float* p) { p[0] = undefined_thing; }')


# -- cuda-sim ------------------------------------------------------------------------------------
@needs_cxx
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_on_cuda_sim(name):
    pytest.importorskip("onnxruntime")
    model, feeds, plan = _plan(name)
    got = run_plan_sim(plan, [feeds[s.name] for s in plan.inputs])
    assert_outputs(got, cuda_models.reference(model, feeds, name))


BLOCK_SUM = r"""
extern "C" __global__ void block_sum(const float* __restrict__ x, float* out, int n) {
  __shared__ float buf[64];
  float v = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) v += x[blockIdx.x * n + i];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = buf[0];
}
"""


@needs_cxx
def test_sim_runs_block_threads_with_a_barrier_and_shared_memory():
    """A tree reduction in shared memory is only right if __syncthreads really waits."""
    sim = SimModule(BLOCK_SUM)
    x = np.random.default_rng(0).standard_normal((3, 1000)).astype(np.float32)
    out = np.zeros(3, np.float32)
    sim.launch("block_sum", [x.ctypes.data, out.ctypes.data, 1000], 3, 64)
    np.testing.assert_allclose(out, x.sum(axis=1), rtol=1e-5)


@needs_cxx
def test_sim_exposes_unwritten_outputs():
    """Buffers start as NaN bytes, so a launch that is skipped cannot pass by accident."""
    model, feeds, plan = _plan("softmax")
    mod = render_module(plan.calls)
    mod.launches = mod.launches[:-1]
    got = run_plan_sim(plan, [feeds[s.name] for s in plan.inputs], module=mod)
    assert np.isnan(got[-1]).all()


# -- ONNX node test cases on cuda-sim ----------------------------------------------------------
@pytest.fixture(scope="module")
def node_modules():
    """Every node case rendered, and all merged into one module: one compiler call each for
    g++ and nvcc. Cases the core cannot plan are test_onnx_node_cases.py's business."""
    jobs, failures, unplanned = [], {}, {}
    for case, feeds, outputs in cuda_models.node_cases():
        try:
            plan = plan_for_model(case.model, feeds)
        except Exception as exc:
            unplanned[case.name] = f"{type(exc).__name__}: {exc}"
            continue
        try:
            jobs.append((case, feeds, outputs, plan, render_module(plan.calls)))
        except Exception as exc:  # reported by the test, with the case name
            failures[case.name] = f"render: {type(exc).__name__}: {exc}"
    if unplanned:
        warnings.warn(f"{len(unplanned)} node cases cannot be planned by the core (see "
                      f"test_onnx_node_cases.py), e.g. {next(iter(unplanned.items()))}")
    source, modules = merge_modules([job[-1] for job in jobs])
    return jobs, modules, source, failures


@needs_cxx
def test_onnx_node_cases_on_cuda_sim(node_modules, record_property):
    """Every node case that passes on cpu passes on cuda-sim; the figure over ALL node cases
    (cpu failures and cases the core cannot plan count as failures) is printed at the end of
    the run (tests/conftest.py), next to the cpu figure."""
    jobs, modules, source, failures = node_modules
    sim = SimModule(source)  # one compiler call for every case
    for (case, feeds, outputs, plan, _), mod in zip(jobs, modules):
        try:
            outs = [np.empty(o.shape, o.dtype) for o in plan.outputs]
            flat = cuda_models.flat_feeds(case.model, feeds)
            run_launches(sim, mod.launches, [np.ascontiguousarray(flat[s.name])
                                             for s in plan.inputs], outs,
                         [np.ascontiguousarray(c) for c in plan.constants], plan.arena_bytes)
            for got, want in zip(outs, outputs):
                assert got.dtype == want.dtype, (got.dtype, want.dtype)
                rtol = case.rtol
                if got.dtype.name == "bfloat16":  # as onnx's runner: two bfloat16 ulps
                    got, want, rtol = got.astype(np.float32), want.astype(np.float32), \
                        max(rtol, 2 ** -6)
                np.testing.assert_allclose(got, want, rtol=rtol, atol=case.atol)
        except Exception as exc:
            failures[case.name] = f"run: {type(exc).__name__}: {str(exc)[:300]}"
    every = cuda_models.all_node_case_names()
    ran = {case.name for case, *_ in jobs}
    passing = len(ran - set(failures))
    record_property("cuda_sim_node_cases", (passing, len(every)))
    print(f"ONNX node cases on cuda-sim: {passing} of {len(every)} pass "
          f"({100.0 * passing / len(every):.1f}%)")
    total = len(jobs) + sum(1 for f in failures.values() if f.startswith("render"))
    assert total > 300, total
    assert not failures, (f"{len(failures)} of {total} node cases fail on cuda-sim:\n"
                          + "\n".join(f"{k}: {v}" for k, v in sorted(failures.items())))


@needs_nvcc
@pytest.mark.slow
def test_onnx_node_cases_compile_with_nvcc(node_modules):
    """nvcc compiles the generated source of one case per distinct (ops, input types) of the
    node cases: all ~1,500 in one module would take ptxas well over ten minutes."""
    jobs = node_modules[0]
    picked, seen = [], set()
    for case, feeds, _, _, mod in jobs:
        key = (frozenset(n.op_type for n in case.model.graph.node),
               tuple(sorted(str(np.asarray(v).dtype)
                            for v in cuda_models.flat_feeds(case.model, feeds).values())))
        if key not in seen:
            seen.add(key)
            picked.append(mod)
    source, modules = merge_modules(picked)
    out = compile_cuda(source)
    missing = [e for m in modules for e in m.entries if f".entry {e}(" not in out["ptx"]]
    assert not missing, missing[:10]
