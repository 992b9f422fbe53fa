"""Import an ONNX graph into the IR, one importer function per ONNX op.

Nodes whose inputs are all constants are evaluated while importing (with the op's numpy
reference or the kernel-IR interpreter), so shape computations and constant weights such as
``ConstantOfShape`` arrive in the IR as constants.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Sequence

import numpy as np
import onnx

from onnxc.ir import Graph, Value, limits
from onnxc.ir.errors import (DataDependentShape, InputValueNeeded, ModelError, OnnxcError,
                             UnsupportedOpError)
from onnxc.ir.types import TensorType

from .graph_check import check_and_sort
from .containers import Opt, Seq, element_name, kind_of
from .onnx_types import dtype_from_onnx, tensor_to_array, value_info_type
from .type_check import check_input_types

log = logging.getLogger("onnxc.frontend")

MAX_SPECIALIZED_ELEMENTS = 64  # graph inputs used as axes/shapes are compiled per value
MAX_FOLD_ELEMENTS = 1 << 22  # interpreter folding limit; ops with a numpy reference fold any size

Importer = Callable[["ImportContext", onnx.NodeProto], Sequence[Value | None]]
IMPORTERS: dict[str, Importer] = {}
DOMAIN_IMPORTERS: dict[tuple[str, str], Importer] = {}  # (domain, op) outside ai.onnx
SUPPORTED_OPSET = max(25, onnx.defs.onnx_opset_version())


def onnx_op(*names: str, domain: str = ""):
    """Register an importer for the given ONNX op types (of the default domain unless
    ``domain`` names another, e.g. ``ai.onnx.preview.training``)."""

    def wrap(fn: Importer) -> Importer:
        for name in names:
            if domain in ("", "ai.onnx"):
                IMPORTERS[name] = fn
            else:
                DOMAIN_IMPORTERS[(domain, name)] = fn
        return fn

    return wrap


class ImportContext:
    """What an importer function sees: the graph being built and the node's context."""

    def __init__(self, graph: Graph, opset: int, memory_limit: int | None = None,
                 opsets: dict[str, int] | None = None):
        self.graph = graph
        self.opset = opset
        self.opsets = dict(opsets or {})  # domain -> version; "" is the default domain
        self.opsets[""] = opset
        self.functions: dict[tuple[str, str, str], onnx.FunctionProto] = {}  # model-local
        self.expansions = 0  # function bodies expanded so far (unique internal names)
        self.memory_limit = limits.memory_limit(memory_limit)
        self.values: dict[str, Value] = {}
        self.bound: set[int] = set()  # ids of values already named after their ONNX name
        self.node: onnx.NodeProto | None = None

    # -- values ---------------------------------------------------------------------------
    def input(self, k: int) -> Value | None:
        """The node's k-th input, or None when it is absent or empty."""
        names = self.node.input
        if k >= len(names) or names[k] == "":
            return None
        try:
            return self.values[names[k]]
        except KeyError:
            raise self.error(f"input {k} {names[k]!r} is not produced by any node, initializer "
                             f"or graph input") from None

    def inputs(self) -> list[Value | None]:
        return [self.input(k) for k in range(len(self.node.input))]

    def const(self, k: int, what: str = "") -> np.ndarray | None:
        """The input's value if known at compile time; a small graph input is specialized on."""
        v = self.input(k)
        if v is None:
            return None
        if v.const is None:
            small = self._small_sources(v)
            if small:  # computed from small graph inputs only: specialize on them
                raise InputValueNeeded(small[0].name)
        return v.const

    def _small_sources(self, v: Value) -> list[Value]:
        """The graph inputs ``v`` is computed from, if all of them are small enough to
        specialize on (and everything else it reads is constant); else []."""
        found, stack, seen = [], [v], set()
        while stack:
            u = stack.pop()
            if id(u) in seen or u.const is not None:
                continue
            seen.add(id(u))
            if u.producer is None:
                if not (u in self.graph.inputs and u.type.is_static and
                        u.type.numel() <= MAX_SPECIALIZED_ELEMENTS):
                    return []
                found.append(u)
            else:
                stack.extend(w for w in u.producer.inputs if w is not None)
        return found

    def require_const(self, k: int, what: str) -> np.ndarray:
        v = self.input(k)
        if v is None:
            raise self.error(f"input {k} ({what}) is required")
        self.const(k)
        if v.const is None:
            raise self.value_needed(k, what)
        return v.const

    def value_needed(self, k: int, what: str) -> OnnxcError:
        """For input k computed at run time: a small one makes the session compute it first
        and specialize the rest of the model on its value (runtime/staged.py); a large one is
        unsupported."""
        v = self.input(k)
        if isinstance(v, Value) and v.type.is_static and \
                v.type.numel() <= MAX_SPECIALIZED_ELEMENTS:
            return DataDependentShape(node_label(self.node), self.node.op_type, [],
                                      value=self.node.input[k])
        return self.unsupported(f"input {k} ({what}) must be a constant for now (it is "
                                f"computed at run time from {v.name!r})")

    # -- attributes -----------------------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        for a in self.node.attribute:
            if a.name == name:
                value = onnx.helper.get_attribute_value(a)
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                if isinstance(value, onnx.TensorProto):
                    value = tensor_to_array(value)
                return value
        return default

    # -- building -------------------------------------------------------------------------
    def add(self, op: str, inputs: Sequence[Value | None], attrs: dict | None = None,
            ) -> list[Value]:
        """Add a core op for the current node, folding it when every input is constant."""
        origin = [(node_label(self.node), self.node.op_type)]
        from onnxc.ir.ops.registry import get_op

        present = [v for v in inputs if v is not None]
        if present and all(v.const is not None for v in present):
            folded = self._fold(op, list(inputs), attrs or {})
            if folded is not None:
                return folded
        elif get_op(op).compute is None:
            raise self.unsupported(f"needs constant inputs for now ({op} is only evaluated at "
                                   f"compile time)")
        return self.graph.add(op, inputs, attrs or {}, name=node_label(self.node),
                              origin=origin)

    def add1(self, op: str, inputs: Sequence[Value | None], attrs: dict | None = None) -> Value:
        return self.add(op, inputs, attrs)[0]

    def constant(self, array: np.ndarray, hint: str = "const") -> Value:
        return self.graph.add_constant(np.asarray(array), name=hint)

    def _fold(self, op: str, inputs: list[Value | None], attrs: dict) -> list[Value] | None:
        from onnxc.ir.evaluate import evaluate_node
        from onnxc.ir.ops.registry import get_op

        types = [v.type if v is not None else None for v in inputs]
        out_types = get_op(op).infer(types, attrs, [v.const if v is not None else None
                                                    for v in inputs])
        for t in out_types:
            self.check_alloc(t.shape, t.dtype.itemsize, f"folding {op} into a constant")
        results = evaluate_node(op, inputs, out_types, attrs, MAX_FOLD_ELEMENTS)
        if results is None:
            return None
        first = next((v for v in inputs if v is not None), None)
        hint = f"{first.name}_{op.lower()}" if first is not None else op.lower()
        return [self.constant(r, hint) for r in results]

    def check_alloc(self, shape: Sequence[int], itemsize: int, what: str) -> None:
        """ModelError naming the node before a compile-time tensor of ``shape`` is allocated
        when it overflows int64 or exceeds the memory limit."""
        label = node_label(self.node) if self.node is not None else None
        op = self.node.op_type if self.node is not None else None
        limits.check_shape(shape, itemsize, what, label, op)
        limits.check_budget(math.prod(shape) * itemsize, self.memory_limit, what, label, op)

    # -- errors ---------------------------------------------------------------------------
    def error(self, message: str) -> ModelError:
        return ModelError(message, node=self.node.name or "<unnamed>", op=self.node.op_type)

    def unsupported(self, reason: str) -> UnsupportedOpError:
        return UnsupportedOpError([(self.node.name or "<unnamed>", self.node.op_type, reason)])


def node_label(node: onnx.NodeProto) -> str:
    """The node's name, or its first output's name for the many unnamed nodes."""
    return node.name or (node.output[0] if node.output else node.op_type)


def model_opsets(model: onnx.ModelProto) -> dict[str, int]:
    """The opset version the model imports per domain ("" for the default domain)."""
    opsets = {("" if imp.domain == "ai.onnx" else imp.domain): int(imp.version)
              for imp in model.opset_import}
    opsets[""] = default_opset(model)
    return opsets


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1 if not model.opset_import else SUPPORTED_OPSET


def import_graph(model: onnx.ModelProto, input_shapes: dict[str, Sequence] | None = None,
                 input_values: dict[str, np.ndarray] | None = None,
                 memory_limit: int | None = None) -> Graph:
    """The IR graph of ``model``; ``input_shapes`` fixes (symbolic) input dims and
    ``input_values`` makes the named inputs compile-time constants. ``memory_limit`` bounds
    each tensor folded at compile time (see ``onnxc.ir.limits``)."""
    _register_importers()

    opset = default_opset(model)
    if opset > SUPPORTED_OPSET:
        raise ModelError(f"the model uses opset {opset}; onnxc supports opsets up to "
                         f"{SUPPORTED_OPSET}")
    g = model.graph
    ordered = check_and_sort(g)
    from .onnx_functions import local_functions

    opsets, functions = model_opsets(model), local_functions(model)
    _check_supported(g, opsets, functions)
    graph = Graph(g.name or "main")
    ctx = ImportContext(graph, opset, memory_limit, opsets)
    ctx.functions = functions
    # ONNX producers of the main graph's values, for Gradient (frontend/onnx_gradient.py)
    ctx.producers = {o: n for n in ordered for o in n.output if o}
    ctx.producer_order = ordered
    input_shapes = dict(input_shapes or {})

    initializers = {t.name: t for t in g.initializer}
    for t in g.initializer:
        ctx.values[t.name] = graph.add_constant(tensor_to_array(t), name=t.name)
    for vi in g.input:
        if vi.name in initializers:
            continue  # an initializer listed as input (IR < 4): a constant, not a feed
        if vi.name in ctx.values:
            raise ModelError(f"graph input {vi.name!r} is declared twice")
        if vi.type.WhichOneof("value") != "tensor_type":
            ctx.values[vi.name] = _container_input(ctx, vi, input_shapes, input_values)
            continue
        t = value_info_type(vi)
        if vi.name in input_shapes:
            shape = tuple(int(d) for d in input_shapes.pop(vi.name))
            if len(shape) != t.rank or any(isinstance(a, int) and a != b
                                           for a, b in zip(t.shape, shape)):
                raise ModelError(f"input_shapes gives {vi.name!r} shape {list(shape)}, but the "
                                 f"model declares {list(t.shape)}")
            t = TensorType(t.dtype, shape)
        if input_values and vi.name in input_values:
            ctx.values[vi.name] = graph.add_constant(
                np.asarray(input_values[vi.name], dtype=t.dtype.np), name=vi.name)
            continue
        value = graph.add_input(vi.name, t)
        ctx.values[vi.name] = value
    bound = {id(v) for v in ctx.values.values()}  # values already bound to an ONNX name
    if input_shapes:
        raise ModelError(f"input_shapes names unknown inputs: {sorted(input_shapes)}; the model's "
                         f"inputs are {[v.name for v in graph.inputs]}")

    ctx.bound = bound
    import_nodes(ctx, ordered)

    outputs, names = [], []
    for vi in g.output:
        if vi.name not in ctx.values:
            raise ModelError(f"graph output {vi.name!r} is not produced by any node")
        for name, v in _flat_outputs(vi.name, ctx.values[vi.name]):
            outputs.append(v)
            names.append(name)
    graph.set_outputs(outputs, names)
    graph.prune()
    return graph


def import_nodes(ctx: ImportContext, nodes: Sequence[onnx.NodeProto]) -> None:
    """Import ``nodes`` in order, binding their outputs in ``ctx.values`` (also used for the
    bodies of If, Loop and Scan, which are imported inline)."""
    for node in nodes:
        ctx.node = node
        check_input_types(node, ctx.values, ctx.opset, node_label(node))
        try:
            outs = importer_for(node)(ctx, node)
        except ModelError as exc:
            if exc.node is None and exc.op is None:  # a shape rule's error: say which node
                raise ModelError(str(exc), node=node_label(node), op=node.op_type) from exc
            raise
        except OnnxcError:
            raise
        except (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError,
                OverflowError, MemoryError, AttributeError, RecursionError) as exc:
            raise ctx.error(f"cannot import: {type(exc).__name__}: {exc}") from exc
        outs = list(outs)
        for k, name in enumerate(node.output):
            if not name:
                continue
            if k >= len(outs) or outs[k] is None:
                raise ctx.unsupported(f"output {k} ({name!r}) is not supported yet")
            if name in ctx.values:
                raise ModelError(f"value {name!r} is produced twice", node=node.name,
                                 op=node.op_type)
            ctx.values[name] = outs[k]
            if not isinstance(outs[k], Value):
                continue  # a sequence or an optional
            if outs[k].producer is not None and id(outs[k]) not in ctx.bound:
                ctx.graph.rename(outs[k], name)
            ctx.bound.add(id(outs[k]))


def _container_input(ctx: ImportContext, vi: onnx.ValueInfoProto, input_shapes: dict,
                     input_values: dict | None) -> Seq | Opt:
    """A sequence or optional graph input, as graph inputs for its tensors: the session gives
    its structure (element shapes; None for an absent optional) in ``input_shapes``."""
    kind, elem = kind_of(vi.type)
    if vi.name not in input_shapes:
        raise ModelError(f"input {vi.name!r} is a {kind.replace('_', ' ')}: give its element "
                         f"shapes (None for an absent optional) in input_shapes; a Session "
                         f"does so from each run's feeds")
    structure = input_shapes.pop(vi.name)
    dtype = value_info_type(onnx.helper.make_value_info(vi.name, elem)).dtype \
        if elem.tensor_type.HasField("shape") else \
        dtype_from_onnx(elem.tensor_type.elem_type, f"input {vi.name!r}: ")
    if kind.startswith("optional") and structure is None:
        return Opt(None)

    def tensor(name: str, shape) -> Value:
        if input_values and name in input_values:
            return ctx.graph.add_constant(np.asarray(input_values[name], dtype=dtype.np),
                                          name=name)
        return ctx.graph.add_input(name, TensorType(dtype, tuple(int(d) for d in shape)))

    if kind in ("sequence", "optional_sequence"):
        shapes = list(structure)[1:]
        value = Seq([tensor(element_name(vi.name, k), s) for k, s in enumerate(shapes)], dtype)
    else:
        value = tensor(vi.name, structure)
    return Opt(value) if kind.startswith("optional") else value


def _flat_outputs(name: str, value) -> list[tuple[str, Value]]:
    """(flat name, tensor) pairs of a graph output: a sequence's elements, an optional's
    value when present."""
    if isinstance(value, Opt):
        value = value.value
        if value is None:
            return []
    if isinstance(value, Seq):
        return [(element_name(name, k), v) for k, v in enumerate(value)]
    return [(name, value)]


def importer_for(node: onnx.NodeProto) -> Importer:
    """The node's importer; an op without one is expanded into its function body (the
    model's own function of that name, else ONNX's)."""
    if node.domain in ("", "ai.onnx"):
        found = IMPORTERS.get(node.op_type)
    else:
        found = DOMAIN_IMPORTERS.get((node.domain, node.op_type))
    return found or _import_function


def _import_function(ctx: ImportContext, node: onnx.NodeProto) -> list[Value]:
    """Import the node as its function body, under the function's opsets."""
    from . import onnx_functions as fx

    local = ctx.functions.get(fx.local_key(node))
    schema = None if local is not None else fx.schema_for(node, ctx.opsets)
    try:
        body = local if local is not None else fx.function_body(node, ctx.opsets,
                                                                ctx.inputs())
    except ValueError as exc:
        raise ctx.unsupported(str(exc)) from exc
    if body is None:
        raise ctx.unsupported("no importer for this op, and ONNX defines no function body "
                              "for it with these attributes and input types")
    ctx.expansions += 1
    nodes, outputs = fx.expand(node, body, schema, ctx.expansions)
    saved = (ctx.node, ctx.opset, ctx.opsets)
    ctx.opsets = fx.body_opsets(body, ctx.opsets)
    ctx.opset = ctx.opsets[""]
    try:
        import_nodes(ctx, nodes)
    finally:
        ctx.node, ctx.opset, ctx.opsets = saved
    return [ctx.values.get(name) for name in outputs]


def _register_importers() -> None:
    """The importer modules register their ONNX ops on import."""
    from . import (onnx_attention, onnx_control, onnx_deform,  # noqa: F401
                   onnx_einsum, onnx_gradient, onnx_index, onnx_math, onnx_misc, onnx_ml,
                   onnx_nn, onnx_ops, onnx_quant, onnx_random, onnx_resize, onnx_rnn,
                   onnx_sequence, onnx_shape_ops, onnx_signal, onnx_training)


def check_ops(model: onnx.ModelProto) -> None:
    """Raise UnsupportedOpError listing every node whose op onnxc cannot import, without
    importing anything (for models whose import waits for their input shapes)."""
    _register_importers()

    from .onnx_functions import local_functions

    _check_supported(model.graph, model_opsets(model), local_functions(model))


def _check_supported(g: onnx.GraphProto | onnx.FunctionProto, opsets: dict[str, int],
                     functions: dict, calling: frozenset = frozenset()) -> None:
    """Every unsupported op of the graph, reported at once. An op without an importer passes
    when the model or ONNX defines it as a function; a fixed body's ops are checked in turn."""
    from . import onnx_functions as fx

    problems = []
    for node in g.node:
        default = node.domain in ("", "ai.onnx")
        key = fx.local_key(node)
        if (node.op_type in IMPORTERS) if default else \
                ((node.domain, node.op_type) in DOMAIN_IMPORTERS):
            pass
        elif key in functions:
            if key in calling:
                problems.append((node.name or "<unnamed>", f"{node.domain}::{node.op_type}",
                                 "the model's function calls itself (recursion)"))
            else:
                body = functions[key]
                try:
                    _check_supported(body, fx.body_opsets(body, opsets), functions,
                                     calling | {key})
                except UnsupportedOpError as exc:
                    problems.extend(exc.problems)
        elif fx.has_body(node, opsets):
            body = fx.fixed_body(node, opsets)
            if body is not None:
                try:
                    _check_supported(body, fx.body_opsets(body, opsets), functions, calling)
                except UnsupportedOpError as exc:
                    problems.extend(exc.problems)
        elif not default and node.domain not in opsets:
            problems.append((node.name or "<unnamed>", f"{node.domain}::{node.op_type}",
                             f"domain {node.domain!r} is not imported by the model"))
        elif not default:
            problems.append((node.name or "<unnamed>", f"{node.domain}::{node.op_type}",
                             _no_importer(node, f"no importer for this op of domain "
                                                f"{node.domain!r}")))
        else:
            problems.append((node.name or "<unnamed>", node.op_type,
                             _no_importer(node, "no importer for this op")))
        for a in node.attribute:  # the bodies of If, Loop and Scan
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                try:
                    _check_supported(sub, opsets, functions, calling)
                except UnsupportedOpError as exc:
                    problems.extend(exc.problems)
    if problems:
        raise UnsupportedOpError(problems)


def _no_importer(node: onnx.NodeProto, otherwise: str) -> str:
    """Why the op cannot be imported here: a host function (compiled around, not in, a whole
    graph), else ``otherwise``."""
    from .host_ops import HOST_OPS, _register

    _register()
    if (node.domain if node.domain != "ai.onnx" else "", node.op_type) in HOST_OPS:
        return ("runs as a host function (README: host functions): onnxc.compile runs it "
                "between compiled parts, but this path compiles a whole graph only")
    return otherwise


def prod(values) -> int:
    return int(math.prod(values))
