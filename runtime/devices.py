"""Device figures from the hardware, and what each backend can run: the placer's inputs.

``resolve`` fills the figures a ``Device`` leaves as ``None``:

- cpu: memory is the host's physical memory; throughput is measured once per process (a float32
  matrix product); the link is the host's measured copy bandwidth (a transfer between two CPU
  devices is a copy).
- cuda: memory from the driver when pycuda and a GPU are there, else 16 GB; throughput and
  link (PCIe 4.0 x16) are nominal figures.
- cuda-sim stands in for a GPU: it gets the cuda figures, except memory (the host's), so a
  placement tested on it is the one a GPU would get.
"""
from __future__ import annotations

import functools
import os
import time

import numpy as np

from onnxc.ir import Node
from onnxc.ir.devices import Device

CUDA_FLOPS = 20e12  # sustained float32 FLOP/s of generated kernels on a recent GPU (nominal)
CUDA_LINK = 25e9  # bytes/s, PCIe 4.0 x16
CUDA_MEMORY = 16 * 2**30


def host_memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


@functools.lru_cache(maxsize=None)
def measured_cpu_flops() -> float:
    """float32 FLOP/s of a 1024x1024 matrix product (numpy's BLAS), best of a few: a rough,
    cheap figure (about 0.2 s, once per process). Smaller products measure BLAS's threading
    overhead more than its arithmetic."""
    a = np.ones((1024, 1024), np.float32)
    best = float("inf")
    for _ in range(4):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return 2 * 1024**3 / max(best, 1e-7)


@functools.lru_cache(maxsize=None)
def measured_copy_bandwidth() -> float:
    """Bytes/s of a host memory copy (16 MB, best of a few)."""
    src = np.ones(4 * 2**20, np.float32)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return src.nbytes / max(best, 1e-7)


def _gpu_memory(index: int) -> int | None:
    try:
        import pycuda.driver as cuda

        cuda.init()
        return int(cuda.Device(index).total_memory())
    except Exception:  # no pycuda, no driver or no such GPU: the nominal figure is used
        return None


def resolve(device: "Device | str") -> Device:
    """The device with every figure set (given ones kept)."""
    device = Device.parse(device)
    if device.kind == "cpu":
        return device.with_figures(memory_bytes=host_memory_bytes(),
                                   flops=measured_cpu_flops(),
                                   link_bandwidth=measured_copy_bandwidth())
    memory = host_memory_bytes() if device.kind == "cuda-sim" else \
        (_gpu_memory(device.index) if device.memory_bytes is None else None) or CUDA_MEMORY
    return device.with_figures(memory_bytes=memory, flops=CUDA_FLOPS, link_bandwidth=CUDA_LINK)


def backend_support(node: Node, device: Device) -> str | None:
    """Why ``device``'s backend cannot run ``node`` (None when it can): the placer's protocol.

    The cpu backend runs every core op. The cuda backends are asked to render the node's
    kernel; what they refuse (an element type, an operation) is the reason.
    """
    if device.kind == "cpu":
        return None
    return _cuda_refusal(node)


def _cuda_refusal(node: Node) -> str | None:
    from onnxc.backends.cuda import render_module
    from onnxc.ir.errors import OnnxcError
    from onnxc.runtime.plan import _kernel_for
    from onnxc.ir.ops.registry import get_op

    if get_op(node.op).kind == "view":
        return None
    try:
        kernel = _kernel_for(node)
    except OnnxcError:
        return None  # no kernel of its own: it runs wherever its neighbours do
    from onnxc.runtime.plan import KernelCall, Slot

    call = KernelCall(kernel, [Slot("arena", 0) for _ in kernel.params])
    try:
        render_module([call])
    except OnnxcError as exc:
        return f"the cuda backend cannot run it ({exc})"
    return None
