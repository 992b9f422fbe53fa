"""Tree ensembles (ai.onnx.ml TreeEnsemble, TreeEnsembleRegressor, TreeEnsembleClassifier)
compiled as gathers over node tables.

Every tree's nodes go into one flat table (feature, threshold, mode, true and false child;
a leaf points at itself). Each sample walks all trees at once: ``depth`` unrolled steps of
"gather the node's feature and threshold, compare, gather the next node", an [N, trees]
index tensor. The leaves' weights are a dense [nodes, targets] table, gathered and reduced
over the trees.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from onnxc.ir import Value
from onnxc.ir.dtypes import DType

from .importer import ImportContext, onnx_op
from .onnx_ml import ML, as_float, class_labels, label_of, post_transform, rows

LEQ, LT, GTE, GT, EQ, NEQ, MEMBER, LEAF = range(8)
_MODE_NAMES = {"BRANCH_LEQ": LEQ, "BRANCH_LT": LT, "BRANCH_GTE": GTE, "BRANCH_GT": GT,
               "BRANCH_EQ": EQ, "BRANCH_NEQ": NEQ, "LEAF": LEAF}
_AGGREGATES = {"AVERAGE": 0, "SUM": 1, "MIN": 2, "MAX": 3}


@dataclass
class Forest:
    feature: np.ndarray  # int64 [nodes]
    threshold: np.ndarray  # float64 [nodes]
    mode: np.ndarray  # int [nodes], codes above
    true: np.ndarray  # int64 [nodes]: next node (a leaf: itself)
    false: np.ndarray
    missing_true: np.ndarray  # bool [nodes]
    roots: np.ndarray  # int64 [trees]
    weights: np.ndarray  # float64 [nodes, targets]
    aggregate: int = 1  # AVERAGE, SUM, MIN, MAX
    sets: list = field(default_factory=list)  # per node: membership values (MEMBER nodes)

    def depth(self) -> int:
        """The longest root-to-leaf path, in branch steps."""
        best = 0
        for root in self.roots:
            stack = [(int(root), 0)]
            while stack:
                n, d = stack.pop()
                if self.mode[n] == LEAF:
                    best = max(best, d)
                    continue
                if d > len(self.mode):
                    raise ValueError("the trees have a cycle")
                stack += [(int(self.true[n]), d + 1), (int(self.false[n]), d + 1)]
        return best


def _v3_forest(ctx: ImportContext, targets: int, prefix: str) -> Forest:
    """TreeEnsembleRegressor/Classifier (ai.onnx.ml 1-3): node ids per tree -> flat rows."""
    a = ctx.attr
    tree_ids = np.asarray(a("nodes_treeids"), dtype=np.int64)
    node_ids = np.asarray(a("nodes_nodeids"), dtype=np.int64)
    values = a("nodes_values_as_tensor", None)
    values = np.asarray(a("nodes_values", []) if values is None else values, dtype=np.float64)
    modes = np.array([_MODE_NAMES[m.decode() if isinstance(m, bytes) else m]
                      for m in a("nodes_modes")], dtype=np.int64)
    row = {(int(t), int(n)): k for k, (t, n) in enumerate(zip(tree_ids, node_ids))}
    true_ids = np.asarray(a("nodes_truenodeids"), dtype=np.int64)
    false_ids = np.asarray(a("nodes_falsenodeids"), dtype=np.int64)
    count = len(tree_ids)
    true = np.arange(count, dtype=np.int64)
    false = np.arange(count, dtype=np.int64)
    for k in range(count):
        if modes[k] != LEAF:
            true[k] = row[(int(tree_ids[k]), int(true_ids[k]))]
            false[k] = row[(int(tree_ids[k]), int(false_ids[k]))]
    missing = np.zeros(count, dtype=bool)
    mvt = a("nodes_missing_value_tracks_true", None)
    if mvt:
        missing[:] = np.asarray(mvt, dtype=bool)
    trees = sorted(set(tree_ids.tolist()))
    roots = np.array([min((k for k in range(count) if tree_ids[k] == t),
                          key=lambda k: node_ids[k]) for t in trees], dtype=np.int64)
    weights = np.zeros((count, targets))
    w_trees = a(f"{prefix}_treeids")
    w_nodes = a(f"{prefix}_nodeids")
    w_ids = a(f"{prefix}_ids")
    w_values = a(f"{prefix}_weights_as_tensor", None)
    w_values = a(f"{prefix}_weights") if w_values is None else w_values
    for t, n, i, w in zip(w_trees, w_nodes, w_ids, w_values):
        weights[row[(int(t), int(n))], int(i)] += float(w)
    aggregate = _AGGREGATES[a("aggregate_function", "SUM")]
    return Forest(np.asarray(a("nodes_featureids"), dtype=np.int64), values, modes, true,
                  false, missing, roots, weights, aggregate)


def _v5_forest(ctx: ImportContext) -> Forest:
    """TreeEnsemble (ai.onnx.ml 5): branch nodes then leaves, in one table."""
    a = ctx.attr
    feature = np.asarray(a("nodes_featureids"), dtype=np.int64)
    branches = len(feature)
    leaf_targets = np.asarray(a("leaf_targetids"), dtype=np.int64)
    leaf_weights = np.asarray(a("leaf_weights"), dtype=np.float64).reshape(-1)
    count = branches + len(leaf_targets)

    def child(ids, leafs):
        ids = np.asarray(ids, dtype=np.int64)
        return np.where(np.asarray(leafs, dtype=bool), ids + branches, ids)

    true = np.concatenate([child(a("nodes_truenodeids"), a("nodes_trueleafs")),
                           np.arange(branches, count)])
    false = np.concatenate([child(a("nodes_falsenodeids"), a("nodes_falseleafs")),
                            np.arange(branches, count)])
    modes = np.asarray(a("nodes_modes"), dtype=np.int64).reshape(-1)
    mode = np.concatenate([modes, np.full(count - branches, LEAF)])
    threshold = np.concatenate([np.asarray(a("nodes_splits"), dtype=np.float64).reshape(-1),
                                np.zeros(count - branches)])
    missing = np.zeros(count, dtype=bool)
    mvt = a("nodes_missing_value_tracks_true", None)
    if mvt is not None and len(mvt):
        missing[:branches] = np.asarray(mvt, dtype=bool).reshape(-1)
    targets = int(a("n_targets"))
    weights = np.zeros((count, targets))
    for k, (t, w) in enumerate(zip(leaf_targets, leaf_weights)):
        weights[branches + k, int(t)] += w
    sets: list = [[] for _ in range(count)]
    members = a("membership_values", None)
    if (modes == MEMBER).any():
        values = np.asarray(members, dtype=np.float64).reshape(-1)
        groups = np.split(values, np.flatnonzero(np.isnan(values)))
        groups = [g[~np.isnan(g)] for g in groups]
        for k, g in zip(np.flatnonzero(modes == MEMBER), groups):
            sets[k] = g.tolist()
    return Forest(np.concatenate([feature, np.zeros(count - branches, dtype=np.int64)]),
                  threshold, mode, true, false, missing,
                  np.asarray(a("tree_roots"), dtype=np.int64), weights,
                  int(a("aggregate_function", 1)), sets)


def _branch(ctx: ImportContext, f: Forest, x: Value, node: Value | np.ndarray) -> Value:
    """Whether each sample takes the true branch at ``node`` (an [N, T] index or a constant
    [T] row of roots); ``x`` is the gathered feature value."""
    def table(array, dtype=None):
        array = np.asarray(array if dtype is None else array.astype(dtype))
        if isinstance(node, np.ndarray):
            return ctx.constant(array[node])
        return ctx.add1("Gather", [ctx.constant(array), node], {"axis": 0})

    thr = table(f.threshold, x.dtype.np)
    present = sorted(set(f.mode[f.mode != LEAF].tolist()))
    compare = {LEQ: ("LessOrEqual", False), LT: ("Less", False), GTE: ("Less", True),
               GT: ("LessOrEqual", True), EQ: ("Equal", False), NEQ: ("Equal", True)}
    cond = None
    mode = table(f.mode) if len(present) > 1 else None
    for m in present:
        if m == MEMBER:
            width = max(len(s) for s in f.sets)
            hit = None
            for j in range(width):
                col = np.array([s[j] if j < len(s) else np.nan for s in f.sets])
                eq = ctx.add1("Equal", [x, table(col, x.dtype.np)])
                hit = eq if hit is None else ctx.add1("Or", [hit, eq])
            c = hit
        else:
            op, negate = compare[m]
            c = ctx.add1(op, [x, thr])
            if negate:
                c = ctx.add1("Not", [c])
        if mode is not None:
            c = ctx.add1("And", [c, ctx.add1("Equal", [mode, ctx.constant(np.int64(m))])])
        cond = c if cond is None else ctx.add1("Or", [cond, c])
    if f.missing_true.any():
        cond = ctx.add1("Where", [ctx.add1("IsNaN", [x]), table(f.missing_true), cond])
    return cond


def compile_forest(ctx: ImportContext, f: Forest, x: Value, base: np.ndarray | None
                   ) -> Value:
    """[N, targets] aggregated scores of ``x`` [N, F] through the forest."""
    if (f.feature[f.mode != LEAF] >= x.shape[1]).any():
        raise ctx.error(f"a tree reads feature {int(f.feature.max())}, but the input has "
                        f"{x.shape[1]}")
    node: Value | np.ndarray = f.roots
    for _ in range(f.depth()):
        if isinstance(node, np.ndarray):
            xv = ctx.add1("Gather", [x, ctx.constant(f.feature[node])], {"axis": 1})
        else:
            feat = ctx.add1("Gather", [ctx.constant(f.feature), node], {"axis": 0})
            xv = ctx.add1("GatherElements", [x, feat], {"axis": 1})
        cond = _branch(ctx, f, xv, node)
        if isinstance(node, np.ndarray):
            t, e = ctx.constant(f.true[node]), ctx.constant(f.false[node])
        else:
            t = ctx.add1("Gather", [ctx.constant(f.true), node], {"axis": 0})
            e = ctx.add1("Gather", [ctx.constant(f.false), node], {"axis": 0})
        node = ctx.add1("Where", [cond, t, e])
    if isinstance(node, np.ndarray):  # every tree is a single leaf
        node = ctx.add1("Expand", [ctx.constant(node),
                                   ctx.constant(np.array([x.shape[0], len(node)]))])
    dtype = x.dtype.np
    weights = f.weights.astype(dtype)
    if f.aggregate in (2, 3):  # a tree without a weight for a target does not take part
        fill = np.inf if f.aggregate == 2 else -np.inf
        has = np.zeros_like(weights, dtype=bool)
        has[f.mode == LEAF] = f.weights[f.mode == LEAF] != 0
        weights = np.where(has, weights, fill).astype(dtype)
    leaf = ctx.add1("Gather", [ctx.constant(weights), node], {"axis": 0})  # [N, T, targets]
    reduce = {0: "ReduceMean", 1: "ReduceSum", 2: "ReduceMin", 3: "ReduceMax"}[f.aggregate]
    scores = ctx.add1(reduce, [leaf], {"axes": (1,), "keepdims": 0})
    if f.aggregate in (2, 3):
        scores = ctx.add1("Where", [ctx.add1("IsInf", [scores]),
                                    ctx.constant(np.zeros((), dtype)), scores])
    if base is not None and len(base):
        scores = ctx.add1("Add", [scores, ctx.constant(np.asarray(base, dtype=dtype))])
    return scores


def _features(ctx: ImportContext) -> Value:
    x = ctx.input(0)
    if not x.dtype.is_float or x.dtype == DType.float16:
        x = as_float(ctx, x)
    return rows(ctx, x)


@onnx_op("TreeEnsemble", domain=ML)
def _tree_ensemble(ctx: ImportContext, node):
    x = _features(ctx)
    scores = compile_forest(ctx, _v5_forest(ctx), x, None)
    scores = post_transform(ctx, scores, int(ctx.attr("post_transform", 0)))
    dtype = ctx.input(0).dtype
    return [scores if scores.dtype == dtype else
            ctx.add1("Cast", [scores], {"to": dtype.value})]


@onnx_op("TreeEnsembleRegressor", domain=ML)
def _tree_regressor(ctx: ImportContext, node):
    x = as_float(ctx, _features(ctx))
    forest = _v3_forest(ctx, int(ctx.attr("n_targets", 1)), "target")
    base = ctx.attr("base_values_as_tensor", None)
    base = ctx.attr("base_values", None) if base is None else base
    scores = compile_forest(ctx, forest, x, None if base is None else np.asarray(base))
    return [post_transform(ctx, scores, ctx.attr("post_transform", "NONE"))]


@onnx_op("TreeEnsembleClassifier", domain=ML)
def _tree_classifier(ctx: ImportContext, node):
    x = as_float(ctx, _features(ctx))
    labels = class_labels(ctx)
    forest = _v3_forest(ctx, len(labels), "class")
    base = ctx.attr("base_values_as_tensor", None)
    base = ctx.attr("base_values", None) if base is None else base
    ids = set(np.asarray(ctx.attr("class_ids"), dtype=np.int64).tolist())
    kind = ctx.attr("post_transform", "NONE")
    one_score = len(labels) == 2 and len(ids) == 1
    scores = compile_forest(ctx, forest, x, None if base is None or one_score
                            else np.asarray(base))
    if one_score:
        return _binary_one_score(ctx, scores, ids.pop(), base, kind, labels, x.shape[0])
    return [label_of(ctx, scores, labels), post_transform(ctx, scores, kind)]


def _binary_one_score(ctx: ImportContext, scores: Value, column: int, base, kind: str,
                      labels: np.ndarray, n: int) -> list[Value]:
    """Two classes, weights for one: a single score s, read as onnxruntime reads it. With
    non-negative weights s is a probability: Z = [1 - s, s], label 1 when s > 0.5; otherwise
    a margin: Z = [-s, s] (LOGISTIC: [sigmoid(-s), sigmoid(s)]), label 1 when s > 0."""
    base = [] if base is None else [float(b) for b in np.asarray(base).reshape(-1)]
    if len(base) > 1 and any(base):
        raise ctx.unsupported("two base_values with weights for one class only")
    s = ctx.add1("Gather", [scores, ctx.constant(np.array([column]))], {"axis": 1})
    if len(base) == 1 and base[0]:
        s = ctx.add1("Add", [s, ctx.constant(np.float32(base[0]))])
    positive = bool(np.all(np.asarray(ctx.attr("class_weights"), dtype=np.float64) >= 0))
    if positive and kind == "NONE":
        z = [ctx.add1("Sub", [ctx.constant(np.float32(1)), s]), s]
    elif not positive and kind == "NONE":
        z = [ctx.add1("Neg", [s]), s]
    elif not positive and kind == "LOGISTIC":
        z = [ctx.add1("Sigmoid", [ctx.add1("Neg", [s])]), ctx.add1("Sigmoid", [s])]
    else:
        raise ctx.unsupported(f"post_transform {kind!r} with weights for one class only")
    flat = ctx.add1("Reshape", [s], {"shape": (n,)})
    cut = ctx.constant(np.float32(0.5 if positive else 0.0))
    label = ctx.add1("Where", [ctx.add1("Greater", [flat, cut]), ctx.constant(labels[1]),
                               ctx.constant(labels[0])])
    return [label, ctx.add1("Concat", z, {"axis": 1})]
