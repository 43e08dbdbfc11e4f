"""Epoch checkpoints in S3: parameters and optimizer state at the end of an epoch, so a run whose
cache state is gone (a replaced cache node) can resume bit-identically from the newest one.

A checkpoint's bytes depend on its tensors only (its archive members carry a fixed date), so every
copy that writes one writes the same bytes, and the sha256 recorded in the run's item beside it
holds whichever copy wrote last. A resume loads only a checkpoint whose bytes match that digest.
"""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np

from trainer import keys
from trainer.ports import BlobStore

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip member can carry


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted: its bytes do not match the digest recorded for it."""


epoch_of = keys.checkpoint_epoch


def dumps(epoch: int, seq: int, tensors: dict[str, np.ndarray]) -> bytes:
    """An .npz (np.load reads it) whose bytes are a function of its contents: np.savez stamps
    each member with the time of writing, so two writes of one checkpoint would differ."""
    members = {**{f"t_{name}": value for name, value in tensors.items()}, "seq": np.array(seq)}
    members["epoch"] = np.array(epoch)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(members):
            array = io.BytesIO()
            np.lib.format.write_array(array, np.asanyarray(members[name]), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_DATE), array.getvalue())
    return buffer.getvalue()


def digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def save(blob_store: BlobStore, run_id: str, epoch: int, seq: int, tensors: dict[str, np.ndarray]) -> str:
    """Write the checkpoint; its sha256, for the run's item."""
    blob = dumps(epoch, seq, tensors)
    blob_store.put(keys.checkpoint_key(run_id, epoch), blob)
    return digest(blob)


def latest_key(blob_store: BlobStore, run_id: str) -> str | None:
    found = blob_store.keys(keys.checkpoint_prefix(run_id))
    return max(found) if found else None  # zero-padded epoch numbers sort in order


def load(blob_store: BlobStore, key: str, expected_sha256: str | None) -> tuple[int, int, dict[str, np.ndarray]]:
    """(seq, epoch, tensors) of the checkpoint at `key`, or CheckpointError if its bytes are not
    the ones recorded when it was written (changed, truncated, or written by something else)."""
    blob = blob_store.get(key)
    if expected_sha256 is None:
        raise CheckpointError(f"checkpoint {key} has no digest recorded in the run's item; it cannot be checked")
    if digest(blob) != expected_sha256:
        raise CheckpointError(f"checkpoint {key} does not match the sha256 recorded when it was written")
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        tensors = {name[2:]: archive[name] for name in archive.files if name.startswith("t_")}
        return int(archive["seq"]), int(archive["epoch"]), tensors


def latest(blob_store: BlobStore, run_id: str) -> tuple[int, int, dict[str, np.ndarray]] | None:
    """(seq, epoch, tensors) of the newest checkpoint, unchecked, or None (for the tests' reads;
    a resume goes through `load`, which checks)."""
    key = latest_key(blob_store, run_id)
    if key is None:
        return None
    with np.load(io.BytesIO(blob_store.get(key)), allow_pickle=False) as archive:
        tensors = {name[2:]: archive[name] for name in archive.files if name.startswith("t_")}
        return int(archive["seq"]), int(archive["epoch"]), tensors
