"""An .npz fetched into memory (an s3:// dataset) is read without copying its uncompressed members,
and reads exactly as numpy reads it; a damaged or unfit archive is still a DatasetError."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from trainer.data.loader import REQUIRED_KEYS, DatasetError, load_raw


def _npz(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(out, **arrays)
    return out.getvalue()


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "train_set_x": rng.integers(0, 256, size=(6, 4, 4, 3), dtype=np.uint8),
        "train_set_y": np.asfortranarray(rng.integers(0, 2, size=(1, 6))),
        "test_set_x": rng.normal(size=(3, 48)).astype(">f8"),
        "test_set_y": np.array([0, 1, 1]),
    }


def _from_bytes(blob: bytes) -> dict[str, np.ndarray]:
    return load_raw("s3://bucket/data.npz", lambda bucket, key, limit: blob)


@pytest.mark.parametrize("compressed", [False, True])
def test_members_read_as_numpy_reads_them(compressed: bool) -> None:
    arrays = _arrays()
    blob = _npz(compressed, **arrays)
    got = _from_bytes(blob)
    with np.load(io.BytesIO(blob), allow_pickle=False) as expected:
        for key in REQUIRED_KEYS:
            assert got[key].dtype == expected[key].dtype and got[key].shape == expected[key].shape
            assert np.array_equal(got[key], expected[key]), key
    assert got["train_set_y"].flags.f_contiguous
    # Stored members are views of the fetched bytes, not copies; compressed ones are numpy's arrays.
    assert np.shares_memory(got["train_set_x"], np.frombuffer(blob, np.uint8)) is not compressed


def test_an_empty_member_reads_as_an_empty_array() -> None:
    got = _from_bytes(_npz(**{**_arrays(), "test_set_y": np.zeros((0,))}))
    assert got["test_set_y"].shape == (0,)


def test_a_damaged_member_is_refused_naming_it() -> None:
    blob = bytearray(_npz(**_arrays()))
    body = blob.index(b"test_set_x.npy") + 200  # inside the member's data, past its npy header
    blob[body] ^= 0xFF
    with pytest.raises(DatasetError, match=r"test_set_x.*corrupt"):
        _from_bytes(bytes(blob))


@pytest.mark.parametrize("cut", [0, 30, 200, -200, -40, -1])
def test_a_truncated_archive_is_a_dataset_error(cut: int) -> None:
    blob = _npz(**_arrays())
    with pytest.raises(DatasetError):
        _from_bytes(blob[:cut])


def test_an_object_member_is_refused_without_unpickling() -> None:
    arrays = {**_arrays(), "train_set_x": np.array([{"a": 1}, None], dtype=object)}
    with pytest.raises(DatasetError, match=r"train_set_x.*not a plain numeric array"):
        _from_bytes(_npz(**arrays))


def test_a_member_whose_header_and_size_disagree_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for key, value in _arrays().items():
            npy = io.BytesIO()
            np.save(npy, value)
            data = npy.getvalue()
            archive.writestr(f"{key}.npy", data[:-3] if key == "train_set_x" else data)
    with pytest.raises(DatasetError, match="train_set_x"):
        _from_bytes(out.getvalue())
