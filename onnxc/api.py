"""The public Python API: compile, load."""
from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Sequence

from onnxc.frontend import ModelLike, load_model
from onnxc.ir.errors import OnnxcError
from onnxc.ir.limits import memory_limit
from onnxc.frontend.onnx_types import value_info_type
from onnxc.runtime.build import CompileOptions, build_executable
from onnxc.runtime.plan import TensorSpec
from onnxc.runtime.session import Session

if TYPE_CHECKING:
    import onnx

log = logging.getLogger("onnxc")

TARGETS = ("cpu", "cuda", "cuda-sim")


def compile(model: ModelLike, target: str = "cpu", *, opt_level: int = 2,
            num_threads: int | None = None,
            input_shapes: dict[str, Sequence[int]] | None = None,
            disable_passes: Sequence[str] = (), print_after: Sequence[str] = (),
            memory_limit_bytes: int | None = None) -> Session:
    """Compile an ONNX model (path, bytes or ModelProto) into a Session.

    Static models are compiled now; a model with symbolic dims is compiled per input-shape set
    on first use, unless ``input_shapes`` fixes them here. ``memory_limit_bytes`` caps what one
    specialization may allocate (working memory, outputs, weights, folded constants); the
    default is $ONNXC_MEMORY_LIMIT, else the machine's physical memory.
    """
    from onnxc.ir.errors import InputValueNeeded, OnnxcError

    if target not in TARGETS:
        raise OnnxcError(f"unknown target {target!r}; available: {', '.join(TARGETS)}")
    if opt_level not in (0, 1, 2, 3):
        raise OnnxcError(f"opt_level must be 0, 1, 2 or 3, got {opt_level!r}")
    start = time.perf_counter()
    proto, _ = load_model(model)
    options = CompileOptions(target=target, opt_level=opt_level,
                             disabled_passes=tuple(disable_passes),
                             print_after=tuple(print_after),
                             memory_limit_bytes=memory_limit_bytes)
    if memory_limit_bytes is not None:
        memory_limit(memory_limit_bytes)  # validates it
    inits = {t.name for t in proto.graph.initializer}
    declared = []
    for vi in proto.graph.input:
        if vi.name in inits:
            continue
        t = value_info_type(vi)
        shape = tuple(input_shapes[vi.name]) if input_shapes and vi.name in input_shapes \
            else t.shape
        declared.append(TensorSpec(vi.name, tuple(shape), t.dtype.value))
    static = all(isinstance(d, int) for s in declared for d in s.shape)
    executables, graph = {}, None
    value_inputs = []
    if static:
        try:
            exe, graph = build_executable(proto, input_shapes, options)
            executables[tuple(s.shape for s in declared)] = exe
            outputs = exe.outputs
        except InputValueNeeded as need:  # compiled per value of that input, on first run
            value_inputs.append(need.input_name)
            static = False
    if not static:
        outputs = [_declared_output(vi) for vi in proto.graph.output]
    session = Session(declared, outputs, options, model=proto, executables=executables,
                      num_threads=num_threads, graph=graph, value_inputs=value_inputs)
    for exe in executables.values():
        if exe.backend != "cuda":  # a GPU is needed only to run: cross-compiling works anywhere
            exe.load()
    options.timings["total"] = time.perf_counter() - start
    log.info("compiled in %.2fs", options.timings["total"])
    return session


def optimize(model: ModelLike, opt_level: int = 2, *,
             input_shapes: dict[str, Sequence[int]] | None = None,
             disable_passes: Sequence[str] = ()) -> "onnx.ModelProto":
    """The model after onnxc's graph optimizations, as standard-opset ONNX.

    The result passes ``onnx.checker.check_model(full_check=True)`` and runs on onnxruntime.
    Symbolic input dims must be fixed with ``input_shapes`` (shapes are specialized).
    """
    import onnx

    from onnxc.frontend.exporter import export_model
    from onnxc.runtime.build import optimize_graph

    proto, _ = load_model(model)
    options = CompileOptions(opt_level=opt_level, disabled_passes=tuple(disable_passes))
    graph = optimize_graph(proto, input_shapes, options)
    out = export_model(graph)
    onnx.checker.check_model(out, full_check=True)
    return out


def _declared_output(vi) -> TensorSpec:
    """An output as the model declares it; its shape may be unknown until the first run."""
    from onnxc.frontend.onnx_types import dtype_from_onnx

    try:
        t = value_info_type(vi)
        return TensorSpec(vi.name, tuple(t.shape), t.dtype.value)
    except OnnxcError:
        try:
            dtype = dtype_from_onnx(vi.type.tensor_type.elem_type).value
        except OnnxcError:
            dtype = "float32"
        return TensorSpec(vi.name, (), dtype)


def load(path: str | os.PathLike, num_threads: int | None = None) -> Session:
    """Load a saved artifact without re-running code generation."""
    from onnxc.runtime.artifact import load_artifact

    return load_artifact(path, num_threads=num_threads)
