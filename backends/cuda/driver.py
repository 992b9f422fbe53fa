"""Running compiled CUDA modules on a real GPU through pycuda (the ``cuda`` extra).

pycuda is imported here, lazily, only when a ``cuda`` session loads: it needs a CUDA driver,
which machines without a GPU (and CI) do not have.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from onnxc.ir.errors import OnnxcError


def _pycuda():
    try:
        import pycuda.driver as drv
    except ImportError as exc:
        raise OnnxcError("target 'cuda' needs pycuda: pip install 'onnxc[cuda]' on a machine "
                         f"with the CUDA driver ({exc})") from exc
    return drv


class GpuModule:
    """A loaded fatbin with the constants uploaded once; runs a plan's launches in order."""

    def __init__(self, fatbin: bytes, constants: Sequence[np.ndarray], device: int = 0):
        drv = _pycuda()
        try:
            drv.init()
            if drv.Device.count() <= device:
                raise OnnxcError(f"no CUDA device {device}: this machine has "
                                 f"{drv.Device.count()} GPU(s)")
            self._ctx = drv.Device(device).retain_primary_context()
        except drv.Error as exc:
            raise OnnxcError(f"no usable CUDA driver or GPU ({exc}); run this artifact on a "
                             f"machine with an NVIDIA GPU, or compile for target 'cpu'") from exc
        self._drv = drv
        self._ctx.push()
        try:
            self._module = drv.module_from_buffer(fatbin)
            self._consts = [drv.to_device(np.ascontiguousarray(c)) for c in constants]
            self._functions: dict = {}
        finally:
            self._ctx.pop()

    def run(self, launches, feeds: Sequence[np.ndarray], outputs, arena_bytes: int
            ) -> list[np.ndarray]:
        """One copy in per feed, the launches, one copy out per output."""
        drv = self._drv
        self._ctx.push()
        try:
            arena = drv.mem_alloc(max(arena_bytes, 1))
            d_in = [drv.to_device(f) for f in feeds]
            host_out = [np.empty(o.shape, dtype=o.dtype) for o in outputs]
            d_out = [drv.mem_alloc(max(h.nbytes, 1)) for h in host_out]
            tables = {"input": [int(d) for d in d_in], "output": [int(d) for d in d_out],
                      "const": [int(d) for d in self._consts]}
            for ln in launches:
                if ln.total == 0:
                    continue
                fn = self._functions.get(ln.entry)
                if fn is None:
                    fn = self._functions[ln.entry] = self._module.get_function(ln.entry)
                args = [np.uintp(int(arena) + i if region == "arena" else tables[region][i])
                        for region, i in ln.slots]
                fn(*args, block=(ln.block, 1, 1), grid=(ln.grid, 1))
            for h, d in zip(host_out, d_out):
                if h.nbytes:
                    drv.memcpy_dtoh(h, d)
            return host_out
        except drv.Error as exc:
            raise OnnxcError(f"CUDA run failed: {exc}") from exc
        finally:
            self._ctx.pop()
