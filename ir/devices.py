"""Devices as the placer sees them: a kind, an index and the figures a cost model needs.

A ``Device`` is plain data. Fields left ``None`` are filled by the runtime from the hardware
(``onnxc.runtime.devices.resolve``): memory from the host or the GPU, throughput measured,
link bandwidth measured (cpu) or nominal (cuda). Every figure can be given instead, which is how
tests make "virtual" CPU devices with a memory cap: ``Device("cpu:1", memory_bytes=40e6)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .errors import OnnxcError

# Device kinds and the compile target each one runs.
KINDS = ("cpu", "cuda", "cuda-sim")


@dataclass(frozen=True)
class Device:
    """One device: ``Device("cuda", 1)``, ``Device("cuda:1")`` or ``Device.parse("cpu:0")``.

    memory_bytes: what weights plus peak activations of its partitions may use.
    flops: sustained floating-point operations per second of generated kernels.
    link_bandwidth: bytes per second between this device and the host.
    unsupported_ops: core ops this device must not run (besides what its backend refuses).
    """

    kind: str
    index: int = 0
    memory_bytes: int | None = None
    flops: float | None = None
    link_bandwidth: float | None = None
    unsupported_ops: frozenset = field(default_factory=frozenset)

    def __post_init__(self):
        kind, index = self.kind, self.index
        if isinstance(kind, str) and ":" in kind:
            kind, _, text = kind.partition(":")
            try:
                index = int(text)
            except ValueError:
                raise OnnxcError(f"device {self.kind!r}: the index after ':' must be an "
                                 f"integer, e.g. 'cuda:1'") from None
        if kind not in KINDS:
            raise OnnxcError(f"unknown device kind {kind!r}; use one of {', '.join(KINDS)} "
                             f"(e.g. 'cpu:0', 'cuda:1', 'cuda-sim:0')")
        if not isinstance(index, int) or index < 0:
            raise OnnxcError(f"device {kind}: index must be a non-negative int, got {index!r}")
        for name in ("memory_bytes", "flops", "link_bandwidth"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise OnnxcError(f"device {kind}:{index}: {name} must be positive, got {value!r}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "index", index)
        if self.memory_bytes is not None:
            object.__setattr__(self, "memory_bytes", int(self.memory_bytes))
        object.__setattr__(self, "unsupported_ops", frozenset(self.unsupported_ops))

    @classmethod
    def parse(cls, spec: "str | Device") -> "Device":
        """A Device from "kind:index" (or "kind", index 0), or the Device itself."""
        if isinstance(spec, Device):
            return spec
        if not isinstance(spec, str):
            raise OnnxcError(f"a device is a string like 'cuda:0' or an onnxc.Device, got "
                             f"{type(spec).__name__}")
        return cls(spec)

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.index}"

    @property
    def target(self) -> str:
        """The compile target of this device's partitions."""
        return self.kind

    @property
    def resolved(self) -> bool:
        return None not in (self.memory_bytes, self.flops, self.link_bandwidth)

    def with_figures(self, **figures) -> "Device":
        """A copy with the given figures set where this device has none."""
        return replace(self, **{k: v for k, v in figures.items() if getattr(self, k) is None})

    def __str__(self) -> str:
        return self.name
