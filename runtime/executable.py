"""A compiled specialization: plan metadata, machine code and constants, ready to run."""
from __future__ import annotations

import ctypes
import math
import threading
from dataclasses import dataclass, field

import numpy as np

from onnxc.ir.errors import InputError
from onnxc.runtime.plan import TensorSpec


@dataclass
class KernelInfo:
    name: str
    symbol: str
    nodes: list[str]
    ops: list[str]
    device: str = "cpu:0"
    slots: list = None  # [(region, index)] per parameter, for profiling
    # [(role, tensor, shape, dtype)] per parameter, aligned with slots: the graph edges and the
    # bytes each kernel moves, for inspect and traces. None in artifacts saved before it.
    params: list = None


@dataclass
class Executable:
    """Everything needed to run one set of concrete input shapes."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    constants: list[np.ndarray]
    arena_bytes: int
    value_bytes: int
    kernels: list[KernelInfo]
    object_code: bytes
    target: dict
    needs_openmp: bool
    llvm_ir: str = ""  # generated source: LLVM IR (cpu) or CUDA C (cuda, cuda-sim)
    backend: str = "cpu"  # "cpu", "cuda" (object_code is a fatbin) or "cuda-sim"
    launches: list | None = None  # cuda: the kernel launches in order
    # [input position, axis size, node, op]: fed Gather indices checked before each run
    index_checks: list = field(default_factory=list)

    def __post_init__(self):
        self._loaded = None
        self._const_ptrs = None
        self._arenas = threading.local()  # one arena per thread, reused across its runs

    def load(self) -> None:
        """Link the machine code into this process (once)."""
        if self._loaded is None and self.backend == "cuda-sim":
            from onnxc.backends.cuda.sim import load_sim

            self._loaded = load_sim(self.llvm_ir)
        elif self._loaded is None and self.backend == "cuda":
            from onnxc.backends.cuda.driver import GpuModule

            self._loaded = GpuModule(self.object_code, self.constants)
        elif self._loaded is None:
            from onnxc.backends.cpu import load_code

            self._loaded = load_code(self.object_code, self.target, self.needs_openmp)
            self.constants = [_aligned(_contiguous(c)) for c in self.constants]
            ptrs = (ctypes.c_void_p * max(len(self.constants), 1))()
            for k, c in enumerate(self.constants):
                ptrs[k] = c.ctypes.data
            self._const_ptrs = ptrs

    def run(self, feeds: list[np.ndarray], num_threads: int) -> list[np.ndarray]:
        """Run with validated, contiguous feeds in input order; returns fresh output arrays.

        Runs share only read-only code and weights: each thread has its own arena (reused by
        its next run) and every run fresh outputs, so one executable runs in many threads at
        once, in parallel, since the native call releases the GIL."""
        self.check_indices(feeds)
        self.load()
        if self.backend == "cuda":
            return self._loaded.run(self.launches, feeds, self.outputs, self.arena_bytes)
        outs = [np.empty(o.shape, dtype=o.dtype) for o in self.outputs]
        self.run_into(feeds, outs, num_threads)
        return outs

    def run_into(self, feeds: list[np.ndarray], outs: list[np.ndarray], num_threads: int
                 ) -> None:
        """Run writing into ``outs``: C-contiguous arrays of the output shapes, e.g. slices
        of a larger batch (runtime/tiling.py runs a batch tile by tile this way, zero-copy:
        feeds and outputs are pointer offsets into the caller's arrays)."""
        self.check_indices(feeds)
        self.load()
        if self.backend == "cuda":
            for out, got in zip(outs, self._loaded.run(self.launches, feeds, self.outputs,
                                                       self.arena_bytes)):
                out[...] = got
            return
        if self.backend == "cuda-sim":
            from onnxc.backends.cuda.sim import run_launches

            run_launches(self._loaded, self.launches, feeds, outs, self.constants,
                         self.arena_bytes)
            return
        base = self._arena_base()
        in_ptrs = (ctypes.c_void_p * max(len(feeds), 1))(*[f.ctypes.data for f in feeds])
        out_ptrs = (ctypes.c_void_p * max(len(outs), 1))(*[o.ctypes.data for o in outs])
        self._loaded.ensure_threads(num_threads)
        # ctypes releases the GIL for the whole native run.
        self._loaded.main(in_ptrs, out_ptrs, self._const_ptrs, base, num_threads)

    def _arena_base(self) -> int:
        """This thread's 64-byte aligned arena (allocated on its first run)."""
        arena = getattr(self._arenas, "buffer", None)
        if arena is None:
            arena = self._arenas.buffer = np.empty(self.arena_bytes + 64, dtype=np.uint8)
        base = arena.ctypes.data
        return base + (-base) % 64

    def profile(self, feeds: list[np.ndarray], num_threads: int) -> list[tuple[str, float]]:
        """Run kernel by kernel from Python, timing each: (kernel name, seconds)."""
        import time

        self.check_indices(feeds)
        self.load()
        outs = [np.empty(o.shape, dtype=o.dtype) for o in self.outputs]
        arena = np.empty(self.arena_bytes + 64, dtype=np.uint8)
        base = arena.ctypes.data + (-arena.ctypes.data) % 64
        tables = {"input": [f.ctypes.data for f in feeds], "output": [o.ctypes.data for o in outs],
                  "const": [c.ctypes.data for c in self.constants]}
        timings = []
        for k in self.kernels:
            ptrs = [base + i if region == "arena" else tables[region][i] for region, i in k.slots]
            params = (ctypes.c_void_p * max(len(ptrs), 1))(*ptrs)
            fn = self._loaded.kernel(k.symbol)
            start = time.perf_counter()
            fn(params, num_threads)
            timings.append((k.name, time.perf_counter() - start))
        return timings

    def check_indices(self, feeds: list[np.ndarray]) -> None:
        """InputError for a fed Gather index outside [-n, n-1] (ONNX's negative-index rule)."""
        for position, n, node, op in self.index_checks:
            idx = feeds[position]
            if idx.size == 0:
                continue
            lo, hi = int(idx.min()), int(idx.max())
            if lo < -n or hi >= n:
                bad = lo if lo < -n else hi
                name = self.inputs[position].name
                raise InputError(f"input {name!r}: index {bad} is out of range for node "
                                 f"{node!r} ({op}), whose axis has size {n}; indices must lie "
                                 f"in [{-n}, {n - 1}]", input_name=name)

    @property
    def weight_bytes(self) -> int:
        return int(sum(c.nbytes for c in self.constants))


def check_feed(spec: TensorSpec, value) -> np.ndarray:
    """The feed as a C-contiguous array of the expected dtype and shape, or an InputError."""
    if not isinstance(value, np.ndarray):
        try:
            value = np.asarray(value)
        except Exception as exc:
            raise InputError(f"input {spec.name!r}: cannot convert {type(value).__name__} to an "
                             f"array: {exc}", input_name=spec.name) from exc
    want = np.dtype(spec.dtype)
    if value.dtype != want:
        raise InputError(f"input {spec.name!r} expects dtype {want.name}, got {value.dtype.name}; "
                         f"convert it with .astype(np.{want.name})", input_name=spec.name)
    if value.ndim != len(spec.shape):
        raise InputError(f"input {spec.name!r} expects rank {len(spec.shape)} (shape "
                         f"{list(spec.shape)}), got rank {value.ndim} (shape {list(value.shape)})",
                         input_name=spec.name)
    for k, (want_d, got_d) in enumerate(zip(spec.shape, value.shape)):
        if isinstance(want_d, int) and want_d != got_d:
            raise InputError(f"input {spec.name!r} expects shape {list(spec.shape)}, got "
                             f"{list(value.shape)} (dimension {k} must be {want_d})",
                             input_name=spec.name)
    return _contiguous(value)


def numel(shape) -> int:
    return int(math.prod(shape))


def _contiguous(array):
    """C-contiguous without numpy's ascontiguousarray turning 0-d arrays into 1-d ones."""
    import numpy

    array = numpy.asarray(array)
    return array if array.flags.c_contiguous else numpy.array(array, order="C")


def _aligned(array: np.ndarray, alignment: int = 64) -> np.ndarray:
    """``array`` at a 64-byte aligned address (a copy if it is not): kernels read weights with
    aligned vector loads (the packed GEMM's prepared panels, packed_weights.py)."""
    if array.dtype.kind not in "biufcV" or array.ctypes.data % alignment == 0:
        return array
    buffer = np.empty(array.nbytes + alignment, dtype=np.uint8)
    start = (-buffer.ctypes.data) % alignment
    out = buffer[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out
