"""Several object files as one blob: the code of a plan compiled as several modules (split.py)
travels and is cached as one ``object_code``. A single object file is stored as itself (so
artifacts and cache entries written before the split still load).

Layout: magic, count (u32), the lengths (u64 each), then the objects back to back.
"""
from __future__ import annotations

import struct

from onnxc.ir.errors import ArtifactError

_MAGIC = b"onnxc-objects-1\n"


def pack_objects(objects: list[bytes]) -> bytes:
    if len(objects) == 1:
        return objects[0]
    head = struct.pack(f"<I{len(objects)}Q", len(objects), *(len(o) for o in objects))
    return _MAGIC + head + b"".join(objects)


def unpack_objects(blob: bytes) -> list[bytes]:
    """The object files in ``blob``; ArtifactError when the lengths do not add up."""
    if not blob.startswith(_MAGIC):
        return [blob]
    pos = len(_MAGIC)
    try:
        (count,) = struct.unpack_from("<I", blob, pos)
        lengths = struct.unpack_from(f"<{count}Q", blob, pos + 4)
    except struct.error as exc:
        raise ArtifactError(f"object code is damaged ({exc}); recompile the model") from exc
    pos += 4 + 8 * count
    if count == 0 or pos + sum(lengths) != len(blob):
        raise ArtifactError("object code is damaged (its parts' lengths do not match its "
                            "size); recompile the model")
    objects = []
    for n in lengths:
        objects.append(blob[pos:pos + n])
        pos += n
    return objects
