"""The CUDA backend's scheduled kernels (tiled GEMM, WMMA tensor cores, warp-shuffle
reductions) and cuda-sim's emulation of what they rely on (warp shuffles, atomics, wmma).

The emulation is checked with small hand-written kernels whose results numpy computes
independently; the same kernels go through nvcc, so the emulated API is the real one. The
generated kernels are checked on cuda-sim against onnxruntime (float32) or a numpy reference
with the tensor cores' numerics (float16 / TF32 inputs, float32 accumulation).
"""
from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxc.backends.cuda import compile_cuda, find_nvcc, render_module
from onnxc.backends.cuda.codegen import merge_modules
from onnxc.backends.cuda.gemm import choose_tiles
from onnxc.backends.cuda.sim import SimModule, find_cxx, run_launches
from onnxc.runtime.build import plan_for_model

needs_nvcc = pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found (no CUDA toolkit)")
needs_cxx = pytest.mark.skipif(find_cxx() is None, reason="cuda-sim needs g++ or clang++")

# -- the emulation itself ------------------------------------------------------------------------
EMULATION = r"""
#ifndef ONNXC_CUDA_SIM
#include <cuda_fp16.h>
#include <mma.h>
#endif
// Each lane: x, its warp's sum by shfl_down (lane 0 only is meaningful), by shfl_xor (every
// lane), lane 3's value by shfl_sync, an inclusive prefix sum by shfl_up, and shfl_down's
// value for delta 5 (lanes past the segment keep their own value).
extern "C" __global__ void warp_ops(const float* __restrict__ x, float* down, float* butterfly,
                                    float* bcast, float* scan, float* shifted) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  const float v = x[t];
  float s = v;
  for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
  down[t] = s;
  float b = v;
  for (int o = 16; o > 0; o >>= 1) b += __shfl_xor_sync(0xffffffffu, b, o);
  butterfly[t] = b;
  bcast[t] = __shfl_sync(0xffffffffu, v, 3);
  float p = v;
  for (int o = 1; o < 32; o <<= 1) {
    const float u = __shfl_up_sync(0xffffffffu, p, o);
    if ((threadIdx.x & 31) >= o) p += u;
  }
  scan[t] = p;
  shifted[t] = __shfl_down_sync(0xffffffffu, v, 5, 16);
}

// Every thread adds 1 to a counter and its value to a float sum, and proposes its index as max.
extern "C" __global__ void atomics(const float* __restrict__ x, int* counter, float* total,
                                   int* largest, unsigned* ballots) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(counter, 1);
  atomicAdd(total, x[t]);
  atomicMax(largest, t);
  const unsigned bits = __ballot_sync(0xffffffffu, x[t] > 0.0f);
  if ((threadIdx.x & 31) == 0) ballots[t / 32] = bits;
}

// One warp: C (16x16, float) = A (16x16 half) x B (16x16 half) + C, through tensor cores.
extern "C" __global__ void wmma_f16(const __half* __restrict__ a, const __half* __restrict__ b,
                                    float* c) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);  // b is stored column-major: b[k + 16 n]
  wmma::load_matrix_sync(fc, c, 16, wmma::mem_row_major);
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(c, fc, 16, wmma::mem_row_major);
}

// One warp: C (16x16) = A (16x8) x B (8x16) with both rounded to TF32.
extern "C" __global__ void wmma_tf32(const float* __restrict__ a, const float* __restrict__ b,
                                     float* c) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> fc;
  wmma::fill_fragment(fc, 0.0f);
  wmma::load_matrix_sync(fa, a, 8);
  wmma::load_matrix_sync(fb, b, 16);
  for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
  for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(c, fc, 16, wmma::mem_col_major);
}
"""


def tf32(x: np.ndarray) -> np.ndarray:
    """numpy's TF32 rounding (nearest, ties away from zero), as cvt.rna.tf32.f32."""
    u = x.astype(np.float32).view(np.uint32)
    finite = (u & 0x7F800000) != 0x7F800000
    r = np.where(finite, (u + np.uint32(0x1000)) & np.uint32(0xFFFFE000), u)
    return r.astype(np.uint32).view(np.float32)


@pytest.fixture(scope="module")
def emulation():
    if find_cxx() is None:
        pytest.skip("cuda-sim needs g++ or clang++")
    return SimModule(EMULATION)


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def test_sim_warp_shuffles_exchange_values_between_lanes(emulation):
    rng = np.random.default_rng(0)
    block, grid = 64, 2  # two full warps per block, two blocks
    x = rng.integers(-8, 8, grid * block).astype(np.float32)  # exact sums
    outs = [np.full_like(x, np.nan) for _ in range(5)]
    emulation.launch("warp_ops", [_ptr(x)] + [_ptr(o) for o in outs], grid, block)
    down, butterfly, bcast, scan, shifted = outs
    warps = x.reshape(-1, 32)
    np.testing.assert_array_equal(down.reshape(-1, 32)[:, 0], warps.sum(axis=1))
    np.testing.assert_array_equal(butterfly.reshape(-1, 32), np.repeat(warps.sum(axis=1,
                                  keepdims=True), 32, axis=1))
    np.testing.assert_array_equal(bcast.reshape(-1, 32), np.repeat(warps[:, 3:4], 32, axis=1))
    np.testing.assert_array_equal(scan.reshape(-1, 32), np.cumsum(warps, axis=1))
    lane = np.arange(32)
    src = np.where((lane % 16) + 5 < 16, lane + 5, lane)  # width 16: stays in its half
    np.testing.assert_array_equal(shifted.reshape(-1, 32), warps[:, src])


def test_sim_atomics_are_atomic_and_ballot_collects_a_warp(emulation):
    rng = np.random.default_rng(1)
    block, grid = 128, 3
    x = rng.standard_normal(grid * block).astype(np.float32)
    counter, largest = np.zeros(1, np.int32), np.full(1, -1, np.int32)
    total, ballots = np.zeros(1, np.float32), np.zeros(grid * block // 32, np.uint32)
    emulation.launch("atomics", [_ptr(x), _ptr(counter), _ptr(total), _ptr(largest),
                                 _ptr(ballots)], grid, block)
    assert counter[0] == grid * block and largest[0] == grid * block - 1
    np.testing.assert_allclose(total[0], x.astype(np.float64).sum(), rtol=1e-4, atol=1e-4)
    want = [(sum(1 << k for k in range(32) if w[k] > 0)) for w in x.reshape(-1, 32)]
    np.testing.assert_array_equal(ballots, np.array(want, np.uint32))


def test_sim_wmma_fp16_multiplies_half_inputs_in_float(emulation):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((16, 16)).astype(np.float16)
    b = rng.standard_normal((16, 16)).astype(np.float16)
    c = rng.standard_normal((16, 16)).astype(np.float32)
    got = c.copy()
    b_col = np.ascontiguousarray(b.T)  # column-major storage of b
    emulation.launch("wmma_f16", [_ptr(a), _ptr(b_col), _ptr(got)], 1, 32)
    want = a.astype(np.float32) @ b.astype(np.float32) + c  # products of halves are exact
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_sim_wmma_tf32_rounds_inputs_to_ten_mantissa_bits(emulation):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((16, 8)).astype(np.float32)
    b = rng.standard_normal((8, 16)).astype(np.float32)
    got = np.zeros((16, 16), np.float32)
    emulation.launch("wmma_tf32", [_ptr(a), _ptr(b), _ptr(got)], 1, 32)
    want = (tf32(a).astype(np.float64) @ tf32(b).astype(np.float64)).T  # stored column-major
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    exact = (a.astype(np.float64) @ b.astype(np.float64)).T
    assert np.abs(got - exact).max() > 1e-5  # TF32 is visibly not float32
    assert tf32(np.float32([1 + 2 ** -11]))[0] == np.float32(1 + 2 ** -10)  # ties away


@needs_nvcc
def test_emulation_kernels_compile_with_nvcc():
    """The hand-written kernels use the real CUDA API: nvcc builds them for sm_80 and sm_90."""
    out = compile_cuda(EMULATION)
    for entry in ("warp_ops", "atomics", "wmma_f16", "wmma_tf32"):
        assert f".entry {entry}(" in out["ptx"]
    assert "wmma.mma.sync" in out["ptx"] or "mma.sync" in out["ptx"]


# -- generated kernels ---------------------------------------------------------------------------
def _model(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "k", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def gemm_cases():
    """(name, model, feeds, reference or None for onnxruntime, rtol, marker in the source)."""
    rng = np.random.default_rng(7)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    cases = []
    # batched MatMul, partial tiles in M, N and K, then a residual Add and Relu fused
    a, b, r = f32(2, 70, 40), f32(40, 130), f32(2, 70, 130)
    cases.append(("batched_matmul_residual", _model(
        [helper.make_node("MatMul", ["a", "b"], ["m"]), helper.make_node("Add", ["m", "r"], ["s"]),
         helper.make_node("Relu", ["s"], ["y"])],
        [_vi("a", 1, a.shape), _vi("b", 1, b.shape), _vi("r", 1, r.shape)],
        [_vi("y", 1, (2, 70, 130))]), {"a": a, "b": b, "r": r}, None, 1e-4, "tiled GEMM"))
    # Gemm with transposed operands, alpha/beta and a bias row; weights are initializers
    x, w, c = f32(5, 33), f32(48, 33), f32(48)
    cases.append(("gemm_transb_bias", _model(
        [helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1, alpha=0.5, beta=2.0)],
        [_vi("x", 1, x.shape)], [_vi("y", 1, (5, 48))],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c")]), {"x": x}, None,
        1e-4, "tiled GEMM"))
    # Conv 3x3 stride 2 with padding and bias, then a 1x1 conv and Sigmoid: implicit GEMMs
    x, w1, b1, w2 = f32(2, 5, 17, 17), f32(24, 5, 3, 3) * 0.3, f32(24), f32(16, 24, 1, 1) * 0.3
    cases.append(("conv_implicit_gemm", _model(
        [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
         helper.make_node("Conv", ["c1", "w2"], ["c2"]), helper.make_node("Sigmoid", ["c2"], ["y"])],
        [_vi("x", 1, x.shape)], [_vi("y", 1, (2, 16, 9, 9))],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
         numpy_helper.from_array(w2, "w2")]), {"x": x}, None, 1e-4, "tiled GEMM"))
    # float16 MatMul + bias: tensor cores (half inputs, float accumulation, rounded at the end)
    a16 = (rng.standard_normal((3, 40, 72)) * 0.5).astype(np.float16)
    w16 = (rng.standard_normal((72, 90)) * 0.5).astype(np.float16)
    b16 = rng.standard_normal(90).astype(np.float16)
    ref16 = (a16.astype(np.float32) @ w16.astype(np.float32) + b16.astype(np.float32)
             ).astype(np.float16)
    cases.append(("matmul_fp16_wmma", _model(
        [helper.make_node("MatMul", ["a", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])],
        [_vi("a", TensorProto.FLOAT16, a16.shape)], [_vi("y", TensorProto.FLOAT16, (3, 40, 90))],
        [numpy_helper.from_array(w16, "w"), numpy_helper.from_array(b16, "b")]), {"a": a16},
        [ref16], 2e-3, "wmma::mma_sync"))
    # reductions over long rows: a warp per row (Softmax, ReduceSum, LayerNorm)
    x, g, bb = f32(6, 300), f32(300), f32(300)
    cases.append(("warp_reductions", _model(
        [helper.make_node("Softmax", ["x"], ["s"], axis=-1),
         helper.make_node("ReduceSum", ["x", "axes"], ["r"], keepdims=0),
         helper.make_node("LayerNormalization", ["x", "g", "bb"], ["n"], axis=-1)],
        [_vi("x", 1, x.shape)], [_vi("s", 1, x.shape), _vi("r", 1, (6,)), _vi("n", 1, x.shape)],
        [numpy_helper.from_array(np.array([1], np.int64), "axes"),
         numpy_helper.from_array(g, "g"), numpy_helper.from_array(bb, "bb")]),
        {"x": x}, None, 1e-4, "ox_shfl_xor"))
    return cases


def _run(sim, plan, mod, feeds):
    outs = [np.empty(o.shape, o.dtype) for o in plan.outputs]
    for o in outs:
        o.reshape(-1).view(np.uint8)[:] = 0xFF  # NaN: an unwritten element shows
    run_launches(sim, mod.launches, [np.ascontiguousarray(feeds[s.name]) for s in plan.inputs],
                 outs, [np.ascontiguousarray(c) for c in plan.constants], plan.arena_bytes)
    return outs


@pytest.fixture(scope="module")
def gemm_modules():
    jobs = []
    for name, model, feeds, ref, rtol, marker in gemm_cases():
        plan = plan_for_model(model, feeds)
        jobs.append((name, model, feeds, ref, rtol, marker, plan, render_module(plan.calls)))
    # TF32 is opt-in: the float32 batched MatMul again, allowed to use TF32 tensor cores
    name, model, feeds = jobs[0][:3]
    plan = plan_for_model(model, feeds)
    a, b, r = (feeds[k].astype(np.float64) for k in "abr")
    ref = [np.maximum(tf32(feeds["a"]).astype(np.float64) @ tf32(feeds["b"]) + r, 0
                      ).astype(np.float32)]
    jobs.append(("batched_matmul_tf32", model, feeds, ref, 1e-4, "wmma::precision::tf32", plan,
                 render_module(plan.calls, allow_tf32=True)))
    source, modules = merge_modules([job[-1] for job in jobs])
    return jobs, source, modules


@needs_cxx
def test_scheduled_kernels_match_references_on_cuda_sim(gemm_modules):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    jobs, source, modules = gemm_modules
    sim = SimModule(source)
    for (name, model, feeds, ref, rtol, marker, plan, mod), merged in zip(jobs, modules):
        assert marker in mod.source, (name, marker)
        got = _run(sim, plan, merged, feeds)
        if ref is None:
            ref = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"]).run(None, feeds)
        for g, w in zip(got, ref):
            assert g.dtype == w.dtype and g.shape == w.shape, name
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol,
                                       atol=rtol, err_msg=name)


def test_tf32_is_opt_in():
    name, model, feeds = gemm_cases()[0][:3]
    plan = plan_for_model(model, feeds)
    assert "tf32" not in render_module(plan.calls).source
    assert "wmma::precision::tf32" in render_module(plan.calls, allow_tf32=True).source


def test_launch_configuration_follows_the_shape():
    assert choose_tiles(4096, 4096) == (128, 128, 8, 8, 8)
    assert choose_tiles(256, 196)[:2] == (64, 64)
    bm, bn, _, tm, tn = choose_tiles(3, 1000)  # a small batch: skinny tiles, one warp at least
    assert bm == 4 and (bm // tm) * (bn // tn) >= 32
    for m, n in [(1, 1), (3, 10), (70, 33), (4096, 7)]:
        bm, bn, bk, tm, tn = choose_tiles(m, n)
        assert bm % tm == 0 and bn % tn == 0 and (bm // tm) * (bn // tn) <= 256


@needs_nvcc
def test_scheduled_kernels_compile_with_nvcc(gemm_modules):
    _, source, modules = gemm_modules
    out = compile_cuda(source)
    assert set(out["cubins"]) == {"sm_80", "sm_90"}
    missing = [e for m in modules for e in m.entries if f".entry {e}(" not in out["ptx"]]
    assert not missing, missing
    assert "warning" not in out["log"].lower(), out["log"][-3000:]
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill stores", out["log"])]
    assert max(spills) <= 64, out["log"][-3000:]  # register tiles stay in registers
    assert "mma.sync" in out["ptx"]


@needs_cxx
def test_allow_tf32_through_the_public_api():
    """onnxc.compile(..., allow_tf32=True) on cuda-sim rounds a float32 MatMul's inputs to TF32;
    the default keeps float32 (the result onnxruntime gives)."""
    import onnxc

    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((20, 24)).astype(np.float32), rng.standard_normal((24, 36))
    model = _model([helper.make_node("MatMul", ["a", "b"], ["y"])], [_vi("a", 1, a.shape)],
                   [_vi("y", 1, (20, 36))], [numpy_helper.from_array(b.astype(np.float32), "b")])
    exact = a.astype(np.float64) @ b.astype(np.float32).astype(np.float64)
    rounded = tf32(a).astype(np.float64) @ tf32(b.astype(np.float32)).astype(np.float64)
    plain = onnxc.compile(model, target="cuda-sim").run(None, {"a": a})[0]
    fast = onnxc.compile(model, target="cuda-sim", allow_tf32=True).run(None, {"a": a})[0]
    np.testing.assert_allclose(plain, exact, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast, rounded, rtol=1e-5, atol=1e-5)
    assert np.abs(fast - exact).max() > 1e-4
