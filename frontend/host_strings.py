"""Host functions over string tensors (numpy object arrays of ``str``), and ImageDecoder."""
from __future__ import annotations

import io
import re

import numpy as np
import onnx

from onnxc.ir.errors import ModelError

from .host_ops import _touches_strings, as_strings, host_op


def _obj(values, shape) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.reshape(-1)[:] = list(values) if len(values) else []
    return out


@host_op("Equal", applies=_touches_strings)
def _equal(attrs, inputs):
    a, b = (as_strings(x) for x in inputs)
    return [np.asarray(np.equal(a, b), dtype=bool)]


@host_op("Identity", applies=_touches_strings)
def _identity(attrs, inputs):
    return [np.array(inputs[0], copy=True)]


@host_op("StringConcat")
def _string_concat(attrs, inputs):
    a, b = (as_strings(x) for x in inputs)
    shape = np.broadcast_shapes(a.shape, b.shape)
    a, b = np.broadcast_to(a, shape).reshape(-1), np.broadcast_to(b, shape).reshape(-1)
    return [_obj([x + y for x, y in zip(a, b)], shape)]


@host_op("RegexFullMatch", library="re")
def _regex_full_match(attrs, inputs):
    pattern = attrs.get("pattern", "")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ModelError(f"RegexFullMatch: pattern {pattern!r} is not a valid regular "
                         f"expression: {exc}", op="RegexFullMatch") from exc
    x = as_strings(inputs[0])
    return [np.array([regex.fullmatch(s) is not None for s in x.reshape(-1)],
                     dtype=bool).reshape(x.shape)]


@host_op("StringSplit")
def _string_split(attrs, inputs):
    x = as_strings(inputs[0])
    sep = attrs.get("delimiter") or None  # unset or "": runs of whitespace
    maxsplit = attrs.get("maxsplit")
    # an empty string has no substrings (onnxruntime; Python's "".split(",") gives [""])
    parts = [s.split(sep, -1 if maxsplit is None else int(maxsplit)) if s else []
             for s in x.reshape(-1)]
    width = max((len(p) for p in parts), default=0)
    out = np.full((len(parts), width), "", dtype=object)
    for k, p in enumerate(parts):
        out[k, :len(p)] = p
    lengths = np.array([len(p) for p in parts], dtype=np.int64).reshape(x.shape)
    return [out.reshape(x.shape + (width,)), lengths]


@host_op("StringNormalizer")
def _string_normalizer(attrs, inputs):
    """Drop stop words (whole elements), then change case. [C] or [1, C]; when every element
    is dropped the result is [""] (or [[""]]), as the ONNX spec says."""
    x = as_strings(inputs[0])
    if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[0] != 1):
        raise ModelError(f"StringNormalizer takes [C] or [1, C] strings, got shape "
                         f"{list(x.shape)}", op="StringNormalizer")
    action = attrs.get("case_change_action", "NONE")
    if action not in ("NONE", "LOWER", "UPPER"):
        raise ModelError(f"StringNormalizer: case_change_action {action!r} is not one of "
                         f"NONE, LOWER, UPPER", op="StringNormalizer")
    sensitive = bool(attrs.get("is_case_sensitive", 0))
    stops = list(attrs.get("stopwords", []))
    words = list(x.reshape(-1))
    if sensitive:
        stop_set = set(stops)
        words = [w for w in words if w not in stop_set]
    else:
        stop_set = {w.lower() for w in stops}
        words = [w for w in words if w.lower() not in stop_set]
    if action == "LOWER":
        words = [w.lower() for w in words]
    elif action == "UPPER":
        words = [w.upper() for w in words]
    if not words:
        words = [""]
    out = _obj(words, (len(words),))
    return [out if x.ndim == 1 else out.reshape(1, -1)]


def _label_encoder_strings(node, ins, outs) -> bool:
    """String keys or values: a dictionary lookup on the host (numeric ones compile)."""
    A = onnx.AttributeProto
    for a in node.attribute:
        if a.name.startswith(("keys_", "values_", "classes_")) and (
                a.type in (A.STRING, A.STRINGS) or
                (a.type == A.TENSOR and a.t.data_type == onnx.TensorProto.STRING)):
            return True
    return _touches_strings(node, ins, outs)


def label_encoder_table(attrs: dict) -> tuple[np.ndarray, np.ndarray, object]:
    """LabelEncoder's keys, values and default (opsets 2-4), whichever attributes hold them."""
    keys = values = default = None
    dtypes = {"strings": object, "int64s": np.int64, "floats": np.float32}
    for kind, dtype in dtypes.items():
        if f"keys_{kind}" in attrs:
            keys = np.asarray(attrs[f"keys_{kind}"], dtype=dtype)
        if f"values_{kind}" in attrs:
            values = np.asarray(attrs[f"values_{kind}"], dtype=dtype)
    keys = attrs.get("keys_tensor", keys)
    values = attrs.get("values_tensor", values)
    if keys is None or values is None:
        raise ModelError("LabelEncoder needs keys_* and values_* attributes (the opset-1 "
                         "classes_strings form is not supported)", op="LabelEncoder")
    keys, values = np.asarray(keys), np.asarray(values)
    if keys.dtype.kind in "US":
        keys = keys.astype(object)
    if values.dtype.kind in "US":
        values = values.astype(object)
    if "default_tensor" in attrs:
        default = np.asarray(attrs["default_tensor"]).reshape(-1)[0]
    elif values.dtype == object:
        default = attrs.get("default_string", "_Unused")
    elif values.dtype.kind == "f":
        default = attrs.get("default_float", -0.0)
    else:
        default = attrs.get("default_int64", -1)
    if keys.shape != values.shape or keys.ndim != 1:
        raise ModelError(f"LabelEncoder: {keys.size} keys but {values.size} values",
                         op="LabelEncoder")
    return keys, values, default


@host_op("LabelEncoder", domain="ai.onnx.ml", applies=_label_encoder_strings)
def _label_encoder(attrs, inputs):
    keys, values, default = label_encoder_table(attrs)
    x = inputs[0]
    if keys.dtype == object:
        x = as_strings(x)
    else:
        x = np.asarray(x)
    table = dict(zip(keys.tolist(), values.tolist()))
    flat = [table.get(v, default) for v in x.reshape(-1).tolist()]
    out = np.empty(x.shape, dtype=values.dtype if values.dtype != object else object)
    out.reshape(-1)[:] = flat if flat else []
    return [out]


def _string_categories(node, ins, outs) -> bool:
    return any(a.name == "cats_strings" for a in node.attribute) or \
        _touches_strings(node, ins, outs)


@host_op("OneHotEncoder", domain="ai.onnx.ml", applies=_string_categories)
def _one_hot_strings(attrs, inputs):
    cats = list(attrs.get("cats_strings", []))
    x = as_strings(inputs[0])
    index = {c: k for k, c in enumerate(cats)}
    out = np.zeros(x.shape + (len(cats),), dtype=np.float32)
    flat = out.reshape(-1, len(cats))
    for k, s in enumerate(x.reshape(-1)):
        if s in index:
            flat[k, index[s]] = 1.0
        elif not attrs.get("zeros", 1):
            raise ModelError(f"OneHotEncoder: category {s!r} is not one of cats_strings "
                             f"(zeros=0)", op="OneHotEncoder")
    return [out]


@host_op("ImageDecoder", library="Pillow")
def _image_decoder(attrs, inputs):
    try:
        import PIL.Image
    except ImportError as exc:
        from onnxc.ir.errors import UnsupportedOpError

        raise UnsupportedOpError([("", "ImageDecoder", "needs Pillow: pip install "
                                   "'onnxc[images]'")]) from exc
    fmt = attrs.get("pixel_format", "RGB")
    try:
        img = PIL.Image.open(io.BytesIO(np.ascontiguousarray(inputs[0]).tobytes()))
        img.load()
    except Exception as exc:  # Pillow raises many kinds for bad data
        raise ModelError(f"ImageDecoder: the input is not an image Pillow can decode: "
                         f"{exc}", op="ImageDecoder") from exc
    if fmt == "Grayscale":
        return [np.asarray(img.convert("L"), dtype=np.uint8)[:, :, None].copy()]
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if fmt == "BGR":
        return [rgb[:, :, ::-1].copy()]
    if fmt != "RGB":
        raise ModelError(f"ImageDecoder: pixel_format {fmt!r} is not RGB, BGR or Grayscale",
                         op="ImageDecoder")
    return [rgb.copy()]
