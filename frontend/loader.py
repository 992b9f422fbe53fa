"""Reading a model from a path, bytes or ModelProto, with external data read safely.

External data is only read from inside the model's own folder: absolute paths, ``..`` and
symlinks that lead outside are refused, and offsets/lengths must lie inside the file.
"""
from __future__ import annotations

import os
import stat
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
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read model file {str(path)!r}: {exc.strerror}") from exc
        proto = _parse(data, str(path))
    else:
        raise ModelError(f"cannot load a model from a {type(model).__name__}; pass a path, "
                         f"bytes or an onnx.ModelProto")
    if not proto.HasField("graph"):
        raise ModelError("the model has no graph")
    _check_text(proto, "the model" if base is None else str(model))
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


def _check_text(proto: onnx.ModelProto, where: str) -> None:
    """Every string field must be text: protobuf hands invalid UTF-8 back as bytes, which
    would surface far away (a node name that is bytes). Walks messages, not tensor data."""
    stack = [(proto, "model")]
    while stack:
        msg, path = stack.pop()
        for field, value in msg.ListFields():
            repeated = field.is_repeated if hasattr(field, "is_repeated") else \
                field.label == field.LABEL_REPEATED
            if field.type == field.TYPE_STRING:
                for v in (value if repeated else [value]):
                    if not isinstance(v, str):
                        raise ModelError(f"{where} is not a valid ONNX model ({path}."
                                         f"{field.name} is not valid UTF-8: {bytes(v)[:40]!r})")
            elif field.type == field.TYPE_MESSAGE:
                items = value if repeated else [value]
                stack.extend((m, f"{path}.{field.name}") for m in items)


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def _tensors(graph: onnx.GraphProto):
    """Every tensor of the graph and its subgraphs (iterative: nesting depth is unbounded)."""
    stack = [graph]
    while stack:
        g = stack.pop()
        yield from g.initializer
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("g"):
                    stack.append(attr.g)
                stack.extend(attr.graphs)


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
        t.raw_data = _read_range(path, offset, length, location, t.name)
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT


def _safe_path(base: Path, location: str, tensor: str) -> Path:
    if not location or "\0" in location or os.path.isabs(location) or \
            ".." in Path(location).parts:
        raise ModelError(f"tensor {tensor!r}: external data location {location!r} is not a "
                         f"relative path inside the model's folder; refused")
    try:
        path = (base / location).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise ModelError(f"tensor {tensor!r}: external data location {location!r} cannot be "
                         f"resolved ({exc}); refused") from exc
    if base not in path.parents:
        raise ModelError(f"tensor {tensor!r}: external data {location!r} leads outside the "
                         f"model's folder (through a symlink?); refused")
    if not path.exists():
        raise ModelError(f"tensor {tensor!r}: external data file {location!r} is missing")
    if not path.is_file():
        raise ModelError(f"tensor {tensor!r}: external data {location!r} is not a regular file; "
                         f"refused")
    return path


def _read_range(path: Path, offset: int, length: int | None, location: str, tensor: str) -> bytes:
    """The bytes [offset, offset+length) of a regular file, sized from the opened file itself
    (O_NOFOLLOW: a symlink swapped in after the checks above is not followed)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ModelError(f"tensor {tensor!r}: cannot open external data {location!r}: "
                         f"{exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ModelError(f"tensor {tensor!r}: external data {location!r} is not a regular "
                             f"file; refused")
        size = info.st_size
        if offset < 0 or offset > size or (length is not None and
                                            (length < 0 or offset + length > size)):
            raise ModelError(f"tensor {tensor!r}: external data range offset={offset} "
                             f"length={length} lies outside {location!r} ({size} bytes)")
        f.seek(offset)
        return f.read(length if length is not None else size - offset)
