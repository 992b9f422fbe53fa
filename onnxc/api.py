"""The public Python API: compile, load."""
from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from onnxc import frameworks
from onnxc.frontend import ModelLike, load_model
from onnxc.ir.errors import CompileError, ModelError, OnnxcError, UnsupportedOpError
from onnxc.ir.limits import memory_limit
from onnxc.runtime.build import (CompileOptions, build_executable, declared_inputs,
                                 declared_output)
from onnxc.runtime.session import Session

if TYPE_CHECKING:
    import onnx
    from onnxc.runtime.plan import TensorSpec

log = logging.getLogger("onnxc")

TARGETS = ("cpu", "cuda", "cuda-sim")


def compile(model: ModelLike, target: str = "cpu", *, opt_level: int = 2,
            num_threads: int | None = None,
            input_shapes: dict[str, Sequence[int]] | None = None,
            disable_passes: Sequence[str] = (), print_after: Sequence[str] = (),
            example_inputs: Any = None, memory_limit_bytes: int | None = None,
            devices: Sequence | None = None, placement: dict[str, str] | None = None,
            executor: str = "local", micro_batches: int = 1, parallel: str = "model",
            executor_options: dict | None = None, objective: str | None = None,
            allow_tf32: bool = False, batch_tile: int | None = None,
            precision: str = "fp32") -> Session:
    """Compile a model into a Session.

    ``model`` is an ONNX model (path, bytes or ModelProto), or a ``torch.nn.Module`` together
    with ``example_inputs`` (a tensor or tuple of tensors; exported through torch.onnx.export,
    see ``onnxc.frameworks``). Static models are compiled now; a model with symbolic dims is
    compiled per input-shape set on first use, unless ``input_shapes`` fixes them here.

    ``devices`` (e.g. ``["cpu:0", onnxc.Device("cuda:0")]``) places the model over several
    devices (docs/placement.md): ``placement`` pins nodes, ``executor`` is "local" or "ray",
    ``micro_batches`` pipelines a batch through the partitions, ``objective`` is "time" (one
    run) or "throughput" (pipelines), ``parallel="data"`` runs one replica per device
    instead. ``target`` is then each device's own.

    ``allow_tf32`` (targets "cuda", "cuda-sim") lets float32 matrix products use TF32 tensor
    cores: inputs rounded to 10 mantissa bits, float32 accumulation. ONNX float32 semantics do
    not allow that rounding, so it is off unless asked for.

    ``batch_tile``: a model whose inputs share a symbolic leading (batch) dim compiles once, at
    a batch tile and at batch 1, and runs any batch by tiles where that is proven safe (README,
    "Shapes"). None picks the tile (8 to 64) from the model's working set; 0 compiles per
    batch size instead.

    ``precision`` (target "cpu"): "fp32" (the default) computes as ONNX float32 does;
    "bf16" multiplies the operands of MatMul, Gemm and Conv as bfloat16 (8 significant bits)
    with float32 sums, with the CPU's avx512_bf16 instructions where it has them (about 2x
    the float32 throughput), emulated with the same results where it does not (no speedup).
    Inputs, outputs and every other op stay float32; expect relative errors around 1e-2.

    ``memory_limit_bytes`` caps what one specialization may allocate (working memory, outputs,
    weights, folded constants); the default is $ONNXC_MEMORY_LIMIT, else the machine's
    physical memory.
    """
    _check_precision(precision, target, devices)
    if devices is not None:
        from onnxc.runtime.placed import compile_placed

        if opt_level not in (0, 1, 2, 3):
            raise OnnxcError(f"opt_level must be 0, 1, 2 or 3, got {opt_level!r}")
        if target != "cpu":
            raise OnnxcError(f"give either target={target!r} or devices=[...]: with devices, "
                             f"each partition is compiled for its device's own target")
        options = CompileOptions(target="placed", opt_level=opt_level,
                                 disabled_passes=tuple(disable_passes),
                                 print_after=tuple(print_after),
                                 memory_limit_bytes=memory_limit_bytes)
        proto = load_model(_from_framework(model, example_inputs))[0]
        _refuse_host_functions(proto)
        return compile_placed(proto, devices, options=options,
                              placement=placement, executor=executor,
                              micro_batches=micro_batches, parallel=parallel,
                              num_threads=num_threads, input_shapes=input_shapes,
                              executor_options=executor_options, objective=objective)

    if target not in TARGETS:
        raise OnnxcError(f"unknown target {target!r}; available: {', '.join(TARGETS)}")
    if opt_level not in (0, 1, 2, 3):
        raise OnnxcError(f"opt_level must be 0, 1, 2 or 3, got {opt_level!r}")
    start = time.perf_counter()
    model = _from_framework(model, example_inputs)
    with _naming_the_file(model):
        return _compile(model, target, opt_level, num_threads, input_shapes, disable_passes,
                        print_after, start, memory_limit_bytes, allow_tf32, batch_tile,
                        precision)


def _compile(model: ModelLike, target: str, opt_level: int, num_threads: int | None,
             input_shapes: dict[str, Sequence[int]] | None, disable_passes: Sequence[str],
             print_after: Sequence[str], start: float,
             memory_limit_bytes: int | None = None, allow_tf32: bool = False,
             batch_tile: int | None = None, precision: str = "fp32") -> Session:
    from onnxc.frontend.importer import check_ops
    from onnxc.ir.errors import DataDependentShape, InputValueNeeded

    from onnxc.runtime.hosted import compile_hosted, host_nodes, with_label_lookups

    proto = with_label_lookups(load_model(model)[0])
    options = CompileOptions(target=target, opt_level=opt_level,
                             disabled_passes=tuple(disable_passes),
                             print_after=tuple(print_after),
                             memory_limit_bytes=memory_limit_bytes, allow_tf32=allow_tf32,
                             batch_tile=batch_tile, precision=precision)
    if batch_tile is not None and (not isinstance(batch_tile, int) or
                                   isinstance(batch_tile, bool) or batch_tile == 1 or
                                   batch_tile < 0):
        raise OnnxcError(f"batch_tile must be None (automatic), 0 (no batch tiling) or an "
                         f"int >= 2, got {batch_tile!r}")
    if memory_limit_bytes is not None:
        memory_limit(memory_limit_bytes)  # validates it
    hosts = host_nodes(proto)
    if hosts:  # string ops, regex, image decoding: host functions between compiled parts
        session = compile_hosted(proto, hosts, options, num_threads, input_shapes)
        options.timings["total"] = time.perf_counter() - start
        return session
    declared = declared_inputs(proto, input_shapes)
    static = all(s.kind == "tensor" and all(isinstance(d, int) for d in s.shape)
                 for s in declared)
    tensor_outputs = all(vi.type.WhichOneof("value") == "tensor_type" for vi in proto.graph.output)
    executables, graph = {}, None
    value_inputs = []
    if static:
        try:
            exe, graph = build_executable(proto, input_shapes, options)
            executables[tuple(s.shape for s in declared)] = exe
            outputs = exe.outputs if tensor_outputs else \
                [declared_output(vi) for vi in proto.graph.output]
        except InputValueNeeded as need:  # compiled per value of that input, on first run
            value_inputs.append(need.input_name)
            static = False
        except DataDependentShape as need:  # cut there and compiled in parts, on first run
            from onnxc.runtime.staged import check_cut

            check_cut(proto, need)
            static = False
    if not static:
        check_ops(proto)  # unsupported ops are reported now, not on first run
        outputs = [declared_output(vi) for vi in proto.graph.output]
    session = Session(declared, outputs, options, model=proto, executables=executables,
                      num_threads=num_threads, graph=graph, value_inputs=value_inputs)
    if not static and not value_inputs:
        _prepare_tiles(session, declared)
    for exe in executables.values():
        if exe.backend != "cuda":  # a GPU is needed only to run: cross-compiling works anywhere
            exe.load()
    options.timings["total"] = time.perf_counter() - start
    log.info("compiled in %.2fs", options.timings["total"])
    return session


PRECISIONS = ("fp32", "bf16")


def _check_precision(precision: str, target: str, devices) -> None:
    if precision not in PRECISIONS:
        raise OnnxcError(f"unknown precision {precision!r}; use 'fp32' (the default) or "
                         f"'bf16' (bfloat16 matrix products, float32 sums; target 'cpu')")
    if precision != "fp32" and (target != "cpu" or devices is not None):
        raise OnnxcError(f"precision={precision!r} is implemented for target='cpu' only "
                         f"(no devices=...); for a GPU use allow_tf32=True, or leave "
                         f"precision at 'fp32'")


def _prepare_tiles(session: Session, declared: list[TensorSpec]) -> None:
    """Compile the batch-tile programs now when the batch is the only symbolic dim (other
    symbolic dims are known only at the first run)."""
    from onnxc.runtime.tiling import batch_symbol, rest_key

    symbol, _ = batch_symbol(declared)
    if symbol is None or session.options.batch_tile == 0:
        return
    shapes = [s.shape for s in declared]
    rest = rest_key(declared, shapes, symbol)
    if all(isinstance(d, int) for shape in rest for d in shape):
        session.prepare_tiling(rest)


def _refuse_host_functions(proto) -> None:
    from onnxc.runtime.hosted import host_nodes

    hosts = host_nodes(proto)
    if hosts:
        ops = sorted({proto.graph.node[k].op_type for k in hosts})
        raise CompileError(f"placing a model over devices does not support host functions "
                           f"yet (this model runs {', '.join(ops)} on the host); compile it "
                           f"with target='cpu'")


def optimize(model: ModelLike, opt_level: int = 2, *,
             input_shapes: dict[str, Sequence[int]] | None = None,
             disable_passes: Sequence[str] = ()) -> "onnx.ModelProto":
    """The model after onnxc's graph optimizations, as standard-opset ONNX.

    The result passes ``onnx.checker.check_model(full_check=True)`` and runs on onnxruntime.
    Symbolic input dims must be fixed with ``input_shapes`` (shapes are specialized). Input
    and output names are the model's. A model of 2 GiB or more is checked when saved
    (``frontend.exporter.save_model`` writes its weights as external data).
    """
    import onnx

    from onnxc.frontend.exporter import export_model, needs_external_data
    from onnxc.runtime.build import optimize_graph

    proto, _ = load_model(model)
    # Winograd's transforms are a cpu lowering with no ONNX op to write them as.
    options = CompileOptions(opt_level=opt_level,
                             disabled_passes=tuple(disable_passes) + ("winograd",))
    graph = optimize_graph(proto, input_shapes, options)
    out = export_model(graph)
    if not needs_external_data(out):
        onnx.checker.check_model(out, full_check=True)
    return out


def _from_framework(model: Any, example_inputs: Any) -> ModelLike:
    """A torch.nn.Module becomes an ONNX ModelProto; ONNX models pass through unchanged."""
    if frameworks.is_torch_module(model):
        return frameworks.torch_to_onnx(model, example_inputs)
    if example_inputs is not None:
        raise OnnxcError("example_inputs is for torch.nn.Module models; an ONNX model declares "
                         "its inputs (fix symbolic dims with input_shapes)")
    return model


@contextlib.contextmanager
def _naming_the_file(model: Any) -> Iterator[None]:
    """Errors about a model read from a file start with that file's name, so a message in a
    log or a batch job says which model it was about."""
    try:
        yield
    except (ModelError, UnsupportedOpError, CompileError) as exc:
        if isinstance(model, (str, os.PathLike)) and exc.args and isinstance(exc.args[0], str):
            name = os.fspath(model)
            if not exc.args[0].startswith(name):
                exc.args = (f"{name}: {exc.args[0]}",) + exc.args[1:]
        raise


def load(path: str | os.PathLike, num_threads: int | None = None) -> Session:
    """Load a saved artifact without re-running code generation."""
    from onnxc.runtime.artifact import load_artifact

    return load_artifact(path, num_threads=num_threads)
