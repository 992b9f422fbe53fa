"""Compare onnxc with onnxruntime (and OpenVINO, when installed) on the same models, in one
process, interleaved.

    python -m bench [--models light_resnet50 mlp_b64 ...] [--threads 1 2] [--runs 20]

The default set: the light ResNet-50, SqueezeNet, Inception v1 and DenseNet-121 that ship with
onnx, and generated models (bench/models.py): an MLP at batch 1 and 64, a transformer encoder
layer, an LSTM and MobileNet v1. For each model and thread count it reports onnxc's cold
compile time (empty object cache), recompile time (cache hit) and artifact load time, the
median run latency of each engine, the ratio onnxc / onnxruntime (below 1 means onnxc is
faster) and, with OpenVINO, onnxc / OpenVINO in float32 and OpenVINO's default-precision
latency (bf16 on CPUs with avx512_bf16), then the geometric means per thread count.
``--precision bf16`` adds onnxc compiled with ``precision="bf16"``: its latency, its ratio to
onnxc float32 and to OpenVINO's default, and the max relative error of it and of OpenVINO's
default against onnxruntime float32. Runs alternate between the engines so machine noise hits
both alike: in blocks of BLOCK timed runs, each block after a pause of SETTLE_S seconds (the
other engine's spinning worker threads go quiet) and one untimed run.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import onnx

import onnxc
from bench.models import GENERATED

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
BLOCK = 5
# onnxruntime's intra-op workers spin for ~45 ms after each run (measured: 47 ms of CPU in the
# second after one mlp_b64 run at 2 threads); on a 2-core machine that spinning thread takes a
# core from the next engine's timed runs (onnxc at 2 threads ran at its 1-thread speed beside
# it). Each block starts after this pause; onnxc's own threads sleep when idle.
SETTLE_S = 0.1
DEFAULT_MODELS = ["light_resnet50", "light_squeezenet", "light_inception_v1",
                  "light_densenet121", "mlp_b1", "mlp_b64", "transformer_encoder", "lstm",
                  "mobilenet_v1"]


WARMUP_RUNS = 12


def random_feeds(session, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float32 inputs for every input of a session; a symbolic dimension
    (a batch "N") is 1."""
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape])
            .astype(np.float32) for i in session.get_inputs()}


def _ort_runner(path: str, threads: int) -> Callable[[dict], list]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)


def _openvino_runner(path: str, threads: int, precision: str | None) -> Callable[[dict], list]:
    """OpenVINO's CPU plugin in latency mode, one stream; precision "f32" forces float32, None
    keeps its default (bf16 on CPUs with avx512_bf16 or AMX)."""
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
              "NUM_STREAMS": 1}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = ov.Core().compile_model(path, "CPU", config)
    request = compiled.create_infer_request()

    def run(feeds: dict) -> list:
        request.infer(feeds)
        return [request.get_output_tensor(k).data.copy() for k in range(len(compiled.outputs))]
    return run


def has_openvino() -> bool:
    return importlib.util.find_spec("openvino") is not None


def model_path(name: str, tmp: str) -> str:
    """A light model's path, a generated model written to ``tmp``, or a file path."""
    if name in GENERATED:
        path = os.path.join(tmp, name + ".onnx")
        onnx.save(GENERATED[name](), path)
        return path
    return name if os.path.exists(name) else os.path.join(LIGHT, name + ".onnx")


def _concrete_input_shapes(path: str) -> dict[str, list[int]]:
    """Input shapes with every symbolic dimension set to 1, so the timed compile is real."""
    graph = onnx.load(path, load_external_data=False).graph
    inits = {t.name for t in graph.initializer}
    return {i.name: [d.dim_value if d.HasField("dim_value") else 1
                     for d in i.type.tensor_type.shape.dim]
            for i in graph.input if i.name not in inits}


def _cold_compile(path: str, threads: int, shapes: dict, cache: str) -> tuple[float, object]:
    """Seconds of a compile with an empty object-code cache (a user's first compile), and the
    session; the cache then stays at ``cache`` for the timed recompile."""
    saved = os.environ.get("ONNXC_CACHE_DIR")
    os.environ["ONNXC_CACHE_DIR"] = cache
    try:
        t0 = time.perf_counter()
        session = onnxc.compile(path, num_threads=threads, input_shapes=shapes)
        return time.perf_counter() - t0, session
    finally:
        if saved is None:
            del os.environ["ONNXC_CACHE_DIR"]
        else:
            os.environ["ONNXC_CACHE_DIR"] = saved


def bench_model(name: str, threads: int, runs: int, peers: list[str]) -> dict:
    """Times onnxc and each peer ("ort", "ov_f32", "ov_default", "onnxc_bf16") interleaved on
    one input."""
    with tempfile.TemporaryDirectory() as tmp:
        path = model_path(name, tmp)
        shapes = _concrete_input_shapes(path)
        cache = os.path.join(tmp, "cache")
        compile_s, session = _cold_compile(path, threads, shapes, cache)
        t0 = time.perf_counter()  # the same compile again, its object code now cached
        _cold_compile(path, threads, shapes, cache)
        recompile_s = time.perf_counter() - t0
        artifact = os.path.join(tmp, "model.onnxc")
        session.save(artifact)
        t0 = time.perf_counter()
        onnxc.load(artifact, num_threads=threads)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        engines: dict[str, Callable[[dict], list]] = {"ort": _ort_runner(path, threads)}
        ort_create_s = time.perf_counter() - t0
        if "ov_f32" in peers:
            engines["ov_f32"] = _openvino_runner(path, threads, "f32")
        if "ov_default" in peers:
            engines["ov_default"] = _openvino_runner(path, threads, None)
        if "onnxc_bf16" in peers:
            bf16 = onnxc.compile(path, num_threads=threads, input_shapes=shapes,
                                 precision="bf16")
            engines["onnxc_bf16"] = lambda feeds: bf16.run(None, feeds)
    engines = {"onnxc": lambda feeds: session.run(None, feeds), **engines}

    feeds = random_feeds(session)
    outputs = {}
    # Warm up every engine: caches, onnxruntime's first-run allocations, and onnxc's thread
    # choice (its first 2 * ThreadChoice.WINDOW runs alternate between the team and one
    # thread, runtime/fastrun.py), so the timed runs measure the steady state of each.
    # Each engine warms up on its own, after the pause, onnxc last: interleaved run by run,
    # onnxruntime's spinning workers (they also spin for a while after the session is
    # created) would take a core from onnxc's team and teach its thread choice the wrong
    # lesson.
    for key, run in reversed(engines.items()):
        time.sleep(SETTLE_S)
        for _ in range(WARMUP_RUNS):
            outputs[key] = run(feeds)
    times: dict[str, list[float]] = {key: [] for key in engines}
    while len(times["onnxc"]) < runs:
        for key, run in engines.items():
            time.sleep(SETTLE_S)  # the previous engine's spinning workers go quiet
            run(feeds)  # warms this engine's threads and caches; not timed
            for _ in range(BLOCK):
                t0 = time.perf_counter()
                run(feeds)
                times[key].append(time.perf_counter() - t0)
    want = np.asarray(outputs["ort"][0])
    scale = max(float(np.abs(want).max()), 1e-12)
    result = {"model": name, "threads": threads, "compile_s": compile_s,
              "recompile_s": recompile_s, "load_s": load_s, "ort_create_s": ort_create_s}
    for key in engines:
        result[f"{key}_ms"] = 1e3 * statistics.median(times[key])
        result[f"{key}_err"] = float(np.abs(np.asarray(outputs[key][0]) - want).max()) / scale
    return result


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                    help=f"light model names, generated ({', '.join(GENERATED)}) or .onnx paths")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--openvino", choices=["auto", "no"], default="auto",
                    help="also time OpenVINO (fp32, and its default precision) when installed")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: also time onnxc with precision='bf16' (columns after the "
                         "others: latency, ratios to onnxc fp32 and OpenVINO default, errors)")
    args = ap.parse_args()
    peers = ["ort"] + (["ov_f32", "ov_default"]
                       if args.openvino == "auto" and has_openvino() else [])
    ov = len(peers) > 1
    bf = args.precision == "bf16"
    if bf:
        peers.append("onnxc_bf16")
    bf_head = (" onnxc bf16 ms | bf16/fp32 |" + (" bf16/ov default | ov default err |"
                                                   if ov else "") + " bf16 err |") if bf else ""
    bf_rule = ("---|---|" + ("---|---|" if ov else "") + "---|") if bf else ""
    bf_ratios: dict[int, list[float]] = {t: [] for t in args.threads}
    bf_ov: dict[int, list[float]] = {t: [] for t in args.threads}
    print("| model | threads | onnxc cold compile s | recompile s | load s | onnxc ms | ort ms | "
          "onnxc/ort |" + (" ov f32 ms | onnxc/ov f32 | ov default ms |" if ov else "")
          + " max rel err |" + bf_head)
    print("|---|---|---|---|---|---|---|---|" + ("---|---|---|" if ov else "") + "---|"
          + bf_rule)
    ratios: dict[int, list[float]] = {t: [] for t in args.threads}
    ov_ratios: dict[int, list[float]] = {t: [] for t in args.threads}
    for name in args.models:
        for threads in args.threads:
            r = bench_model(name, threads, args.runs, peers)
            ratio = r["onnxc_ms"] / r["ort_ms"]
            ratios[threads].append(ratio)
            line = (f"| {name} | {threads} | {r['compile_s']:.2f} | {r['recompile_s']:.2f} | "
                    f"{r['load_s']:.2f} | "
                    f"{r['onnxc_ms']:.2f} | {r['ort_ms']:.2f} | {ratio:.2f} |")
            if ov:
                ov_ratios[threads].append(r["onnxc_ms"] / r["ov_f32_ms"])
                line += (f" {r['ov_f32_ms']:.2f} | {ov_ratios[threads][-1]:.2f} | "
                         f"{r['ov_default_ms']:.2f} |")
            line += f" {r['onnxc_err']:.1e} |"
            if bf:
                bf_ratios[threads].append(r["onnxc_bf16_ms"] / r["onnxc_ms"])
                line += f" {r['onnxc_bf16_ms']:.2f} | {bf_ratios[threads][-1]:.2f} |"
                if ov:
                    bf_ov[threads].append(r["onnxc_bf16_ms"] / r["ov_default_ms"])
                    line += f" {bf_ov[threads][-1]:.2f} | {r['ov_default_err']:.1e} |"
                line += f" {r['onnxc_bf16_err']:.1e} |"
            print(line, flush=True)
    print()
    for threads in args.threads:
        print(f"{threads} thread(s): geometric mean onnxc/onnxruntime "
              f"{_geomean(ratios[threads]):.2f}"
              + (f", onnxc/openvino-f32 {_geomean(ov_ratios[threads]):.2f}" if ov else "")
              + (f", onnxc-bf16/onnxc-fp32 {_geomean(bf_ratios[threads]):.2f}" if bf else "")
              + (f", onnxc-bf16/openvino-default {_geomean(bf_ov[threads]):.2f}"
                 if bf and ov else ""))
    print(f"all: geometric mean onnxc/onnxruntime "
          f"{_geomean([r for rs in ratios.values() for r in rs]):.2f}")


if __name__ == "__main__":
    main()
