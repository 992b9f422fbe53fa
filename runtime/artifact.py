"""The artifact file: one zip holding a manifest, machine code, constants and (optionally) the
model, each entry checksummed. Nothing is unpickled: constants are .npy files read with
``allow_pickle=False`` and the manifest is JSON.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
import zlib

import numpy as np
import onnx

from onnxc.ir.dtypes import DType
from onnxc.ir.errors import ArtifactError, ModelError
from onnxc.ir.limits import memory_limit
from onnxc.runtime.build import CompileOptions
from onnxc.runtime.executable import Executable, KernelInfo
from onnxc.runtime.plan import TensorSpec

FORMAT = "onnxc-artifact"
VERSION = 1


def _spec(s: TensorSpec) -> dict:
    d = {"name": s.name, "shape": None if s.shape is None else list(s.shape), "dtype": s.dtype}
    if s.kind != "tensor":
        d["kind"] = s.kind
    return d


def _unspec(d: dict) -> TensorSpec:
    shape = None if d["shape"] is None else tuple(d["shape"])
    return TensorSpec(d["name"], shape, d["dtype"], d.get("kind", "tensor"))


_NARROW = {d.value for d in DType
           if (d.is_narrow_float and d != DType.float16) or d.is_sub_byte_int}


def _npy(array: np.ndarray) -> bytes:
    """.npy bytes; the ml_dtypes types (bfloat16, float8, int4...) are saved as their bits
    (``np.load`` would give them back as void), the manifest keeps their dtype names."""
    array = _contiguous(array)
    if array.dtype.kind == "V" or array.dtype.name in _NARROW:
        array = array.view(f"u{array.dtype.itemsize}")
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _narrow_view(array: np.ndarray, dtype_name: str | None) -> np.ndarray:
    if dtype_name is None or dtype_name not in _NARROW:
        return array
    want = np.dtype(dtype_name)
    if array.dtype.kind != "u" or array.dtype.itemsize != want.itemsize:
        raise ArtifactError(f"artifact constant of {dtype_name} is stored as {array.dtype}")
    return array.view(want)


def save_artifact(path: str | os.PathLike, session) -> None:
    files: dict[str, bytes] = {}
    exes = []
    for k, (key, exe) in enumerate(session.executables.items()):
        prefix = f"exe{k}/"
        files[prefix + "code.o"] = exe.object_code
        if exe.backend != "cpu":
            files[prefix + "source.cu"] = exe.llvm_ir.encode()
        for c, array in enumerate(exe.constants):
            files[f"{prefix}const{c}.npy"] = _npy(array)
        exes.append({
            "key": json.loads(json.dumps(key)),
            "inputs": [_spec(s) for s in exe.inputs],
            "outputs": [_spec(s) for s in exe.outputs],
            "constants": len(exe.constants),
            "constant_dtypes": [a.dtype.name for a in exe.constants],
            "arena_bytes": exe.arena_bytes,
            "value_bytes": exe.value_bytes,
            "kernels": [vars(kinfo) for kinfo in exe.kernels],
            "target": exe.target,
            "needs_openmp": exe.needs_openmp,
            "backend": exe.backend,
            "launches": [vars(ln) for ln in exe.launches] if exe.launches else None,
            "index_checks": exe.index_checks,
        })
    static = all(s.kind == "tensor" and all(isinstance(d, int) for d in s.shape)
                 for s in session.input_specs)
    if session.model is not None and (not static or session.value_inputs or
                                      not session.executables):
        files["model.onnx"] = session.model.SerializeToString()
    opts = session.options
    manifest = {
        "format": FORMAT, "version": VERSION,
        "inputs": [_spec(s) for s in session.input_specs],
        "outputs": [_spec(s) for s in session.output_specs],
        "options": {"target": opts.target, "opt_level": opts.opt_level,
                    "disabled_passes": list(opts.disabled_passes),
                    "use_openmp": opts.use_openmp,
                    "memory_limit_bytes": opts.memory_limit_bytes,
                    "batch_tile": opts.batch_tile,
                    "precision": opts.precision},
        "executables": exes,
        "value_inputs": sorted(session.value_inputs),
        # Batch tiling (runtime/tiling.py): per set of non-batch shapes, the tile and batch-1
        # programs (keys into "executables") that run any batch without a compiler.
        "tilings": [[json.loads(json.dumps(rest)), t.to_json()]
                    for rest, t in session.tilings.items()],
        "untiled": [[json.loads(json.dumps(rest)), why] for rest, why in session.untiled.items()],
        "checksums": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    tmp = f"{os.fspath(path)}.tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=1))
        for name, data in files.items():
            z.writestr(name, data)
    os.replace(tmp, path)


# What a damaged zip can raise from the standard library, besides BadZipFile.
_DAMAGED = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError,
            ValueError, KeyError, TypeError, RuntimeError, UnicodeDecodeError, zlib.error)


def load_artifact(path: str | os.PathLike, num_threads: int | None = None):
    """A Session from an artifact file; any damage is reported as ArtifactError."""
    if not os.path.exists(path):
        raise ArtifactError(f"artifact {os.fspath(path)!r} does not exist")
    try:
        return _load(path, num_threads)
    except ArtifactError:
        raise
    except _DAMAGED as exc:
        raise ArtifactError(f"{os.fspath(path)!r} is damaged or not an onnxc artifact "
                            f"({type(exc).__name__}: {exc})") from exc


def _load(path: str | os.PathLike, num_threads: int | None):
    from onnxc.runtime.session import Session

    try:
        z = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ArtifactError(f"artifact {os.fspath(path)!r} does not exist") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArtifactError(f"{os.fspath(path)!r} is not an onnxc artifact ({exc})") from exc
    with z:
        try:
            manifest = json.loads(z.read("manifest.json"))
        except (KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise ArtifactError(f"{os.fspath(path)!r} has no readable manifest; not an onnxc "
                                f"artifact") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ArtifactError(f"{os.fspath(path)!r} is not an onnxc artifact")
        if manifest.get("version") != VERSION:
            raise ArtifactError(f"artifact format version {manifest.get('version')} is not "
                                f"supported by this onnxc (it reads version {VERSION}); "
                                f"recompile the model")
        sums = manifest.get("checksums", {})

        def read(name: str) -> bytes:
            try:
                data = z.read(name)
            except (KeyError, zipfile.BadZipFile, OSError) as exc:
                raise ArtifactError(f"artifact entry {name!r} is missing or damaged") from exc
            if hashlib.sha256(data).hexdigest() != sums.get(name):
                raise ArtifactError(f"artifact entry {name!r} fails its checksum; the file is "
                                    f"corrupt")
            return data

        try:
            opts = manifest["options"]
            options = CompileOptions(target=opts["target"], opt_level=opts["opt_level"],
                                     disabled_passes=tuple(opts["disabled_passes"]),
                                     use_openmp=opts["use_openmp"],
                                     memory_limit_bytes=opts.get("memory_limit_bytes"),
                                     batch_tile=_batch_tile(opts.get("batch_tile")),
                                     precision=_precision(opts.get("precision", "fp32")))
            executables = {}
            limit = memory_limit(options.memory_limit_bytes)
            for k, e in enumerate(manifest["executables"]):
                if not isinstance(e["arena_bytes"], int) or not 0 <= e["arena_bytes"] <= limit:
                    raise ArtifactError(f"artifact manifest asks for {e['arena_bytes']!r} bytes "
                                        f"of working memory (the memory limit is {limit}); "
                                        f"refused")
                consts = []
                names = e.get("constant_dtypes") or [None] * e["constants"]
                if not isinstance(names, list) or len(names) != e["constants"]:
                    raise ArtifactError("artifact manifest's constant_dtypes does not match "
                                        "its constants; the file is damaged")
                for c in range(e["constants"]):
                    consts.append(_narrow_view(np.load(io.BytesIO(read(f"exe{k}/const{c}.npy")),
                                                       allow_pickle=False), names[c]))
                exe = Executable([_unspec(s) for s in e["inputs"]],
                                 [_unspec(s) for s in e["outputs"]], consts, e["arena_bytes"],
                                 e["value_bytes"], [KernelInfo(**{**ki, "slots": [tuple(x) for x in ki["slots"] or []]})
                                  for ki in e["kernels"]],
                                 read(f"exe{k}/code.o"), e["target"], e["needs_openmp"],
                                 backend=e.get("backend", "cpu"),
                                 index_checks=_index_checks(e.get("index_checks", []), e))
                if exe.backend != "cpu":
                    from onnxc.backends.cuda import Launch

                    exe.llvm_ir = read(f"exe{k}/source.cu").decode()
                    exe.launches = [Launch(**{**ln, "slots": [tuple(x) for x in ln["slots"]]})
                                    for ln in e["launches"]]
                executables[_tuplify(e["key"])] = exe
            model = None
            if "model.onnx" in sums:
                model = onnx.ModelProto()
                model.ParseFromString(read("model.onnx"))
            inputs = [_unspec(s) for s in manifest["inputs"]]
            outputs = [_unspec(s) for s in manifest["outputs"]]
            tilings = _tilings(manifest.get("tilings", []), executables, len(inputs))
            untiled = {_tuplify(rest): str(why) for rest, why in manifest.get("untiled", [])}
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError, ModelError) as exc:
            raise ArtifactError(f"artifact manifest is malformed: {exc}") from exc
    for exe in executables.values():
        if exe.backend != "cuda":  # loads on first run, where a GPU is
            exe.load()
    return Session(inputs, outputs, options, model=model, executables=executables,
                   num_threads=num_threads, value_inputs=manifest.get("value_inputs", []),
                   tilings=tilings, untiled=untiled)


def _precision(value):
    if value in ("fp32", "bf16"):
        return value
    raise ArtifactError(f"artifact manifest has an unknown precision {value!r}; the file is "
                        f"damaged or from a newer onnxc")


def _batch_tile(value):
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and
                         value >= 0 and value != 1):
        return value
    raise ArtifactError(f"artifact manifest has a malformed batch_tile {value!r}")


def _tilings(entries, executables: dict, n_inputs: int) -> dict:
    """The manifest's batch tilings, validated: their programs are in the artifact and their
    batched inputs and outputs are positions the programs have."""
    from onnxc.runtime.tiling import Tiling

    out = {}
    for rest, t in entries:
        tiling = Tiling(int(t["tile"]), [int(k) for k in t["batched_inputs"]],
                        [int(r) for r in t["out_rows"]], _tuplify(t["key_tile"]),
                        _tuplify(t["key_one"]), float(t.get("cost_tile", 0.0)),
                        float(t.get("cost_one", 0.0)))
        exe_tile, exe_one = (executables.get(tiling.key_tile), executables.get(tiling.key_one))
        if exe_tile is None or exe_one is None or tiling.tile < 1 or \
                not all(0 <= k < len(exe_tile.inputs) for k in tiling.batched_inputs) or \
                len(tiling.out_rows) != len(exe_tile.outputs) or \
                any(r < 0 for r in tiling.out_rows) or len(exe_tile.inputs) != n_inputs:
            raise ArtifactError(f"artifact manifest has a malformed batch tiling {t}")
        out[_tuplify(rest)] = tiling
    return out


def _index_checks(checks, exe: dict) -> list:
    """The manifest's Gather index checks, validated: they index the feeds."""
    out = []
    for position, n, node, op in checks:
        if not (isinstance(position, int) and 0 <= position < len(exe["inputs"])
                and isinstance(n, int) and n >= 0):
            raise ArtifactError(f"artifact manifest has a malformed index check "
                                f"{[position, n, node, op]}")
        out.append([position, n, str(node), str(op)])
    return out


def _tuplify(x):
    """JSON lists back into the nested tuples sessions use as keys."""
    return tuple(_tuplify(v) for v in x) if isinstance(x, list) else x


def _contiguous(array):
    """C-contiguous without numpy's ascontiguousarray turning 0-d arrays into 1-d ones."""
    import numpy

    array = numpy.asarray(array)
    return array if array.flags.c_contiguous else numpy.array(array, order="C")
