"""JIT-loaded object code must not depend on where mmap puts its sections.

MCJIT maps .text and .rodata separately; in a process with PyTorch and large arrays mapped they
can land more than 2 GiB apart. A 32-bit PC-relative relocation (the small code model's
default) then cannot be resolved: LLVM aborted the CI process in RuntimeDyld with
`isInt<32>(RealOffset)`. These tests read the relocations of the emitted ELF objects and check
that every one is 64 bits wide, and that an artifact compiled the old way is refused.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from models import light_model_paths
from onnxc.backends.cpu import load_code
from onnxc.backends.cpu.objects import unpack_objects
from onnxc.ir.errors import ArtifactError

import onnxc
from bench.models import mlp

SHT_RELA, SHT_REL = 4, 9
# x86-64 relocation types that hold a 32-bit (or narrower) value (System V ABI, table 4.10).
NARROW_X86_64 = {2: "PC32", 4: "PLT32", 9: "GOTPCREL", 10: "32", 11: "32S", 12: "16",
                 13: "PC16", 14: "8", 15: "PC8", 41: "GOTPCRELX", 42: "REX_GOTPCRELX",
                 26: "GOTPC32", 3: "GOT32", 19: "TLSGD", 20: "TLSLD", 22: "GOTTPOFF"}


def relocation_types(elf: bytes) -> dict[int, int]:
    """{relocation type: count} over every SHT_RELA/SHT_REL section of an ELF64 object."""
    assert elf[:4] == b"\x7fELF" and elf[4] == 2, "not an ELF64 object"
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", elf, 0x3A)
    counts: dict[int, int] = {}
    for i in range(shnum):
        base = shoff + i * shentsize
        sh_type, = struct.unpack_from("<I", elf, base + 4)
        if sh_type not in (SHT_RELA, SHT_REL):
            continue
        offset, size = struct.unpack_from("<QQ", elf, base + 0x18)
        entsize, = struct.unpack_from("<Q", elf, base + 0x38)
        for pos in range(offset, offset + size, entsize):
            r_info, = struct.unpack_from("<Q", elf, pos + 8)
            counts[r_info & 0xFFFFFFFF] = counts.get(r_info & 0xFFFFFFFF, 0) + 1
    return counts


def _executable(sess):
    return next(iter(sess._executables.values()))


@pytest.mark.parametrize("threads", [1, 2])
def test_object_code_has_no_32_bit_relocations(threads, monkeypatch) -> None:
    monkeypatch.setenv("ONNXC_CACHE", "0")
    sess = onnxc.compile(light_model_paths()[0], num_threads=threads)  # alexnet: constants
    exe = _executable(sess)
    assert exe.target["code_model"] == "large"
    for obj in unpack_objects(exe.object_code):
        counts = relocation_types(obj)
        assert counts, "expected relocations (constant pools, libm, libgomp)"
        narrow = {NARROW_X86_64[t]: n for t, n in counts.items() if t in NARROW_X86_64}
        assert not narrow, f"32-bit relocations would break when sections load far apart: {narrow}"


def test_object_of_the_small_code_model_is_refused(tmp_path: Path) -> None:
    """An artifact compiled before the large code model carries no "code_model" in its
    target: loading it is an ArtifactError that says to recompile, not a possible abort."""
    sess = onnxc.compile(mlp(2, sizes=(16, 8, 4)))
    exe = _executable(sess)
    old_target = {k: v for k, v in exe.target.items() if k != "code_model"}
    with pytest.raises(ArtifactError, match="recompile"):
        load_code(exe.object_code, old_target, exe.needs_openmp)
    x = np.ones((2, 16), np.float32)
    assert sess.run(None, {"x": x})[0].shape == (2, 4)
