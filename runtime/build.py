"""The compile pipeline for one specialization: import -> passes -> plan -> machine code."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import onnx

from onnxc.ir import Graph
from onnxc.runtime.executable import Executable, KernelInfo
from onnxc.frontend.onnx_types import value_info_type
from onnxc.runtime.plan import TensorSpec, make_plan

log = logging.getLogger("onnxc.runtime")


@dataclass
class CompileOptions:
    target: str = "cpu"
    opt_level: int = 2
    disabled_passes: tuple[str, ...] = ()
    print_after: tuple[str, ...] = ()
    use_openmp: bool = True
    timings: dict = field(default_factory=dict)
    # None: $ONNXC_MEMORY_LIMIT, else physical memory (onnxc.ir.limits)
    memory_limit_bytes: int | None = None
    # cuda targets: float32 matrix products may use TF32 tensor cores (opt-in: not ONNX float32)
    allow_tf32: bool = False
    # Rows of the batch tile a dynamic-batch model compiles at (runtime/tiling.py): None
    # chooses it from the batch-1 program's working set, 0 turns batch tiling off (one
    # compile per batch size).
    batch_tile: int | None = None
    # cpu: "bf16" multiplies bfloat16 operands in MatMul/Gemm/Conv with float32 accumulation
    # (backends/cpu/gemm_bf16.py); "fp32" is ONNX float32 semantics
    precision: str = "fp32"


def optimize_graph(proto: onnx.ModelProto, input_shapes: dict[str, Sequence[int]] | None,
                   options: CompileOptions, input_values: dict | None = None) -> Graph:
    from onnxc.frontend import import_graph
    from onnxc.passes import PassManager, pipeline

    start = time.perf_counter()
    graph = import_graph(proto, input_shapes, input_values, options.memory_limit_bytes)
    options.timings["import"] = time.perf_counter() - start
    pm = PassManager(pipeline(options.opt_level, options.target), disabled=set(options.disabled_passes),
                     print_after=set(options.print_after))
    graph = pm.run(graph)
    options.timings["passes"] = dict(pm.timings)
    return graph


def build_executable(proto: onnx.ModelProto, input_shapes: dict[str, Sequence[int]] | None,
                     options: CompileOptions, input_values: dict | None = None
                     ) -> tuple[Executable, Graph]:
    graph = optimize_graph(proto, input_shapes, options, input_values)
    return compile_graph(graph, options), graph


def compile_graph(graph: Graph, options: CompileOptions) -> Executable:
    """Machine code for an optimized graph (a whole model, or one partition of a placed one)."""
    start = time.perf_counter()
    plan = make_plan(graph)
    options.timings["plan"] = time.perf_counter() - start
    _check_memory(plan, graph, options)
    checks = index_checks(graph)
    if options.target in ("cuda", "cuda-sim"):
        exe = _build_cuda(plan, options)
        exe.index_checks = checks
        return exe
    from onnxc.backends.cpu import compile_plan

    start = time.perf_counter()
    if options.precision == "bf16":
        _prepare_bf16_weights(plan)
    elif options.target == "cpu":
        _prepare_packed_weights(plan)
    code = compile_plan(plan.calls, opt_level=options.opt_level, use_openmp=options.use_openmp,
                        precision=options.precision)
    options.timings["codegen"] = time.perf_counter() - start
    kernels = [KernelInfo(call.kernel.name, sym,
                          list(dict.fromkeys(n for n, _ in call.kernel.origin)),
                          list(dict.fromkeys(o for _, o in call.kernel.origin)),
                          slots=[(s.region, s.index) for s in call.slots],
                          params=_param_table(call))
               for call, sym in zip(plan.calls, code.kernel_symbols)]
    exe = Executable(plan.inputs, plan.outputs, plan.constants, plan.arena_bytes,
                     plan.value_bytes, kernels, code.object_code, code.target, code.needs_openmp,
                     code.llvm_ir, index_checks=checks)
    return exe


def _prepare_bf16_weights(plan) -> None:
    """precision="bf16": constant GEMM operands rounded and laid out for the micro-kernel
    once (backends/cpu/bf16_weights.py), as extra uint16 constants of the kernels."""
    from onnxc.backends.cpu.bf16_weights import prepare

    for call in plan.calls:
        consts = _call_constants(plan, call)
        prepared: dict[str, dict[str, str]] = {}
        for out, operand, array in (prepare(call.kernel, consts) if consts else ()):
            name = _add_constant(plan, call, f"{out}.bf16_{operand}", array)
            prepared.setdefault(out, {})[operand] = name
        if prepared:
            call.kernel.bf16_prepacked = prepared


def _prepare_packed_weights(plan) -> None:
    """float32: constant ``b`` operands of packed GEMM stages laid out as the micro-kernel's
    panels once (backends/cpu/packed_weights.py), as extra constants of the kernels."""
    from onnxc.backends.cpu import host_target, vector_width
    from onnxc.backends.cpu.packed_weights import prepare

    vw = vector_width(host_target()["features"])
    for call in plan.calls:
        consts = _call_constants(plan, call)
        prepared: dict[str, tuple[str, int]] = {}
        for out, array in (prepare(call.kernel, consts, vw) if consts else ()):
            prepared[out] = (_add_constant(plan, call, f"{out}.f32_panels", array), vw)
        if prepared:
            call.kernel.f32_prepacked = prepared


def _call_constants(plan, call) -> dict[str, np.ndarray]:
    """The model constants a kernel call reads: parameter name -> value."""
    return {p.name: plan.constants[s.index] for p, s in zip(call.kernel.params, call.slots)
            if s.region == "const"}


def _add_constant(plan, call, name: str, array: np.ndarray) -> str:
    """Append ``array`` to the plan's constants as a new input parameter ``name`` of the call's
    kernel (a flat array of its dtype); returns ``name``."""
    from onnxc.ir.dtypes import DType
    from onnxc.ir.kernel import Param
    from onnxc.runtime.plan import Slot

    call.kernel.params.append(Param(name, (array.size,), DType(array.dtype.name), "in"))
    call.slots.append(Slot("const", len(plan.constants)))
    if call.tensors:
        call.tensors.append("")
    plan.constants.append(array)
    return name


def _check_memory(plan, graph: Graph, options: CompileOptions) -> None:
    """What one run allocates (arena, outputs) plus the weights must fit the memory limit;
    the error names the node with the largest tensor."""
    from onnxc.ir import limits

    outputs = sum(limits.checked_numel(o.shape, np.dtype(o.dtype).itemsize) *
                  np.dtype(o.dtype).itemsize for o in plan.outputs)
    weights = sum(int(c.nbytes) for c in plan.constants)
    total = plan.arena_bytes + outputs + weights
    limit = limits.memory_limit(options.memory_limit_bytes)
    if total <= limit:
        return
    nodes = [m for n in graph.nodes
             for m in (n.subgraphs["body"].nodes if n.op == "Fused" else [n])]
    sized = [(v.type.nbytes(), v, n) for n in nodes for v in n.outputs if v.type.is_static]
    node = op = None
    what = "the compiled model"
    if sized:
        nbytes, v, n = max(sized, key=lambda t: t[0])
        node, op = n.origin[0] if n.origin else (n.name, n.op)
        what = f"its output {v.type} ({nbytes} B) is the largest tensor; the compiled model"
    limits.check_budget(total, limit, f"{what} (working memory {plan.arena_bytes} B, outputs "
                        f"{outputs} B, weights {weights} B)", node, op)


def index_checks(graph: Graph) -> list[list]:
    """[input position, axis size, node, op] for each Gather/GatherElements whose indices are
    a graph input (through views): the session checks those feeds before the native run,
    since generated code only clamps an out-of-range index to stay inside memory."""
    from onnxc.ir.ops.registry import get_op

    position = {id(v): k for k, v in enumerate(graph.inputs)}
    checks = []

    def visit(nodes):
        for node in nodes:
            if node.op == "Fused":
                visit(node.subgraphs["body"].nodes)
                continue
            if node.op not in ("Gather", "GatherElements") or len(node.inputs) < 2:
                continue
            v = node.inputs[1]
            while v is not None and v.producer is not None and \
                    get_op(v.producer.op).kind == "view":
                v = v.producer.inputs[0]
            data = node.inputs[0]
            if v is None or id(v) not in position or not data.type.rank:
                continue
            n = data.shape[int(node.attrs.get("axis", 0)) % data.type.rank]
            if not isinstance(n, int):
                continue
            onnx_name, onnx_op = node.origin[0] if node.origin else (node.name, node.op)
            checks.append([position[id(v)], int(n), onnx_name, onnx_op])

    visit(graph.nodes)
    return checks


def _build_cuda(plan, options: CompileOptions) -> Executable:
    """CUDA C for the plan; nvcc compiles it to a fatbin (sm_80, sm_90 + PTX) for 'cuda'.

    'cuda-sim' keeps only the source: it is compiled for the CPU emulator when loaded."""
    from onnxc.backends.cuda import compile_cuda, render_module

    start = time.perf_counter()
    module = render_module(plan.calls, allow_tf32=options.allow_tf32)
    fatbin = b""
    if options.target == "cuda":
        fatbin = compile_cuda(module.source)["fatbin"]
    options.timings["codegen"] = time.perf_counter() - start
    device = "cuda:0" if options.target == "cuda" else "cuda-sim"
    kernels = [KernelInfo(call.kernel.name, call.kernel.name,
                          list(dict.fromkeys(n for n, _ in call.kernel.origin)),
                          list(dict.fromkeys(o for _, o in call.kernel.origin)), device=device,
                          slots=[(s.region, s.index) for s in call.slots],
                          params=_param_table(call))
               for call in plan.calls]
    return Executable(plan.inputs, plan.outputs, plan.constants, plan.arena_bytes,
                      plan.value_bytes, kernels, fatbin, {"target": options.target}, False,
                      module.source, backend=options.target, launches=module.launches)


def _param_table(call) -> list[tuple[str, str, list[int], str]]:
    """(role, tensor, shape, dtype) per parameter: kept with the artifact for inspect/traces."""
    return [(p.role, t, [int(d) for d in p.shape], p.dtype.value)
            for p, t in zip(call.kernel.params, call.tensors)]


def plan_for_model(model, feeds: dict):
    """Import, optimize and plan ``model`` for the shapes (and, where the compiler asks for
    them, the values) of ``feeds``, as build_executable does: for tests and GPU scripts."""
    import numpy as np

    from onnxc.ir.errors import InputValueNeeded

    from onnxc.frontend.containers import flatten_feed, structure_of

    kinds = {s.name: s.kind for s in declared_inputs(model, None)}
    shapes = {k: structure_of(kinds.get(k, "tensor"), v if kinds.get(k, "tensor") != "tensor"
                              else np.asarray(v), k) for k, v in feeds.items()}
    flat: dict = {}
    for k, v in feeds.items():
        flat.update(flatten_feed(kinds.get(k, "tensor"), k, v))
    values: dict = {}
    while True:
        try:
            graph = optimize_graph(model, shapes, CompileOptions(), values or None)
            return make_plan(graph)
        except InputValueNeeded as need:
            if need.input_name in values or need.input_name not in flat:
                raise
            values[need.input_name] = np.asarray(flat[need.input_name])


def declared_inputs(proto: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None
                    ) -> list[TensorSpec]:
    """The model's feeds (initializers listed as inputs are not), with ``input_shapes``
    fixing their (symbolic) dims."""
    inits = {t.name for t in proto.graph.initializer}
    specs = []
    for vi in proto.graph.input:
        if vi.name in inits:
            continue
        if vi.type.WhichOneof("value") != "tensor_type":
            specs.append(container_spec(vi))
            continue
        t = value_info_type(vi)
        shape = tuple(input_shapes[vi.name]) if input_shapes and vi.name in input_shapes \
            else t.shape
        specs.append(TensorSpec(vi.name, tuple(shape), t.dtype.value))
    return specs


def container_spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    """The spec of a sequence or optional input/output: its kind and element tensor type."""
    from onnxc.frontend.containers import kind_of
    from onnxc.frontend.onnx_types import dtype_from_onnx

    kind, elem = kind_of(vi.type)
    tt = elem.tensor_type
    shape = None
    if tt.HasField("shape"):
        shape = tuple(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or f"d{k}")
                      for k, d in enumerate(tt.shape.dim))
    return TensorSpec(vi.name, shape, dtype_from_onnx(tt.elem_type).value, kind)


def declared_output(vi: onnx.ValueInfoProto) -> TensorSpec:
    """An output as the model declares it; its shape may be unknown until the first run."""
    from onnxc.frontend.onnx_types import dtype_from_onnx
    from onnxc.ir.errors import OnnxcError

    if vi.type.WhichOneof("value") not in ("tensor_type", None):
        return container_spec(vi)
    try:
        t = value_info_type(vi)
        return TensorSpec(vi.name, tuple(t.shape), t.dtype.value)
    except OnnxcError:
        try:
            dtype = dtype_from_onnx(vi.type.tensor_type.elem_type).value
        except OnnxcError:
            dtype = "float32"
        return TensorSpec(vi.name, (), dtype)
