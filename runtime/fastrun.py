"""The repeat-run fast path of ``Session.run``: same shapes as last time, cpu code, plain tensors.

A model that runs in 0.1 ms spends a large share of it in Python: feed validation, the
specialization lookup, building ctypes pointer arrays, finding the thread's arena. Most
serving loops feed the same shapes every time, so after a run the session keeps a ``FastRun``
for that executable; the next run checks each feed with a few identity and tuple compares
(an ndarray, exactly the dtype, exactly the shape, C-contiguous, nothing extra or missing in
the dict) and calls the native entry point with this thread's reusable pointer arrays. Any
feed that does not pass goes the whole way (``Session.run``), which validates it and raises
the usual ``InputError`` for bad input. Outputs are fresh arrays on every run, each thread has
its own arena and pointer arrays, so sessions still run from several threads at once.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any, Mapping

import numpy as np


class FastRun:
    """Runs one cpu executable on feeds that match its input specs exactly."""

    def __init__(self, exe, names: list[str], num_threads: int):
        self.exe = exe
        self.names = tuple(names)
        self.wants = tuple((np.dtype(s.dtype), tuple(s.shape)) for s in exe.inputs)
        self.outs = tuple((tuple(s.shape), np.dtype(s.dtype)) for s in exe.outputs)
        self.num_threads = num_threads
        self.n_in, self.n_out = len(exe.inputs), len(exe.outputs)
        self.checks = bool(exe.index_checks)
        self.main = exe._loaded.main
        self.consts = exe._const_ptrs
        self._local = threading.local()

    @classmethod
    def build(cls, session, exe) -> "FastRun | None":
        """A fast path for ``exe`` if the session's runs can take it: cpu code, tensor inputs
        and outputs, input order as the session's, shapes compiled not per value."""
        specs = session.input_specs
        if (exe.backend != "cpu" or exe._loaded is None or session.value_inputs
                or any(s.kind != "tensor" for s in specs + session.output_specs)
                or [s.name for s in exe.inputs] != [s.name for s in specs]):
            return None
        return cls(exe, [s.name for s in specs], session.num_threads)

    def _slots(self):
        """This thread's (input pointers, output pointers, arena base), made once."""
        local = self._local
        slots = getattr(local, "slots", None)
        if slots is None:
            ins = (ctypes.c_void_p * max(self.n_in, 1))()
            outs = (ctypes.c_void_p * max(self.n_out, 1))()
            slots = local.slots = (ins, outs, self.exe._arena_base())
        return slots

    def __call__(self, feed: Mapping[str, Any]) -> list[np.ndarray] | None:
        """The outputs, or None when a feed is not exactly what the executable takes."""
        if type(feed) is not dict or len(feed) != self.n_in:
            return None
        arrays = []
        for name, (dtype, shape) in zip(self.names, self.wants):
            a = feed.get(name)
            if (type(a) is not np.ndarray or a.dtype != dtype or a.shape != shape
                    or not a.flags.c_contiguous):
                return None
            arrays.append(a)
        if self.checks:
            self.exe.check_indices(arrays)
        ins, outs_p, base = self._slots()
        for k, a in enumerate(arrays):
            ins[k] = a.ctypes.data
        outs = [np.empty(shape, dtype) for shape, dtype in self.outs]
        for k, o in enumerate(outs):
            outs_p[k] = o.ctypes.data
        # ctypes releases the GIL for the whole native run.
        self.main(ins, outs_p, self.consts, base, self.num_threads)
        return outs
