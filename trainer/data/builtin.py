"""Built-in datasets generated deterministically from a seed, so a fresh clone can train
without any data file. Same layout as the original's .h5: x (m, features), y (m,)."""

from __future__ import annotations

import numpy as np

BUILTIN_SEED = 20170


def _split(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, test_fraction: float = 0.25
) -> dict[str, np.ndarray]:
    order = rng.permutation(len(y))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return {"train_set_x": x[train], "train_set_y": y[train], "test_set_x": x[test], "test_set_y": y[test]}


def moons(m: int = 400) -> dict[str, np.ndarray]:
    """Two interleaving half circles, binary labels."""
    rng = np.random.default_rng(BUILTIN_SEED)
    half = m // 2
    t_outer = np.linspace(0, np.pi, half)
    t_inner = np.linspace(0, np.pi, m - half)
    x = np.concatenate(
        [
            np.stack([np.cos(t_outer), np.sin(t_outer)], axis=1),
            np.stack([1 - np.cos(t_inner), 0.5 - np.sin(t_inner)], axis=1),
        ]
    )
    x += rng.normal(scale=0.15, size=x.shape)
    y = np.concatenate([np.zeros(half, dtype=np.int64), np.ones(m - half, dtype=np.int64)])
    return _split(x, y, rng)


def spirals(m: int = 600, classes: int = 3) -> dict[str, np.ndarray]:
    """Interleaved arms of a spiral, one class per arm (multi-class)."""
    rng = np.random.default_rng(BUILTIN_SEED + 1)
    per = m // classes
    xs, ys = [], []
    for k in range(classes):
        r = np.linspace(0.05, 1.0, per)
        theta = np.linspace(k * 4.0, (k + 1) * 4.0, per) + rng.normal(scale=0.2, size=per)
        xs.append(np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1))
        ys.append(np.full(per, k, dtype=np.int64))
    return _split(np.concatenate(xs), np.concatenate(ys), rng)


def blobs(m: int = 600, classes: int = 4, features: int = 4) -> dict[str, np.ndarray]:
    """Gaussian clusters around random centres (multi-class)."""
    rng = np.random.default_rng(BUILTIN_SEED + 2)
    centres = rng.uniform(-5, 5, size=(classes, features))
    y = rng.integers(0, classes, size=m)
    x = centres[y] + rng.normal(scale=1.0, size=(m, features))
    return _split(x, y.astype(np.int64), rng)


def circles(m: int = 400) -> dict[str, np.ndarray]:
    """A ring around a disc, binary labels."""
    rng = np.random.default_rng(BUILTIN_SEED + 3)
    y = rng.integers(0, 2, size=m)
    radius = np.where(y == 1, 0.5, 1.0) + rng.normal(scale=0.08, size=m)
    angle = rng.uniform(0, 2 * np.pi, size=m)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return _split(x, y.astype(np.int64), rng)


def scaled(name: str, factor: int) -> dict[str, np.ndarray]:
    """`name` with `factor` times the examples (used to measure how time grows with data)."""
    base = BUILTIN[name]()
    return {key: np.concatenate([value] * factor) for key, value in base.items()}


BUILTIN = {"moons": moons, "spirals": spirals, "blobs": blobs, "circles": circles}
