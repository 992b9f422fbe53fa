"""Models with host functions: compiled partitions with host ops run between them.

``split`` cuts the ONNX graph at its host nodes (frontend/host_ops.py decides which): every
other node gets a level, the number of host nodes on its longest path from the inputs, and
each level's nodes become one compiled partition, a sub-model compiled by the ordinary path
(per input-shape set, on first use, since host outputs such as StringSplit's have
data-dependent shapes). Host nodes run between the levels. Partitions and host nodes are
``Stage``s of runtime/partitioned.py and run on its ``LocalExecutor``: a host stage's
"executable" is the node's numpy function.

String tensors exist only here: numpy object arrays of ``str``, fed and returned as
onnxruntime does.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from onnxc.frontend.host_ops import HostOp, as_strings, find, node_attrs
from onnxc.frontend.host_ops import _register as _register_host_ops
from onnxc.ir.devices import Device
from onnxc.ir.errors import InputError, ModelError, OnnxcError, UnsupportedOpError
from onnxc.runtime.build import CompileOptions
from onnxc.runtime.executable import check_feed
from onnxc.runtime.partitioned import LocalExecutor, Stage
from onnxc.runtime.plan import TensorSpec
from onnxc.runtime.session import Session

STRING = onnx.TensorProto.STRING
_HOST_DEVICE = Device("cpu:0")


def elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Tensor name -> ONNX element type, from declarations and shape inference (0: unknown)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # inference is a help here, not a requirement
        inferred = model.graph
    types = {t.name: t.data_type for t in model.graph.initializer}
    for vi in list(inferred.value_info) + list(model.graph.input) + list(model.graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for node in model.graph.node:  # Constant nodes of strings, whatever inference said
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name in ("value_string", "value_strings"):
                    types[node.output[0]] = STRING
    return types


_CLASSIFIERS = ("LinearClassifier", "TreeEnsembleClassifier", "SVMClassifier")


def with_label_lookups(model: onnx.ModelProto) -> onnx.ModelProto:
    """Classifiers with string labels become the same classifier with labels 0..k-1 (compiled)
    followed by a LabelEncoder from index to string (a host function)."""
    if not any(n.domain == "ai.onnx.ml" and n.op_type in _CLASSIFIERS and
               any(a.name == "classlabels_strings" for a in n.attribute)
               for n in model.graph.node):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = []
    for node in model.graph.node:
        labels = next((list(a.strings) for a in node.attribute
                       if a.name == "classlabels_strings"), None)
        if node.domain != "ai.onnx.ml" or node.op_type not in _CLASSIFIERS or labels is None:
            nodes.append(node)
            continue
        new = onnx.NodeProto()
        new.CopyFrom(node)
        del new.attribute[:]
        new.attribute.extend(a for a in node.attribute if a.name != "classlabels_strings")
        new.attribute.append(onnx.helper.make_attribute("classlabels_ints",
                                                        list(range(len(labels)))))
        index = f"{node.output[0]}__label_index"
        new.output[0] = index
        lookup = onnx.helper.make_node(
            "LabelEncoder", [index], [node.output[0]], domain="ai.onnx.ml",
            name=f"{node.name or node.output[0]}__labels", keys_int64s=list(range(len(labels))),
            values_strings=[s.decode("utf-8") for s in labels])
        nodes += [new, lookup]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def host_nodes(model: onnx.ModelProto) -> dict[int, HostOp]:
    """Index of each node of the main graph that runs on the host -> its host op; an
    UnsupportedOpError names the nodes that touch strings but have no host function."""
    _register_host_ops()
    graph = model.graph
    if not any(True for _ in _candidates(graph)):
        return {}
    types = elem_types(model)
    found, bad = {}, []
    for k, node in enumerate(graph.node):
        ins = [types.get(n, 0) for n in node.input if n]
        outs = [types.get(n, 0) for n in node.output if n]
        op = find(node, ins, outs)
        if op is not None:
            found[k] = op
        elif STRING in ins or STRING in outs:
            bad.append((node.name or "<unnamed>", node.op_type,
                        "string tensors exist only in host functions (README: host "
                        "functions), and this op has none"))
    if bad:
        raise UnsupportedOpError(bad)
    return found


def _candidates(graph: onnx.GraphProto):
    """Cheap pre-check, before any shape inference: a string input, initializer or Constant,
    or a node that runs on the host whatever its types (StringConcat, ImageDecoder, a
    LabelEncoder with string values...). Without one, no tensor can hold strings and the
    model compiles as a whole (Equal and Identity alone do not make a model hosted)."""
    for vi in graph.input:
        if vi.type.tensor_type.elem_type == STRING:
            yield vi
    for t in graph.initializer:
        if t.data_type == STRING:
            yield t
    for node in graph.node:
        if find(node, [], []) is not None:
            yield node
        elif node.op_type == "Constant" and any(
                a.name in ("value_string", "value_strings") or
                (a.name == "value" and a.t.data_type == STRING) for a in node.attribute):
            yield node


@dataclass
class HostFunction:
    """A host node as a stage's executable: ``run(inputs, num_threads) -> outputs``."""

    node: onnx.NodeProto
    op: HostOp

    def __post_init__(self):
        self.attrs = node_attrs(self.node)
        self.kernels: list = []

    def run(self, feeds: list[np.ndarray | None], num_threads: int) -> list[np.ndarray]:
        try:
            outs = list(self.op.fn(self.attrs, feeds))
        except ModelError as exc:
            if exc.node is None:
                raise ModelError(str(exc.args[0]), node=self.node.name or "<unnamed>",
                                 op=self.node.op_type) from exc
            raise
        except (ValueError, TypeError, IndexError, KeyError, UnicodeError) as exc:
            raise InputError(f"host function {self.node.op_type} (node "
                             f"{self.node.name or '<unnamed>'!r}) failed on its inputs: "
                             f"{type(exc).__name__}: {exc}") from exc
        return outs[:len(self.node.output)]


class CompiledPart:
    """One level's compiled nodes as a sub-model, built on the first run (its input ranks and
    element types are those of the first feeds) and then specialized per input shapes by an
    ordinary Session."""

    def __init__(self, model: onnx.ModelProto, nodes: list[onnx.NodeProto], inputs: list[str],
                 outputs: list[str], options: CompileOptions):
        self.model, self.nodes, self.options = model, nodes, options
        self.input_names, self.output_names = inputs, outputs
        self.session: Session | None = None
        self.kernels: list = []
        self._lock = threading.Lock()

    def sub_model(self, feeds: Sequence[np.ndarray]) -> onnx.ModelProto:
        used = {n for node in self.nodes for n in _all_inputs(node)}
        inits = [t for t in self.model.graph.initializer if t.name in used]
        ins = [onnx.helper.make_tensor_value_info(
            name, onnx.helper.np_dtype_to_tensor_dtype(f.dtype),
            [f"{name}_d{k}" for k in range(f.ndim)]) for name, f in zip(self.input_names, feeds)]
        outs = [onnx.helper.make_empty_tensor_value_info(n) for n in self.output_names]
        graph = onnx.helper.make_graph(self.nodes, f"{self.model.graph.name}_part", ins, outs,
                                       initializer=inits)
        sub = onnx.helper.make_model(graph, opset_imports=list(self.model.opset_import),
                                     ir_version=self.model.ir_version)
        sub.functions.extend(self.model.functions)
        return sub

    def run(self, feeds: list[np.ndarray], num_threads: int) -> list[np.ndarray]:
        with self._lock:  # the first run builds the sub-model, once
            if self.session is None:
                from onnxc.runtime.build import declared_inputs

                sub = self.sub_model(feeds)
                outs = [TensorSpec(n, (), "float32") for n in self.output_names]
                self.session = Session(declared_inputs(sub, None), outs, self.options,
                                       model=sub, num_threads=num_threads)
        return self.session.run(None, dict(zip(self.input_names, feeds)))


def _all_inputs(node: onnx.NodeProto) -> list[str]:
    """The node's inputs and the outer names its subgraphs (If/Loop bodies) read."""
    names = [n for n in node.input if n]
    for a in node.attribute:
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            inner = {t.name for t in g.initializer} | {v.name for v in g.input}
            for sub in g.node:
                inner.update(sub.output)
            names += [n for sub in g.node for n in _all_inputs(sub) if n not in inner]
    return names


def split(model: onnx.ModelProto, hosts: dict[int, HostOp], options: CompileOptions
          ) -> list[Stage]:
    """The stages, in an order that respects every dependency."""
    from onnxc.frontend.graph_check import check_and_sort

    graph = model.graph
    order = check_and_sort(graph)
    index = {id(n): k for k, n in enumerate(graph.node)}
    level: dict[str, int] = {}  # tensor -> number of host nodes on its longest input path
    node_level: dict[int, int] = {}
    for node in order:
        k = index[id(node)]
        lv = max((level.get(n, 0) for n in _all_inputs(node)), default=0)
        node_level[k] = lv
        for n in node.output:
            level[n] = lv + (1 if k in hosts else 0)
    consumers: dict[str, set[int]] = {}
    graph_outputs = {o.name for o in graph.output}
    groups: list[tuple[str, list[int]]] = []
    top = max(node_level.values(), default=0)
    for lv in range(top + 1):
        compiled = [index[id(n)] for n in order
                    if index[id(n)] not in hosts and node_level[index[id(n)]] == lv]
        if compiled:
            groups.append(("compiled", compiled))
        groups += [("host", [index[id(n)]]) for n in order
                   if index[id(n)] in hosts and node_level[index[id(n)]] == lv]
    for g, (_, members) in enumerate(groups):
        for k in members:
            for n in _all_inputs(graph.node[k]):
                consumers.setdefault(n, set()).add(g)
    stages, producer = [], {}
    for g, (kind, members) in enumerate(groups):
        nodes = [graph.node[k] for k in members]
        made = [n for node in nodes for n in node.output if n]
        made_set = set(made)
        reads = list(dict.fromkeys(n for node in nodes for n in _all_inputs(node)
                                   if n not in made_set))
        outs = [n for n in made if n in graph_outputs or consumers.get(n, set()) - {g}]
        if kind == "host":
            node = nodes[0]
            exe = HostFunction(node, hosts[members[0]])
            ins = list(node.input)  # "" (an absent optional input) reads None
            outs = [n or f"\0unused:{g}:{k}" for k, n in enumerate(node.output)]
            name = f"host:{node.op_type}:{node.name or node.output[0]}"
        else:
            inits = {t.name for t in graph.initializer}
            ins = [n for n in reads if n not in inits]
            exe = CompiledPart(model, nodes, ins, outs, options)
            name = f"compiled:{len(stages)}"
        deps = sorted({producer[n] for n in reads if n in producer})
        stages.append(Stage(len(stages), name, _HOST_DEVICE, exe, ins, outs, [], deps,
                            info={"kind": kind, "nodes": [n.name or n.output[0]
                                                          for n in nodes]}))
        for n in outs:
            producer[n] = len(stages) - 1
    return stages


def _spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    """A graph input/output as a TensorSpec; strings are numpy "object" arrays."""
    from onnxc.frontend.onnx_types import dtype_from_onnx

    tt = vi.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or f"{vi.name}_d{k}")
                 for k, d in enumerate(tt.shape.dim))
    dtype = "object" if tt.elem_type == STRING else dtype_from_onnx(
        tt.elem_type, f"{vi.name!r}: ").value
    return TensorSpec(vi.name, dims, dtype)


class HostedSession(Session):
    """A Session over compiled partitions and host functions (see the module docstring)."""

    def __init__(self, model: onnx.ModelProto, stages: list[Stage], options: CompileOptions,
                 num_threads: int | None = None,
                 input_shapes: Mapping[str, Sequence[int]] | None = None):
        inits = {t.name for t in model.graph.initializer}
        inputs = [_spec(vi) for vi in model.graph.input if vi.name not in inits]
        shapes = dict(input_shapes or {})
        unknown = sorted(set(shapes) - {s.name for s in inputs})
        if unknown:
            raise ModelError(f"input_shapes names unknown inputs: {unknown}; the model's "
                             f"inputs are {[s.name for s in inputs]}")
        for k, s in enumerate(inputs):
            if s.name in shapes:
                fixed = tuple(int(d) for d in shapes[s.name])
                if len(fixed) != len(s.shape) or any(isinstance(a, int) and a != b
                                                     for a, b in zip(s.shape, fixed)):
                    raise ModelError(f"input_shapes gives {s.name!r} shape {list(fixed)}, but "
                                     f"the model declares {list(s.shape)}")
                inputs[k] = TensorSpec(s.name, fixed, s.dtype)
        outputs = []
        for vi in model.graph.output:
            try:
                outputs.append(_spec(vi))
            except OnnxcError:
                outputs.append(TensorSpec(vi.name, (), "float32"))
        super().__init__(inputs, outputs, options, model=model, num_threads=num_threads)
        self.stages = stages
        self._executor = LocalExecutor(stages, self.num_threads)
        host_reads = {n for s in stages if s.info["kind"] == "host" for n in s.inputs}
        host_reads |= {vi.name for vi in model.graph.output}  # an initializer as an output
        self._constants = {t.name: onnx.numpy_helper.to_array(t)
                           for t in model.graph.initializer if t.name in host_reads}
        self._output_names = [vi.name for vi in model.graph.output]

    @property
    def host_ops(self) -> list[str]:
        """The ops this model runs as host functions, one entry per host node."""
        return [s.executable.node.op_type for s in self.stages if s.info["kind"] == "host"]

    def _validate(self, input_feed: Mapping[str, Any]) -> list[np.ndarray]:
        if not isinstance(input_feed, Mapping):
            raise InputError("feeds must be a dict of input name -> numpy array")
        names = [s.name for s in self._inputs]
        unknown = [k for k in input_feed if k not in names]
        missing = [n for n in names if n not in input_feed]
        if unknown:
            raise InputError(f"unknown input name(s) {unknown}; the model's inputs are {names}",
                             input_name=unknown[0])
        if missing:
            raise InputError(f"missing input(s) {missing}; the model's inputs are {names}",
                             input_name=missing[0])
        feeds = []
        for s in self._inputs:
            value = input_feed[s.name]
            if s.dtype != "object":
                feeds.append(check_feed(s, value))
                continue
            value = np.asarray(value)
            if value.dtype.kind not in "OUS":
                raise InputError(f"input {s.name!r} is a string tensor; feed a numpy array of "
                                 f"str (dtype object or str), got {value.dtype.name}",
                                 input_name=s.name)
            if value.ndim != len(s.shape) or any(isinstance(w, int) and w != g
                                                 for w, g in zip(s.shape, value.shape)):
                raise InputError(f"input {s.name!r} expects shape {list(s.shape)}, got "
                                 f"{list(value.shape)}", input_name=s.name)
            feeds.append(as_strings(value))
        return feeds

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any],
            run_options: Any = None) -> list[np.ndarray]:
        """Like onnxruntime: string inputs and outputs are numpy object arrays of str."""
        env: dict[str, Any] = {"": None, **self._constants}
        env.update(zip((s.name for s in self._inputs), self._validate(input_feed)))
        env = self._executor.run(env)
        return self._select(output_names, [env[n] for n in self._output_names])

    def profile(self, input_feed):
        raise OnnxcError("profile() is not supported for a model with host functions yet; "
                         "profile its compiled parts: session.stages[k].executable.session")

    def profile_trace(self, input_feed, runs: int = 1):
        self.profile(input_feed)

    def describe(self) -> dict:
        info = super().describe()
        info["partitions"] = [{"name": s.name, **s.info} for s in self.stages]
        info["host_ops"] = self.host_ops
        info["kernels"] = [k for s in self.stages if s.info["kind"] == "compiled"
                           and s.executable.session is not None
                           for k in s.executable.session.describe()["kernels"]]
        return info

    def save(self, path) -> None:
        raise OnnxcError(f"saving a model with host functions ({', '.join(self.host_ops)}) as "
                         f"an artifact is not supported yet; keep the ONNX model and compile it")


def compile_hosted(proto: onnx.ModelProto, hosts: dict[int, HostOp], options: CompileOptions,
                   num_threads: int | None = None,
                   input_shapes: Mapping[str, Sequence[int]] | None = None) -> HostedSession:
    """``onnxc.compile`` for a model with host nodes: unsupported ops are reported now; the
    compiled parts are built on the first run."""
    from onnxc.frontend.importer import check_ops

    rest = onnx.helper.make_graph([n for k, n in enumerate(proto.graph.node) if k not in hosts],
                                  "rest", [], [])
    check = onnx.ModelProto()
    check.CopyFrom(proto)
    check.graph.CopyFrom(rest)
    check_ops(check)
    return HostedSession(proto, split(proto, hosts, options), options, num_threads,
                         input_shapes)
