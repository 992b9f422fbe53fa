"""Reading a model from a path, bytes or ModelProto, with external data read safely.

External data is only read from inside the model's own folder: absolute paths, ``..`` and
symlinks that lead outside are refused, and offsets/lengths must lie inside the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import onnx
from google.protobuf.message import DecodeError

from onnxc.ir.errors import ModelError

ModelLike = Union[str, os.PathLike, bytes, onnx.ModelProto]


def load_model(model: ModelLike) -> tuple[onnx.ModelProto, Path | None]:
    """The ModelProto, with all external tensors read in, and the folder it came from."""
    base: Path | None = None
    if isinstance(model, onnx.ModelProto):
        proto = model
    elif isinstance(model, (bytes, bytearray, memoryview)):
        proto = _parse(bytes(model), "<bytes>")
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"model file {str(path)!r} does not exist or is not a file")
        base = path.resolve().parent
        proto = _parse(path.read_bytes(), str(path))
    else:
        raise ModelError(f"cannot load a model from a {type(model).__name__}; pass a path, "
                         f"bytes or an onnx.ModelProto")
    if not proto.HasField("graph"):
        raise ModelError("the model has no graph")
    if _has_external(proto):
        proto = _copy(proto)
        _load_external(proto, base)
    return proto, base


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    if not data:
        raise ModelError(f"{where} is empty, not an ONNX model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise ModelError(f"{where} is not a valid ONNX model (protobuf parse failed: {exc})") \
            from exc
    if not proto.HasField("graph") and not proto.opset_import:
        raise ModelError(f"{where} is not a valid ONNX model (no graph, no opset)")
    return proto


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def _tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)


def _has_external(proto: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in _tensors(proto.graph))


def _load_external(proto: onnx.ModelProto, base: Path | None) -> None:
    for t in _tensors(proto.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        if base is None:
            raise ModelError(f"tensor {t.name!r} keeps its data in an external file, so the "
                             f"model must be loaded from a path, not from bytes")
        location = info.get("location", "")
        path = _safe_path(base, location, t.name)
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else None
        except ValueError:
            raise ModelError(f"tensor {t.name!r} has a malformed external offset/length") \
                from None
        size = path.stat().st_size
        if offset < 0 or offset > size or (length is not None and
                                            (length < 0 or offset + length > size)):
            raise ModelError(f"tensor {t.name!r}: external data range offset={offset} "
                             f"length={length} lies outside {location!r} ({size} bytes)")
        with open(path, "rb") as f:
            f.seek(offset)
            t.raw_data = f.read(length if length is not None else size - offset)
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT


def _safe_path(base: Path, location: str, tensor: str) -> Path:
    if not location or os.path.isabs(location) or ".." in Path(location).parts:
        raise ModelError(f"tensor {tensor!r}: external data location {location!r} is not a "
                         f"relative path inside the model's folder; refused")
    path = (base / location).resolve()
    if base not in path.parents:
        raise ModelError(f"tensor {tensor!r}: external data {location!r} leads outside the "
                         f"model's folder (through a symlink?); refused")
    if not path.is_file():
        raise ModelError(f"tensor {tensor!r}: external data file {location!r} is missing")
    return path
