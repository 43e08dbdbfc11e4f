"""A dataset file is data only: an .h5 whose arrays live outside the file (external raw storage, a
virtual layout, links) or pass through filters h5py does not write is refused before a byte is read,
and no file declares more bytes than the loader's limit, however small it is itself."""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.support.paths import REPO_ROOT
from trainer.data.loader import REQUIRED_KEYS, DatasetError, key_problem, load_raw

MARKER = b"LNN-MARKER-" * 40  # the bytes of a file of the function's machine that must stay there


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {
        "train_set_x": rng.normal(size=(40, 6)),
        "train_set_y": (rng.random(40) > 0.5).astype(np.int64),
        "test_set_x": rng.normal(size=(10, 6)),
        "test_set_y": (rng.random(10) > 0.5).astype(np.int64),
    }


def _h5(path: Path, special: str, make) -> Path:
    """An .h5 with the four arrays, `special` written by `make(handle, name)` instead."""
    with h5py.File(path, "w") as handle:
        for key, value in _arrays().items():
            if key == special:
                make(handle, key)
            else:
                handle.create_dataset(key, data=value)
    return path


def _loads_from_bytes_and_path(path: Path):
    """load_raw on the file as an s3:// object's bytes (as LaunchLambda reads it) and as a path."""
    blob = path.read_bytes()
    for source, reader in (("s3://bucket/datasets/x.h5", lambda bucket, key, limit: blob), (str(path), None)):
        yield lambda source=source, reader=reader: load_raw(source, reader)


def _holds_marker(arrays: dict[str, np.ndarray]) -> bool:
    return any(MARKER[:16] in np.ascontiguousarray(a).tobytes() for a in arrays.values())


def test_external_storage_is_refused_and_no_array_holds_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "environ"
    marker.write_bytes(MARKER)
    path = _h5(
        tmp_path / "external.h5",
        "train_set_x",
        lambda h, k: h.create_dataset(k, shape=(40, 6), dtype="u1", external=[(str(marker), 0, 240)]),
    )
    for load in _loads_from_bytes_and_path(path):
        with pytest.raises(DatasetError, match=r"'train_set_x' keeps its data in external files") as info:
            _holds_marker(load())
        assert MARKER[:16].decode() not in str(info.value)


def test_virtual_datasets_and_links_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "other.h5"
    with h5py.File(source, "w") as handle:
        handle.create_dataset("data", data=np.frombuffer(MARKER[:240], np.uint8).reshape(40, 6))

    def virtual(handle, key):
        layout = h5py.VirtualLayout(shape=(40, 6), dtype="u1")
        layout[:] = h5py.VirtualSource(str(source), "data", shape=(40, 6))
        handle.create_virtual_dataset(key, layout)

    cases = {
        "virtual layout": virtual,
        "ExternalLink": lambda h, k: h.__setitem__(k, h5py.ExternalLink(str(source), "data")),
        "SoftLink": lambda h, k: (
            h.create_dataset("elsewhere", data=_arrays()[k]),
            h.__setitem__(k, h5py.SoftLink("/elsewhere")),
        ),
    }
    for index, (problem, make) in enumerate(cases.items()):
        path = _h5(tmp_path / f"case{index}.h5", "train_set_x", make)
        for load in _loads_from_bytes_and_path(path):
            with pytest.raises(DatasetError, match=rf"'train_set_x' .*{problem}"):
                _holds_marker(load())


def test_only_the_filters_h5py_writes_are_read(tmp_path: Path) -> None:
    path = _h5(
        tmp_path / "scaled.h5",
        "test_set_x",
        lambda h, k: h.create_dataset(k, data=_arrays()[k], scaleoffset=2),
    )
    for load in _loads_from_bytes_and_path(path):
        with pytest.raises(DatasetError, match=r"'test_set_x' uses filters scaleoffset \(6\)"):
            load()
    usual = _h5(
        tmp_path / "usual.h5",
        "train_set_x",
        lambda h, k: h.create_dataset(k, data=_arrays()[k], compression="gzip", shuffle=True, fletcher32=True),
    )
    for load in _loads_from_bytes_and_path(usual):
        assert np.array_equal(load()["train_set_x"], _arrays()["train_set_x"])


def _huge_h5(path: Path) -> Path:
    """A few KB declaring a 2**33-byte array (chunks never written take no room in the file)."""
    return _h5(path, "train_set_x", lambda h, k: h.create_dataset(k, shape=(2**24, 64), dtype="f8", chunks=(1, 64)))


def _huge_npz(path: Path) -> Path:
    """A few KB whose compressed member's header declares a 2**33-byte array."""
    arrays = io.BytesIO()
    np.savez(arrays, **{k: v for k, v in _arrays().items() if k != "train_set_x"})
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**24, 64)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out, zipfile.ZipFile(arrays) as small:
        for name in small.namelist():
            out.writestr(name, small.read(name))
        out.writestr("train_set_x.npy", header.getvalue() + bytes(4096))
    return path


def test_a_small_file_declaring_a_huge_shape_is_refused_under_a_memory_bound(tmp_path: Path) -> None:
    """Refused by its header, in a process that could not hold the array anyway (1 GiB of address
    space): the refusal names the size, where reading would have failed for want of memory."""
    files = [_huge_h5(tmp_path / "huge.h5"), _huge_npz(tmp_path / "huge.npz")]
    assert all(f.stat().st_size < 64 * 1024 for f in files)
    script = textwrap.dedent(
        """
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from trainer.data.loader import DatasetError, load_raw
        out = []
        for path in sys.argv[1:]:
            blob = open(path, "rb").read()
            for source, reader in ((path, None), ("s3://b/datasets/" + path.rsplit("/", 1)[1], lambda b, k, n: blob)):
                try:
                    load_raw(source, reader)
                    out.append("read")
                except DatasetError as exc:
                    out.append(str(exc))
        print(json.dumps(out))
        """
    )
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, files)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    messages = json.loads(done.stdout.splitlines()[-1])
    assert len(messages) == 4
    for message in messages:
        assert f"'train_set_x' declares shape (16777216, 64) of {2**33} bytes, more than the" in message, message
    assert resource.getrlimit(resource.RLIMIT_AS)[0] != 1 << 30  # the bound was the child's alone


def test_declared_sizes_are_checked_against_the_given_limit(tmp_path: Path) -> None:
    zeros = np.zeros((40, 600))  # compressed to far fewer bytes than it declares
    path = _h5(tmp_path / "ok.h5", "train_set_x", lambda h, k: h.create_dataset(k, data=zeros, compression="gzip"))
    total = sum(v.nbytes for v in {**_arrays(), "train_set_x": zeros}.values())
    assert path.stat().st_size < total - 1
    assert set(load_raw(str(path), limit=total)) == set(REQUIRED_KEYS)
    with pytest.raises(DatasetError, match=f"declare {total} bytes together, more than the {total - 1} bytes"):
        load_raw(str(path), limit=total - 1)
    with pytest.raises(DatasetError, match="larger than the 100 bytes allowed"):
        load_raw(str(path), limit=100)  # the file itself, before it is opened
    with pytest.raises(DatasetError, match=rf"'train_set_x' declares shape \(40, 600\) of {zeros.nbytes} bytes"):
        load_raw(str(path), limit=zeros.nbytes - 1)


def test_the_function_memory_bounds_the_limit(monkeypatch, tmp_path: Path) -> None:
    path = _h5(tmp_path / "ok.h5", "", lambda h, k: None)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    blob = path.read_bytes()
    seen: list[int] = []
    load_raw("s3://b/datasets/ok.h5", lambda b, k, limit: seen.append(limit) or blob)
    assert seen == [64 * 1024**2]


@pytest.mark.parametrize(
    ("key", "fine"),
    [
        ("datasets/cats.h5", True),
        ("datasets/sub/cats.h5", True),
        ("models/run/model.npz", False),
        ("checkpoints/run/epoch-000001.npz", False),
        ("datasets/", False),
        ("datasets/../models/run/model.npz", False),
        ("datasets/./x.h5", False),
        ("datasetsx/cats.h5", False),
        ("cats.h5", False),
    ],
)
def test_datasets_come_from_their_prefix_only(key: str, fine: bool) -> None:
    assert (key_problem(key, "datasets/") is None) is fine
    if not fine:
        with pytest.raises(DatasetError, match="not under 'datasets/', the bucket's prefix for datasets"):
            load_raw(f"s3://b/{key}", lambda *_: b"", allowed_bucket="b", prefix="datasets/")
