"""The C++ header that emulates the CUDA execution model for cuda-sim (used by sim.py).

``__global__`` functions become plain functions, ``threadIdx``/``blockIdx``/``blockDim``/
``gridDim`` thread-local globals, ``__half`` a 16-bit IEEE value converted through
``_Float16``. A launch either runs its threads as a plain loop (kernels without any
cooperation: much faster), or — when the kernel uses ``__syncthreads``, ``__shared__``, warp
intrinsics, atomics or WMMA — starts one real ``std::thread`` per thread of a block, which then
run the blocks one after another:

- ``__syncthreads`` is a ``std::barrier`` over the block's threads; a thread that returns
  drops out of it (as an exited thread does on hardware). ``__shared__`` is ``static``: blocks
  never overlap, and an end-of-block barrier keeps the next block from touching it early.
- warps are lanes ``32 w .. 32 w + 31`` of a block; ``__shfl_*_sync`` writes the lane's value
  to the warp's exchange slots, meets the warp's other lanes at a warp barrier, reads the
  source lane's slot, and meets them again (so the slots can be reused). A source lane outside
  the width segment (or past the block's last thread) yields the lane's own value, as on
  hardware. Masks are assumed full: every lane of the warp takes part, which is what
  onnxc's kernels do (partial-mask shuffles would need per-mask barriers).
- atomics are real atomics (``std::atomic_ref``) on the shared or global address.
- ``nvcuda::wmma`` fragments hold the whole tile in every lane (on hardware each lane holds a
  slice; the mapping is unspecified, so no correct program can tell). ``mma_sync`` multiplies
  the float values of the inputs (half, or float rounded to TF32 by ``__float_to_tf32``) and
  accumulates in float, as the tensor cores do. ``store_matrix_sync`` writes each element from
  exactly one lane and every ``*_sync`` call meets the warp at its barrier.
"""
from __future__ import annotations

SIM_RUNTIME = r"""// cuda-sim: the CUDA execution model emulated on the host (backends/cuda/sim_runtime.py).
#define ONNXC_CUDA_SIM 1
#include <math.h>
#include <string.h>
#include <atomic>
#include <barrier>
#include <memory>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static  // blocks run one at a time: a static is one block's shared memory
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
static thread_local dim3 threadIdx(0, 0, 0), blockIdx(0, 0, 0), blockDim, gridDim;
static constexpr int warpSize = 32;

// One block's barriers: the block's, and one per warp with the warp's exchange slots.
struct ox_block_sync {
  unsigned nthreads;
  std::optional<std::barrier<>> block;
  std::unique_ptr<std::optional<std::barrier<>>[]> warps;
  std::vector<unsigned long long> slots;
  explicit ox_block_sync(unsigned n)
      : nthreads(n), warps(new std::optional<std::barrier<>>[(n + 31) / 32]),
        slots(((n + 31) / 32) * 32) { fresh(); }
  unsigned lanes(unsigned w) const { return nthreads - 32 * w < 32 ? nthreads - 32 * w : 32; }
  void fresh() noexcept {  // new barriers for the next block: exited threads count again
    block.emplace(nthreads);
    for (unsigned w = 0; w < (nthreads + 31) / 32; ++w) warps[w].emplace(lanes(w));
  }
};
static thread_local ox_block_sync* ox_sync = nullptr;
inline void __syncthreads() { if (ox_sync) ox_sync->block->arrive_and_wait(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (ox_sync) ox_sync->warps[threadIdx.x / 32]->arrive_and_wait(); }
inline unsigned __activemask() { return 0xffffffffu; }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// Warp exchange: every lane publishes a value, then reads lane ``src`` (own value if src < 0).
template <typename T> inline T ox_exchange(T v, int src) {
  static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
  if (!ox_sync) return v;  // a single-thread loop: no other lanes
  const unsigned w = threadIdx.x / 32, lane = threadIdx.x % 32;
  unsigned long long bits = 0;
  memcpy(&bits, &v, sizeof(T));
  ox_sync->slots[w * 32 + lane] = bits;
  ox_sync->warps[w]->arrive_and_wait();
  T out = v;
  if (src >= 0 && (unsigned)src < ox_sync->lanes(w))
    memcpy(&out, &ox_sync->slots[w * 32 + src], sizeof(T));
  ox_sync->warps[w]->arrive_and_wait();
  return out;
}
inline int ox_lane() { return (int)(threadIdx.x % 32); }
template <typename T> inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
  return ox_exchange(v, (ox_lane() & ~(width - 1)) + (src & (width - 1))); }
template <typename T> inline T __shfl_up_sync(unsigned, T v, unsigned d, int width = 32) {
  const int lane = ox_lane(), base = lane & ~(width - 1), src = lane - (int)d;
  return ox_exchange(v, src >= base ? src : -1); }
template <typename T> inline T __shfl_down_sync(unsigned, T v, unsigned d, int width = 32) {
  const int lane = ox_lane(), base = lane & ~(width - 1), src = lane + (int)d;
  return ox_exchange(v, src < base + width ? src : -1); }
template <typename T> inline T __shfl_xor_sync(unsigned, T v, int m, int width = 32) {
  const int lane = ox_lane(), base = lane & ~(width - 1), src = lane ^ m;
  return ox_exchange(v, src >= base && src < base + width ? src : -1); }
inline unsigned __ballot_sync(unsigned, int pred) {
  unsigned bits = 0;
  for (int l = 0; l < 32; ++l) bits |= (ox_exchange(pred ? 1u : 0u, l) & 1u) << l;
  return bits; }
inline int __any_sync(unsigned m, int pred) { return __ballot_sync(m, pred) != 0; }
inline int __all_sync(unsigned m, int pred) {
  const unsigned w = threadIdx.x / 32;
  const unsigned n = ox_sync ? ox_sync->lanes(w) : 1;
  const unsigned full = n == 32 ? 0xffffffffu : (1u << n) - 1;
  return (__ballot_sync(m, pred) & full) == full; }

// Atomics: real ones, on whatever the address points at. They return the old value.
template <typename T> inline T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
template <typename T> inline T atomicSub(T* p, T v) { return std::atomic_ref<T>(*p).fetch_sub(v); }
template <typename T> inline T atomicExch(T* p, T v) { return std::atomic_ref<T>(*p).exchange(v); }
template <typename T> inline T atomicCAS(T* p, T expected, T desired) {
  std::atomic_ref<T>(*p).compare_exchange_strong(expected, desired); return expected; }
template <typename T> inline T atomicMax(T* p, T v) {
  std::atomic_ref<T> r(*p); T old = r.load();
  while (old < v && !r.compare_exchange_weak(old, v)) {}
  return old; }
template <typename T> inline T atomicMin(T* p, T v) {
  std::atomic_ref<T> r(*p); T old = r.load();
  while (v < old && !r.compare_exchange_weak(old, v)) {}
  return old; }
template <typename T> inline T atomicAnd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_and(v); }
template <typename T> inline T atomicOr(T* p, T v) { return std::atomic_ref<T>(*p).fetch_or(v); }

struct __half { unsigned short bits; };
typedef __half half;
inline float __half2float(__half h) { _Float16 f; memcpy(&f, &h.bits, 2); return (float)f; }
inline __half __float2half(float x) {
  _Float16 f = (_Float16)x; __half h; memcpy(&h.bits, &f, 2); return h; }

// nvcuda::wmma: every lane holds the whole fragment (see sim_runtime.py).
namespace nvcuda { namespace wmma {
struct matrix_a {}; struct matrix_b {}; struct accumulator {};
struct row_major {}; struct col_major {};
namespace precision { struct tf32 {}; }
enum layout_t { mem_row_major, mem_col_major };
template <typename T> struct ox_elem { typedef T type; };
template <> struct ox_elem<precision::tf32> { typedef float type; };
template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
  static constexpr int num_elements = rows * cols;
  typename ox_elem<T>::type x[rows * cols];
};
inline float ox_float(float v) { return v; }
inline float ox_float(__half v) { return __half2float(v); }
inline float __float_to_tf32(float v) {  // cvt.rna.tf32.f32: nearest, ties away; 10-bit mantissa
  unsigned u; memcpy(&u, &v, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) { u += 0x1000u; u &= 0xffffe000u; }
  memcpy(&v, &u, 4); return v; }
template <typename F, typename V> inline void fill_fragment(F& f, V v) {
  for (int i = 0; i < F::num_elements; ++i) f.x[i] = v; }
template <typename Use, int M, int N, int K, typename T, typename L, typename P>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const P* p, unsigned ldm) {
  typedef fragment<Use, M, N, K, T, L> F;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] = std::is_same_v<L, row_major> ? p[r * ldm + c] : p[c * ldm + r];
  __syncwarp(); }
template <int M, int N, int K, typename T, typename P>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const P* p, unsigned ldm,
                             layout_t layout) {
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      f.x[r * N + c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
  __syncwarp(); }
template <int M, int N, int K, typename T, typename P>
inline void store_matrix_sync(P* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm,
                              layout_t layout) {
  const int lane = ox_sync ? ox_lane() : 0, step = ox_sync ? 32 : 1;
  for (int e = lane; e < M * N; e += step) {  // each element from one lane
    const int r = e / N, c = e % N;
    (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[e];
  }
  __syncwarp(); }
template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB, typename TC>
inline void mma_sync(fragment<accumulator, M, N, K, TC>& d,
                     const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b,
                     const fragment<accumulator, M, N, K, TC>& c) {
  float out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float acc = c.x[i * N + j];
      for (int k = 0; k < K; ++k)
        acc = fmaf(ox_float(a.x[i * K + k]), ox_float(b.x[k * N + j]), acc);
      out[i * N + j] = acc;
    }
  for (int e = 0; e < M * N; ++e) d.x[e] = out[e];
  __syncwarp(); }
} }  // namespace nvcuda::wmma

typedef void (*ox_body)(void**);
static void ox_launch(unsigned grid, unsigned block, bool threaded, ox_body body, void** params) {
  const dim3 g(grid), b(block);
  if (!threaded) {
    gridDim = g; blockDim = b; ox_sync = nullptr;
    for (unsigned bx = 0; bx < grid; ++bx) {
      blockIdx = dim3(bx, 0, 0);
      for (unsigned tx = 0; tx < block; ++tx) { threadIdx = dim3(tx, 0, 0); body(params); }
    }
    return;
  }
  // One real thread per CUDA thread for the whole grid: they run block after block.
  ox_block_sync sync(block);
  std::barrier end_of_block(block, [&sync]() noexcept { sync.fresh(); });
  std::vector<std::thread> threads;
  threads.reserve(block);
  for (unsigned tx = 0; tx < block; ++tx) {
    threads.emplace_back([&, tx] {
      gridDim = g; blockDim = b; threadIdx = dim3(tx, 0, 0); ox_sync = &sync;
      for (unsigned bx = 0; bx < grid; ++bx) {
        blockIdx = dim3(bx, 0, 0);
        body(params);
        sync.block->arrive_and_drop();  // a returned thread no longer counts at barriers
        sync.warps[tx / 32]->arrive_and_drop();
        end_of_block.arrive_and_wait();  // shared memory is the next block's only after this
      }
    });
  }
  for (auto& t : threads) t.join();
}
"""

# What makes a kernel need real threads (anything that cooperates across threads).
THREADED_MARKERS = ("__syncthreads", "__shared__", "__shfl", "ox_shfl", "__syncwarp", "__ballot",
                    "__any_sync", "__all_sync", "atomic", "wmma::")

__all__ = ["SIM_RUNTIME", "THREADED_MARKERS"]
