"""SVMRegressor (ai.onnx.ml) compiled: a kernel between the samples and the support vectors,
then a MatMul with the dual coefficients."""
from __future__ import annotations

import numpy as np

from onnxc.ir import Value

from .importer import ImportContext, onnx_op
from .onnx_ml import ML, as_float, post_transform, rows


def svm_kernel(ctx: ImportContext, x: Value, vectors: np.ndarray, kind: str,
               params: list[float]) -> Value:
    """K(x, sv) for every sample and support vector: [N, V]."""
    gamma, coef0, degree = (list(params) + [0.0, 0.0, 0.0])[:3]
    dot = ctx.add1("MatMul", [x, ctx.constant(np.ascontiguousarray(vectors.T))])
    if kind == "LINEAR":
        return dot
    if kind == "RBF":  # |x - v|^2 = |x|^2 - 2 x.v + |v|^2
        xx = ctx.add1("ReduceSum", [ctx.add1("Mul", [x, x])], {"axes": (1,), "keepdims": 1})
        vv = ctx.constant((vectors.astype(np.float64) ** 2).sum(1).astype(np.float32))
        d2 = ctx.add1("Add", [ctx.add1("Sub", [xx, ctx.add1("Add", [dot, dot])]), vv])
        d2 = ctx.add1("Max", [d2, ctx.constant(np.float32(0))])  # rounding below 0
        return ctx.add1("Exp", [ctx.add1("Mul", [d2, ctx.constant(np.float32(-gamma))])])
    scaled = ctx.add1("Add", [ctx.add1("Mul", [dot, ctx.constant(np.float32(gamma))]),
                              ctx.constant(np.float32(coef0))])
    if kind == "POLY":
        return ctx.add1("Pow", [scaled, ctx.constant(np.float32(degree))])
    if kind == "SIGMOID":
        return ctx.add1("Tanh", [scaled])
    raise ctx.error(f"kernel_type {kind!r} is not LINEAR, POLY, RBF or SIGMOID")


@onnx_op("SVMRegressor", domain=ML)
def _svm_regressor(ctx: ImportContext, node):
    x = rows(ctx, as_float(ctx, ctx.input(0)))
    kind = ctx.attr("kernel_type", "LINEAR")
    coef = np.asarray(ctx.attr("coefficients"), dtype=np.float32)
    rho = np.asarray(ctx.attr("rho", [0.0]), dtype=np.float32).reshape(-1)[:1]
    n_supports = int(ctx.attr("n_supports", 0))
    if n_supports:
        vectors = np.asarray(ctx.attr("support_vectors"), dtype=np.float32)
        vectors = vectors.reshape(n_supports, -1)
        if vectors.shape[1] != x.shape[1]:
            raise ctx.error(f"support vectors have {vectors.shape[1]} features, the input "
                            f"{x.shape[1]}")
        k = svm_kernel(ctx, x, vectors, kind, ctx.attr("kernel_params", []))
        y = ctx.add1("MatMul", [k, ctx.constant(coef.reshape(-1, 1))])
    else:  # linear form: the coefficients are the weights
        y = ctx.add1("MatMul", [x, ctx.constant(coef.reshape(-1, 1))])
    y = ctx.add1("Add", [y, ctx.constant(rho)])
    if int(ctx.attr("one_class", 0)):
        pos = ctx.add1("Greater", [y, ctx.constant(np.float32(0))])
        y = ctx.add1("Where", [pos, ctx.constant(np.float32(1)), ctx.constant(np.float32(-1))])
    return [post_transform(ctx, y, ctx.attr("post_transform", "NONE"))]


@onnx_op("SVMClassifier", domain=ML)
def _svm_classifier(ctx: ImportContext, node):
    """One-vs-one SVC as onnxruntime computes it without probabilities: one decision score
    per pair of classes (a MatMul of the kernel row with the pairs' coefficients), a vote per
    pair, the label with the most votes (the first on ties)."""
    from .onnx_ml import class_labels

    x = rows(ctx, as_float(ctx, ctx.input(0)))
    labels = class_labels(ctx)
    per_class = [int(v) for v in ctx.attr("vectors_per_class", [])]
    if not per_class:
        raise ctx.unsupported("the linear form (no support vectors) is not supported yet")
    if ctx.attr("prob_a", None):
        raise ctx.unsupported("probabilities (prob_a, prob_b: pairwise coupling) are not "
                              "supported yet; convert without probability=True")
    classes, count = len(labels), sum(per_class)
    if len(per_class) != classes:
        raise ctx.error(f"vectors_per_class has {len(per_class)} entries for {classes} labels")
    vectors = np.asarray(ctx.attr("support_vectors"), dtype=np.float32).reshape(count, -1)
    coef = np.asarray(ctx.attr("coefficients"), dtype=np.float32).reshape(classes - 1, count)
    rho = np.asarray(ctx.attr("rho"), dtype=np.float32)
    start = np.concatenate([[0], np.cumsum(per_class)])
    pairs = [(i, j) for i in range(classes - 1) for j in range(i + 1, classes)]
    weights = np.zeros((count, len(pairs)), dtype=np.float32)
    wins = np.zeros((len(pairs), classes), dtype=np.float32)
    losses = np.zeros((len(pairs), classes), dtype=np.float32)
    for p, (i, j) in enumerate(pairs):
        weights[start[i]:start[i + 1], p] = coef[j - 1, start[i]:start[i + 1]]
        weights[start[j]:start[j + 1], p] = coef[i, start[j]:start[j + 1]]
        wins[p, i] = losses[p, j] = 1
    k = svm_kernel(ctx, x, vectors, ctx.attr("kernel_type", "LINEAR"),
                   ctx.attr("kernel_params", []))
    scores = ctx.add1("Add", [ctx.add1("MatMul", [k, ctx.constant(weights)]),
                              ctx.constant(rho[:len(pairs)])])
    won = ctx.add1("Cast", [ctx.add1("Greater", [scores, ctx.constant(np.float32(0))])],
                   {"to": "float32"})
    lost = ctx.add1("Sub", [ctx.constant(np.float32(1)), won])
    votes = ctx.add1("Add", [ctx.add1("MatMul", [won, ctx.constant(wins)]),
                             ctx.add1("MatMul", [lost, ctx.constant(losses)])])
    best = ctx.add1("ArgMax", [votes], {"axis": 1, "keepdims": 0})
    label = ctx.add1("Gather", [ctx.constant(labels), best], {"axis": 0})
    kind = ctx.attr("post_transform", "NONE")
    if classes == 2:  # one score s, written as [-s, s]
        if kind != "NONE":
            raise ctx.unsupported(f"post_transform {kind!r} for a binary SVMClassifier")
        return [label, ctx.add1("Concat", [ctx.add1("Neg", [scores]), scores], {"axis": 1})]
    return [label, post_transform(ctx, scores, kind)]
