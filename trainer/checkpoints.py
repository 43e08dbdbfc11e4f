"""Epoch checkpoints in S3: parameters and optimizer state at the end of an epoch, so a run whose
cache state is gone (a replaced cache node) can resume bit-identically from the newest one."""

from __future__ import annotations

import io

import numpy as np

from trainer.ports import BlobStore


def _prefix(run_id: str) -> str:
    return f"checkpoints/{run_id}/"


def save(blob_store: BlobStore, run_id: str, epoch: int, seq: int, tensors: dict[str, np.ndarray]) -> str:
    buffer = io.BytesIO()
    np.savez(
        buffer, **{f"t_{name}": value for name, value in tensors.items()}, seq=np.array(seq), epoch=np.array(epoch)
    )
    return blob_store.put(f"{_prefix(run_id)}epoch-{epoch:06d}.npz", buffer.getvalue())


def latest(blob_store: BlobStore, run_id: str) -> tuple[int, int, dict[str, np.ndarray]] | None:
    """(seq, epoch, tensors) of the newest checkpoint, or None."""
    keys = blob_store.keys(_prefix(run_id))
    if not keys:
        return None
    blob = blob_store.get(max(keys))  # zero-padded epoch numbers sort in order
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        tensors = {name[2:]: archive[name] for name in archive.files if name.startswith("t_")}
        return int(archive["seq"]), int(archive["epoch"]), tensors
