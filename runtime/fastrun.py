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

With ``num_threads > 1`` the fast path also measures whether the thread team pays on this
machine, now (``ThreadChoice``): a team's runs wait for every thread at its end, so on a loaded
host a descheduled thread makes a 2-thread run slower than a 1-thread one. Results do not
depend on the thread count (threads split output elements, never a sum), only the time does.
"""
from __future__ import annotations

import ctypes
import threading
import time
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
        self.choice = ThreadChoice(num_threads) if num_threads > 1 else None
        self.n_in, self.n_out = len(exe.inputs), len(exe.outputs)
        self.checks = bool(exe.index_checks)
        exe._loaded.ensure_threads(num_threads)
        self._forks = exe._loaded.forks  # changes in a forked child: start its workers
        self._forks_seen = self._forks[0]
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
        choice = self.choice
        if choice is None:
            self.main(ins, outs_p, self.consts, base, self.num_threads)
            return outs
        if self._forks[0] != self._forks_seen:
            self._forks_seen = self._forks[0]
            self.exe._loaded.ensure_threads(self.num_threads)
        k = choice.pick()
        start = time.perf_counter()
        self.main(ins, outs_p, self.consts, base, choice.options[k])
        choice.record(k, time.perf_counter() - start)
        return outs


class ThreadChoice:
    """Picks the thread count of each run, all of them or one, from the recent run times of
    each: the one with the lower lower-quartile of its last ``WINDOW`` runs, the other one twice
    every ``PROBE`` runs (``PROBE_FAR`` when the team is far ahead) so a change in the
    machine's load is noticed. Only the second run of a probe counts: the first wakes the
    team's sleeping workers (on these VMs 0.1-0.4 ms for an MLP at batch 1 that runs in 0.08),
    and a one-run probe that always paid for it never won the team back."""

    WINDOW = 5
    PROBE = 16
    # The team keeps the choice unless it is this much slower: its samples are pessimistic
    # after an idle spell (the worker's core is cold for a few runs: mlp_b1's team took 0.20,
    # 0.11, then 0.075 ms per run after a 0.1 s pause, one thread 0.10-0.12), while a team
    # slowed by a loaded host loses by far more (2x and up).
    TEAM_BIAS = 1.25
    # A team this much faster than one thread is probed only every PROBE_FAR runs: each probe
    # is two 1-thread runs, which cost ResNet-50 at 2 threads 2 x 37 ms every 16 runs (6%).
    # A loaded host shows in the team's own samples; probing often matters when one thread is
    # the choice, to notice the load going away.
    FAR = 1.5
    PROBE_FAR = 128

    def __init__(self, num_threads: int):
        self.options = (num_threads, 1)
        self.samples: tuple[list[float], list[float]] = ([], [])
        self.runs = 0
        self.best = 0
        self.team_far_ahead = False
        self._waking = False

    def pick(self) -> int:
        self.runs += 1
        self._waking = False
        if self.runs <= 2 * self.WINDOW:
            return self.runs % 2  # both, in turn, to start
        phase = self.runs % (self.PROBE_FAR if self.team_far_ahead else self.PROBE)
        if phase in (0, 1):
            self._waking = phase == 0
            return 1 - self.best
        return self.best

    def record(self, k: int, seconds: float) -> None:
        if self._waking:
            return
        window = self.samples[k]
        window.append(seconds)
        if len(window) > self.WINDOW:
            del window[0]
        # The lower quartile, not the median: a run now and then that waits for a thread to
        # wake (after an idle gap) must not flip the choice; a team that is slow on most runs
        # (a loaded machine) still loses.
        a, b = (sorted(w)[len(w) // 4] if w else float("inf") for w in self.samples)
        self.best = 0 if a <= self.TEAM_BIAS * b else 1
        self.team_far_ahead = self.best == 0 and b > self.FAR * a
