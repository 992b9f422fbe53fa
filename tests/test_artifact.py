"""Saved artifacts: they reload (in this process and in a fresh one) to the same results, and a
damaged or foreign file is an ``ArtifactError``, never a crash or a silent wrong answer.
"""
from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

import onnxc
from models import mlp, mlp_reference

SIZES = (16, 64, 64, 4)
SEED = 3
BATCH = 3

# Loads an artifact in a fresh interpreter, runs it on x.npy and writes the first output.
RUNNER = textwrap.dedent("""
    import sys
    import numpy as np
    import onnxc
    artifact, x_path, out_path = sys.argv[1:]
    sess = onnxc.load(artifact)
    (y,) = sess.run(None, {"x": np.load(x_path)})
    np.save(out_path, y)
""")


def make_x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, SIZES[0]), dtype=np.float32)


def run_in_fresh_process(artifact: Path, x: np.ndarray, tmp_path: Path) -> np.ndarray:
    x_path, out_path = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x_path, x)
    done = subprocess.run([sys.executable, "-c", RUNNER, str(artifact), str(x_path),
                           str(out_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return np.load(out_path)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, onnxc.Session]:
    """A static-shape MLP, compiled once and saved; (artifact path, the compiled session)."""
    sess = onnxc.compile(mlp(BATCH, SIZES, SEED))
    path = tmp_path_factory.mktemp("artifact") / "mlp.onnxc"
    sess.save(path)
    return path, sess


def test_artifact_runs_in_a_fresh_process(artifact, tmp_path: Path) -> None:
    path, sess = artifact
    x = make_x(BATCH)
    (expected,) = sess.run(None, {"x": x})
    np.testing.assert_allclose(expected, mlp_reference(x, SIZES, SEED), rtol=1e-5, atol=1e-5)
    got = run_in_fresh_process(path, x, tmp_path)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_artifact_loads_in_process(artifact) -> None:
    path, sess = artifact
    loaded = onnxc.load(path)
    assert loaded.get_inputs() == sess.get_inputs()
    assert loaded.get_outputs() == sess.get_outputs()
    assert [k["name"] for k in loaded.describe()["kernels"]] == \
        [k["name"] for k in sess.describe()["kernels"]]
    x = make_x(BATCH, seed=1)
    np.testing.assert_array_equal(loaded.run(None, {"x": x})[0], sess.run(None, {"x": x})[0])
    # A static artifact holds no model: another batch size is a clear InputError.
    with pytest.raises(onnxc.InputError):
        loaded.run(None, {"x": make_x(BATCH + 1)})


# -- damaged and foreign files ------------------------------------------------------------------
def _damaged(tmp_path: Path, data: bytes, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_flipped_bytes_in_the_middle_are_an_artifact_error(artifact, tmp_path: Path) -> None:
    data = bytearray(artifact[0].read_bytes())
    middle = len(data) // 2
    for k in range(middle - 4, middle + 4):
        data[k] ^= 0xFF
    with pytest.raises(onnxc.ArtifactError):
        onnxc.load(_damaged(tmp_path, bytes(data), "flipped.onnxc"))


def _zip_header_positions(data: bytes) -> list[int]:
    """Every byte of the zip bookkeeping: each entry's local header, the central directory
    and the end record (the data between them is covered by the per-entry checksums)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = z.infolist()
    positions = []
    for info in infos:
        local_header = 30 + len(info.filename.encode()) + len(info.extra)
        positions += range(info.header_offset, info.header_offset + local_header)
    end = data.rfind(b"PK\x05\x06")
    central = struct.unpack("<I", data[end + 16:end + 20])[0]
    return positions + list(range(central, len(data)))


def test_any_single_flipped_byte_is_caught_or_harmless(artifact, tmp_path: Path) -> None:
    """Flip one byte of every zip header byte and 64 spread data bytes: the load either raises
    ArtifactError or (an unchecked header field such as a timestamp) gives the same answer;
    never another exception."""
    path, sess = artifact
    original = path.read_bytes()
    x = make_x(BATCH, seed=2)
    (expected,) = sess.run(None, {"x": x})
    spread = np.linspace(0, len(original) - 1, 64).astype(int).tolist()
    leaks = {}
    for pos in sorted(set(spread + _zip_header_positions(original))):
        data = bytearray(original)
        data[pos] ^= 0x5A
        damaged = _damaged(tmp_path, bytes(data), "one_flip.onnxc")
        try:
            loaded = onnxc.load(damaged)
        except onnxc.ArtifactError:
            continue
        except Exception as exc:  # noqa: BLE001 - collected, reported below
            leaks.setdefault(f"{type(exc).__name__}: {exc}", []).append(pos)
            continue
        np.testing.assert_array_equal(loaded.run(None, {"x": x})[0], expected,
                                      err_msg=f"byte {pos} flipped")
    assert not leaks, "not an ArtifactError:\n" + "\n".join(
        f"  {msg} (byte(s) {where[:5]}{' ...' if len(where) > 5 else ''})"
        for msg, where in leaks.items())


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_artifact_is_an_artifact_error(artifact, tmp_path: Path, keep: float) -> None:
    data = artifact[0].read_bytes()
    with pytest.raises(onnxc.ArtifactError):
        onnxc.load(_damaged(tmp_path, data[:int(len(data) * keep)], "truncated.onnxc"))


def test_non_artifact_files_are_an_artifact_error(tmp_path: Path) -> None:
    text = _damaged(tmp_path, b"just some text\n" * 10, "text.onnxc")
    model = _damaged(tmp_path, mlp(BATCH, SIZES, SEED).SerializeToString(), "model.onnx")
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("hello.txt", "not an artifact")
    foreign_manifest = tmp_path / "foreign.onnxc"
    with zipfile.ZipFile(foreign_manifest, "w") as z:
        z.writestr("manifest.json", json.dumps({"format": "something-else", "version": 1}))
    for path in (text, model, other_zip, foreign_manifest, tmp_path / "absent.onnxc"):
        with pytest.raises(onnxc.ArtifactError):
            onnxc.load(path)


# -- symbolic batch dimension -------------------------------------------------------------------
def test_symbolic_batch_compiles_runs_saves_and_reloads(tmp_path: Path) -> None:
    sess = onnxc.compile(mlp("N", SIZES, SEED))
    assert sess.get_inputs()[0].shape == ["N", SIZES[0]]
    assert sess.get_outputs()[0].shape == ["N", SIZES[-1]]
    for batch in (1, 3):
        x = make_x(batch, seed=batch)
        (got,) = sess.run(None, {"x": x})
        assert got.shape == (batch, SIZES[-1])
        np.testing.assert_allclose(got, mlp_reference(x, SIZES, SEED), rtol=1e-5, atol=1e-5)

    path = tmp_path / "mlp_n.onnxc"
    sess.save(path)
    loaded = onnxc.load(path)
    assert loaded.get_inputs()[0].shape == ["N", SIZES[0]]
    for batch in (3, 5, 1):  # 5 is compiled anew, from the model kept in the artifact
        x = make_x(batch, seed=10 + batch)
        (got,) = loaded.run(None, {"x": x})
        assert got.shape == (batch, SIZES[-1])
        np.testing.assert_allclose(got, mlp_reference(x, SIZES, SEED), rtol=1e-5, atol=1e-5)

    x = make_x(7, seed=7)
    got = run_in_fresh_process(path, x, tmp_path)
    np.testing.assert_allclose(got, mlp_reference(x, SIZES, SEED), rtol=1e-5, atol=1e-5)
