"""The trained model as .npz: weights, biases, activations, normalisation. Loaded without pickle."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from trainer.runconfig import RunConfig


def dumps(config: RunConfig, params: dict[str, np.ndarray], shift: np.ndarray, scale: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {f"W{i}": params[f"W{i}"] for i in range(1, config.layers + 1)}
    arrays |= {f"b{i}": params[f"b{i}"] for i in range(1, config.layers + 1)}
    np.savez(
        buffer,
        **arrays,
        activations=np.array(config.activations),
        shift=shift,
        scale=scale,
        dtype=np.array(config.dtype),
    )
    return buffer.getvalue()


def load(path_or_bytes: str | bytes | Path) -> tuple[list[str], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with np.load(source, allow_pickle=False) as archive:
        activations = [str(a) for a in archive["activations"]]
        params = {k: archive[k] for k in archive.files if k[0] in "Wb" and k[1:].isdigit()}
        return activations, params, archive["shift"], archive["scale"]
