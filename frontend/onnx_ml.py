"""Importers for the ai.onnx.ml domain: numeric ops compiled from core ops.

Trees (frontend/onnx_ml_trees.py) and the linear models, scalers and encoders here are
compositions of Gather, GatherElements, comparisons, MatMul and reductions, so they fuse and
compile like any other op. String-valued LabelEncoders run as host functions instead
(frontend/host_strings.py); ZipMap (a sequence of maps) is refused.
"""
from __future__ import annotations

import numpy as np

from onnxc.ir import Value
from onnxc.ir.dtypes import DType

from .importer import ImportContext, onnx_op

ML = "ai.onnx.ml"


def as_float(ctx: ImportContext, x: Value, dtype: DType = DType.float32) -> Value:
    return x if x.dtype == dtype else ctx.add1("Cast", [x], {"to": dtype.value})


def rows(ctx: ImportContext, x: Value) -> Value:
    """[N, C] view of the input: a vector is one row (the ml ops' convention)."""
    if x.type.rank == 2:
        return x
    if x.type.rank == 1:
        return ctx.add1("Reshape", [x], {"shape": (1, x.shape[0])})
    raise ctx.error(f"expects a [N, C] or [C] input, got {x.type}")


@onnx_op("Binarizer", domain=ML)
def _binarizer(ctx: ImportContext, node):
    x = ctx.input(0)
    threshold = ctx.constant(np.array(ctx.attr("threshold", 0.0), dtype=x.dtype.np))
    above = ctx.add1("Greater", [x, threshold])
    return [ctx.add1("Cast", [above], {"to": x.dtype.value})]


@onnx_op("ArrayFeatureExtractor", domain=ML)
def _array_feature_extractor(ctx: ImportContext, node):
    x, idx = ctx.input(0), ctx.input(1)
    if idx.type.rank != 1:
        idx = ctx.add1("Reshape", [idx], {"shape": (idx.type.numel(),)})
    y = ctx.add1("Gather", [x, idx], {"axis": x.type.rank - 1})
    if x.type.rank == 1:
        y = ctx.add1("Reshape", [y], {"shape": (1, y.shape[0])})
    return [y]


@onnx_op("Scaler", domain=ML)
def _scaler(ctx: ImportContext, node):
    x = as_float(ctx, ctx.input(0))
    offset = np.asarray(ctx.attr("offset", [0.0]), dtype=np.float32)
    scale = np.asarray(ctx.attr("scale", [1.0]), dtype=np.float32)
    y = ctx.add1("Sub", [x, ctx.constant(offset)])
    return [ctx.add1("Mul", [y, ctx.constant(scale)])]


@onnx_op("Normalizer", domain=ML)
def _normalizer(ctx: ImportContext, node):
    x = rows(ctx, as_float(ctx, ctx.input(0)))
    norm = ctx.attr("norm", "MAX")
    red = {"axes": (1,), "keepdims": 1}
    if norm == "MAX":
        d = ctx.add1("ReduceMax", [x], red)
    elif norm == "L1":
        d = ctx.add1("ReduceSum", [ctx.add1("Abs", [x])], red)
    elif norm == "L2":
        d = ctx.add1("Sqrt", [ctx.add1("ReduceSum", [ctx.add1("Mul", [x, x])], red)])
    else:
        raise ctx.error(f"norm {norm!r} is not MAX, L1 or L2")
    zero = ctx.add1("Equal", [d, ctx.constant(np.float32(0))])  # a zero norm leaves the row
    d = ctx.add1("Where", [zero, ctx.constant(np.float32(1)), d])
    return [ctx.add1("Div", [x, d])]


def post_transform(ctx: ImportContext, scores: Value, kind: str) -> Value:
    """The ml ops' post_transform on [N, C] scores."""
    if kind in ("NONE", 0):
        return scores
    if kind in ("LOGISTIC", 1):
        return ctx.add1("Sigmoid", [scores])
    if kind in ("SOFTMAX", 2):
        return ctx.add1("Softmax", [scores], {"axis": -1})
    raise ctx.unsupported(f"post_transform {kind!r} is not supported yet (NONE, LOGISTIC and "
                          f"SOFTMAX are)")


def class_labels(ctx: ImportContext) -> np.ndarray:
    """The classifier's integer labels; string labels were rewritten to indices plus a host
    lookup before import (runtime/hosted.py), so none arrive here."""
    labels = ctx.attr("classlabels_ints", None)
    if labels is None:
        labels = ctx.attr("classlabels_int64s", None)
    if labels is None:
        raise ctx.unsupported("string class labels need the host lookup; compile the model "
                              "with onnxc.compile (not import_graph directly)")
    return np.asarray(labels, dtype=np.int64)


def label_of(ctx: ImportContext, scores: Value, labels: np.ndarray) -> Value:
    best = ctx.add1("ArgMax", [scores], {"axis": 1, "keepdims": 0})
    return ctx.add1("Gather", [ctx.constant(labels), best], {"axis": 0})


@onnx_op("LinearRegressor", domain=ML)
def _linear_regressor(ctx: ImportContext, node):
    x = rows(ctx, as_float(ctx, ctx.input(0)))
    targets = int(ctx.attr("targets", 1))
    coef = np.asarray(ctx.attr("coefficients"), dtype=np.float32).reshape(targets, -1)
    if coef.shape[1] != x.shape[1]:
        raise ctx.error(f"{coef.size} coefficients do not fit {targets} target(s) of "
                        f"{x.shape[1]} features")
    y = ctx.add1("MatMul", [x, ctx.constant(np.ascontiguousarray(coef.T))])
    intercepts = ctx.attr("intercepts", None)
    if intercepts is not None:
        y = ctx.add1("Add", [y, ctx.constant(np.asarray(intercepts, dtype=np.float32))])
    return [post_transform(ctx, y, ctx.attr("post_transform", "NONE"))]


@onnx_op("LinearClassifier", domain=ML)
def _linear_classifier(ctx: ImportContext, node):
    x = rows(ctx, as_float(ctx, ctx.input(0)))
    labels = class_labels(ctx)
    coef = np.asarray(ctx.attr("coefficients"), dtype=np.float32).reshape(-1, x.shape[1])
    scores = ctx.add1("MatMul", [x, ctx.constant(np.ascontiguousarray(coef.T))])
    intercepts = ctx.attr("intercepts", None)
    if intercepts is not None:
        scores = ctx.add1("Add", [scores, ctx.constant(np.asarray(intercepts,
                                                                  dtype=np.float32))])
    kind = ctx.attr("post_transform", "NONE")
    if coef.shape[0] == 1 and len(labels) == 2:  # one score s for the second class
        if kind == "LOGISTIC":
            p = ctx.add1("Sigmoid", [scores])
            z = ctx.add1("Concat", [ctx.add1("Sub", [ctx.constant(np.float32(1)), p]), p],
                         {"axis": 1})
        elif kind == "NONE":
            z = ctx.add1("Concat", [ctx.add1("Neg", [scores]), scores], {"axis": 1})
        else:
            raise ctx.unsupported(f"post_transform {kind!r} with one coefficient row")
        positive = ctx.add1("Greater", [ctx.add1("Reshape", [scores],
                                                 {"shape": (x.shape[0],)}),
                                        ctx.constant(np.float32(0))])
        label = ctx.add1("Where", [positive, ctx.constant(labels[1]),
                                   ctx.constant(labels[0])])
        return [label, z]
    if coef.shape[0] != len(labels):
        raise ctx.error(f"{coef.shape[0]} coefficient rows for {len(labels)} class labels")
    return [label_of(ctx, scores, labels), post_transform(ctx, scores, kind)]


@onnx_op("LabelEncoder", domain=ML)
def _label_encoder(ctx: ImportContext, node):
    """Numeric keys to numeric values: the first matching key's value, else the default."""
    from .host_ops import node_attrs
    from .host_strings import label_encoder_table

    keys, values, default = label_encoder_table(node_attrs(node))
    x = ctx.input(0)
    keys_v = ctx.constant(keys.astype(x.dtype.np).reshape((1,) * x.type.rank + (-1,)))
    xe = ctx.add1("Reshape", [x], {"shape": tuple(x.shape) + (1,)})
    hit = ctx.add1("Equal", [xe, keys_v])
    if keys.dtype.kind == "f" and np.isnan(keys).any():  # a NaN key matches NaN
        nan_key = ctx.constant(np.isnan(keys).reshape((1,) * x.type.rank + (-1,)))
        hit = ctx.add1("Or", [hit, ctx.add1("And", [ctx.add1("IsNaN", [xe]), nan_key])])
    hit_i = ctx.add1("Cast", [hit], {"to": "int32"})
    first = ctx.add1("ArgMax", [hit_i], {"axis": x.type.rank, "keepdims": 0})
    found = ctx.add1("ReduceMax", [hit_i], {"axes": (x.type.rank,), "keepdims": 0})
    picked = ctx.add1("Gather", [ctx.constant(values), first], {"axis": 0})
    any_hit = ctx.add1("Greater", [found, ctx.constant(np.int32(0))])
    return [ctx.add1("Where", [any_hit, picked,
                               ctx.constant(np.asarray(default, dtype=values.dtype))])]


@onnx_op("Imputer", domain=ML)
def _imputer(ctx: ImportContext, node):
    x = ctx.input(0)
    if x.dtype.is_float:
        replaced = float(ctx.attr("replaced_value_float", 0.0))
        imputed = ctx.attr("imputed_value_floats", None)
    else:
        replaced = int(ctx.attr("replaced_value_int64", 0))
        imputed = ctx.attr("imputed_value_int64s", None)
    if not imputed:
        raise ctx.error(f"needs imputed_value_{'floats' if x.dtype.is_float else 'int64s'} "
                        f"for a {x.dtype} input")
    imputed_v = ctx.constant(np.asarray(imputed, dtype=x.dtype.np))
    if isinstance(replaced, float) and np.isnan(replaced):
        mask = ctx.add1("IsNaN", [x])
    else:
        mask = ctx.add1("Equal", [x, ctx.constant(np.asarray(replaced, dtype=x.dtype.np))])
    return [ctx.add1("Where", [mask, imputed_v, x])]


@onnx_op("FeatureVectorizer", domain=ML)
def _feature_vectorizer(ctx: ImportContext, node):
    parts = [rows(ctx, as_float(ctx, v)) for v in ctx.inputs() if v is not None]
    dims = list(ctx.attr("inputdimensions", [p.shape[1] for p in parts]))
    for k, (p, d) in enumerate(zip(parts, dims)):
        if p.shape[1] != d:
            raise ctx.error(f"input {k} has {p.shape[1]} columns, inputdimensions says {d}")
    return [parts[0] if len(parts) == 1 else ctx.add1("Concat", parts, {"axis": 1})]


@onnx_op("OneHotEncoder", domain=ML)
def _one_hot_encoder(ctx: ImportContext, node):
    """Numeric categories (string ones run on the host). With zeros=0 onnxruntime fails on
    an unknown category; compiled code cannot raise, so such a row is all zeros here."""
    x = ctx.input(0)
    cats = np.asarray(ctx.attr("cats_int64s", []), dtype=np.int64)
    if not cats.size:
        raise ctx.error("needs cats_int64s (or cats_strings, a host function)")
    if x.dtype != DType.int64:
        x = ctx.add1("Cast", [x], {"to": "int64"})
    xe = ctx.add1("Reshape", [x], {"shape": tuple(x.shape) + (1,)})
    hit = ctx.add1("Equal", [xe, ctx.constant(cats.reshape((1,) * x.type.rank + (-1,)))])
    return [ctx.add1("Cast", [hit], {"to": "float32"})]


@onnx_op("ZipMap", domain=ML)
def _zipmap(ctx: ImportContext, node):
    raise ctx.unsupported("ZipMap outputs a sequence of maps, which onnxc does not support; "
                          "convert without it (skl2onnx: options={'zipmap': False})")


from . import onnx_ml_svm, onnx_ml_trees  # noqa: E402,F401  (register SVMs and trees)
