"""The C++ header that emulates the CUDA execution model for cuda-sim (used by sim.py).

``__global__`` functions become plain functions, ``threadIdx``/``blockIdx``/``blockDim``/
``gridDim`` thread-local globals, ``__half`` a 16-bit IEEE value converted through
``_Float16``. A launch either runs its threads as a plain loop (kernels without any
cooperation: much faster), or — when the kernel uses ``__syncthreads``, ``__shared__``, warp
intrinsics, atomics or WMMA — hands its blocks to worker ``std::thread``s (blocks really run
concurrently, as on a GPU's SMs), each of which runs the threads of its block as fibers,
switched at sync points (a few instructions on x86-64, ``ucontext`` elsewhere). A first
version ran every CUDA thread as an OS thread: correct, but each ``__syncthreads`` then waited
for the OS to schedule hundreds of threads on a loaded machine (ResNet-50's tiled GEMMs took
minutes); fibers make a barrier a loop over the block's threads.

- ``__syncthreads``: a thread stops; once every live thread of the block has stopped there,
  they all go on. Threads that returned no longer count, as on hardware. ``__shared__`` is a
  ``static thread_local``: each worker runs one block at a time, so it is that block's memory.
- warp shuffles: the lane writes its value to the warp's exchange slots and stops at a
  warp-level barrier; once every live lane of the warp is there they resume, read the source
  lane's slot, and meet again (so no slot is overwritten early). A source lane outside the
  width segment (or past the block's last thread) yields the lane's own value, as on
  hardware. Masks are assumed full: every lane of the warp takes part, which is what onnxc's
  kernels do. ``__syncwarp`` and ``__ballot_sync`` use the same barrier.
- atomics are real atomics (``std::atomic_ref``): blocks on different workers really race.
- ``nvcuda::wmma`` fragments hold the whole tile in every lane (on hardware each lane holds a
  slice; the mapping is unspecified, so no correct program can tell). ``mma_sync`` multiplies
  the float values of the inputs (half, or float rounded to TF32 by ``__float_to_tf32``) and
  accumulates in float, as the tensor cores do. ``store_matrix_sync`` writes each element from
  exactly one lane and every ``*_sync`` call is a warp-level barrier.
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
#include <ucontext.h>
#include <vector>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local  // a worker runs one block at a time
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
static thread_local dim3 threadIdx(0, 0, 0), blockIdx(0, 0, 0), blockDim, gridDim;
static constexpr int warpSize = 32;

// The threads of a block are fibers. On x86-64 a switch is six register pushes and a stack
// swap (ucontext's swapcontext makes a system call per switch); elsewhere ucontext does it.
#if defined(__x86_64__)
asm(R"(
  .text
  .globl ox_ctx_switch
  .hidden ox_ctx_switch
  .type ox_ctx_switch,@function
ox_ctx_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size ox_ctx_switch, .-ox_ctx_switch
)");
struct ox_ctx { void* sp = nullptr; };
extern "C" void ox_ctx_switch(void** save, void* to);
inline void ox_switch(ox_ctx* from, ox_ctx* to) { ox_ctx_switch(&from->sp, to->sp); }
inline void ox_make(ox_ctx* c, char* stack, size_t size, void (*fn)(), ox_ctx*) {
  void** sp = (void**)(((unsigned long long)(stack + size)) & ~15ull);
  *--sp = nullptr;      // fn never returns: no caller
  *--sp = (void*)fn;    // the first switch "returns" into fn, 16-byte aligned as after a call
  for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp rbx r12..r15
  c->sp = sp;
}
#else
struct ox_ctx { ucontext_t uc; };
inline void ox_switch(ox_ctx* from, ox_ctx* to) { swapcontext(&from->uc, &to->uc); }
inline void ox_make(ox_ctx* c, char* stack, size_t size, void (*fn)(), ox_ctx* back) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack; c->uc.uc_stack.ss_size = size; c->uc.uc_link = &back->uc;
  makecontext(&c->uc, fn, 0);
}
#endif
enum ox_state { OX_READY, OX_AT_WARP, OX_AT_BLOCK, OX_DONE };
struct ox_fiber { ox_ctx ctx; ox_state state; unsigned tid; };
static constexpr size_t OX_STACK = 128 * 1024;
// One block in flight on a worker thread: a fiber per CUDA thread, 32 exchange slots per warp.
struct ox_block_run {
  ox_ctx scheduler;
  unsigned n;
  std::unique_ptr<ox_fiber[]> lanes;
  std::unique_ptr<unsigned long long[]> slots;
  std::unique_ptr<char[]> stacks;  // untouched until used: the pages come lazily
  ox_fiber* cur = nullptr;
  explicit ox_block_run(unsigned threads)
      : n(threads), lanes(new ox_fiber[threads]), slots(new unsigned long long[threads + 32]),
        stacks(new char[(size_t)threads * OX_STACK]) {}
  unsigned warp_lanes(unsigned w) const { return n - 32 * w < 32 ? n - 32 * w : 32; }
};
static thread_local ox_block_run* ox_blk = nullptr;  // null: a plain loop, no cooperation
inline void ox_yield(ox_state why) {
  ox_fiber* f = ox_blk->cur;
  f->state = why;
  ox_switch(&f->ctx, &ox_blk->scheduler);
}
inline void __syncthreads() { if (ox_blk) ox_yield(OX_AT_BLOCK); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { if (ox_blk) ox_yield(OX_AT_WARP); }
inline unsigned __activemask() { return 0xffffffffu; }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// Warp exchange: every lane publishes a value, then reads lane ``src`` (own value if src < 0).
template <typename T> inline T ox_exchange(T v, int src) {
  static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
  if (!ox_blk) return v;  // a single-thread loop: no other lanes
  const unsigned w = threadIdx.x / 32, lane = threadIdx.x % 32;
  unsigned long long bits = 0;
  memcpy(&bits, &v, sizeof(T));
  ox_blk->slots[32 * w + lane] = bits;
  ox_yield(OX_AT_WARP);
  T out = v;
  if (src >= 0 && (unsigned)src < ox_blk->warp_lanes(w))
    memcpy(&out, &ox_blk->slots[32 * w + src], sizeof(T));
  ox_yield(OX_AT_WARP);  // nobody overwrites a slot before every lane has read
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
  const unsigned n = ox_blk ? ox_blk->warp_lanes(threadIdx.x / 32) : 1;
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
  const int lane = ox_blk ? ox_lane() : 0, step = ox_blk ? 32 : 1;
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
static thread_local ox_body ox_current_body;
static thread_local void** ox_current_params;
static void ox_fiber_main() {
  ox_current_body(ox_current_params);
  ox_yield(OX_DONE);  // never resumed
}

// Runs one block: every ready fiber to its next sync point, then releases whatever can go on —
// a warp whose live lanes all wait at a warp-level barrier, or the whole block once every live
// thread waits at __syncthreads (threads that returned no longer count, as on hardware).
static void ox_run_block(ox_block_run& run) {
  for (unsigned t = 0; t < run.n; ++t) {
    ox_fiber& f = run.lanes[t];
    f.tid = t;
    f.state = OX_READY;
    ox_make(&f.ctx, &run.stacks[(size_t)t * OX_STACK], OX_STACK, ox_fiber_main, &run.scheduler);
  }
  const unsigned warps = (run.n + 31) / 32;
  for (;;) {
    for (unsigned t = 0; t < run.n; ++t) {
      ox_fiber& f = run.lanes[t];
      if (f.state != OX_READY) continue;
      run.cur = &f;
      threadIdx = dim3(f.tid, 0, 0);
      ox_switch(&run.scheduler, &f.ctx);
    }
    bool released = false;
    unsigned live = 0, at_block = 0, at_warp_total = 0;
    for (unsigned w = 0; w < warps; ++w) {
      unsigned wlive = 0, at_warp = 0;
      for (unsigned t = 32 * w; t < 32 * w + run.warp_lanes(w); ++t) {
        const ox_state st = run.lanes[t].state;
        wlive += st != OX_DONE;
        at_warp += st == OX_AT_WARP;
        at_block += st == OX_AT_BLOCK;
      }
      live += wlive;
      at_warp_total += at_warp;
      if (at_warp && at_warp == wlive) {
        for (unsigned t = 32 * w; t < 32 * w + run.warp_lanes(w); ++t)
          if (run.lanes[t].state == OX_AT_WARP) run.lanes[t].state = OX_READY;
        released = true;
      }
    }
    if (released) continue;
    if (live == 0) break;
    const ox_state go = at_block == live ? OX_AT_BLOCK : OX_AT_WARP;  // else: partial masks
    for (unsigned t = 0; t < run.n; ++t)
      if (run.lanes[t].state == go) run.lanes[t].state = OX_READY;
  }
}

// Blocks go to worker threads (real threads: blocks run concurrently, atomics really race);
// each worker runs its block's CUDA threads as fibers. ``__shared__`` is thread_local static:
// one block's shared memory per worker.
static void ox_launch(unsigned grid, unsigned block, bool threaded, ox_body body, void** params) {
  const dim3 g(grid), b(block);
  if (!threaded) {
    gridDim = g; blockDim = b; ox_blk = nullptr;
    for (unsigned bx = 0; bx < grid; ++bx) {
      blockIdx = dim3(bx, 0, 0);
      for (unsigned tx = 0; tx < block; ++tx) { threadIdx = dim3(tx, 0, 0); body(params); }
    }
    return;
  }
  std::atomic<unsigned> next(0);
  unsigned workers = std::thread::hardware_concurrency();
  workers = workers < 2 ? 2 : workers > 8 ? 8 : workers;
  if (workers > grid) workers = grid;
  std::vector<std::thread> threads;
  for (unsigned k = 0; k < workers; ++k)
    threads.emplace_back([&] {
      ox_block_run run(block);
      ox_blk = &run; ox_current_body = body; ox_current_params = params;
      gridDim = g; blockDim = b;
      for (unsigned bx; (bx = next.fetch_add(1)) < grid;) {
        blockIdx = dim3(bx, 0, 0);
        ox_run_block(run);
      }
      ox_blk = nullptr;
    });
  for (auto& t : threads) t.join();
}
"""

# What makes a kernel need real threads (anything that cooperates across threads).
THREADED_MARKERS = ("__syncthreads", "__shared__", "__shfl", "ox_shfl", "__syncwarp", "__ballot",
                    "__any_sync", "__all_sync", "atomic", "wmma::")

__all__ = ["SIM_RUNTIME", "THREADED_MARKERS"]
