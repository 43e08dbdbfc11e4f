"""What the bench trains: the cat benchmark (or a stand-in with its shapes), the cat set tiled, and an
MNIST-shaped set generated deterministically, with the network and hyper-parameters of each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.loader import load_raw

CAT_H5 = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "catvnoncat.h5"
CAT_NETWORK: dict[str, Any] = {
    "neurons": {"layer1": 20, "layer2": 7, "layer3": 5, "layer4": 1},
    "activations": {"layer1": "relu", "layer2": "relu", "layer3": "relu", "layer4": "sigmoid"},
    "learning_rate": 0.0075,
    "optimizer": "gd",
    "seed": 1,
    "init": "scaled_normal",
}
CAT_EPOCHS = 2500
MNIST_NETWORK: dict[str, Any] = {
    "neurons": {"layer1": 256, "layer2": 128, "layer3": 10},
    "activations": {"layer1": "relu", "layer2": "relu", "layer3": "softmax"},
    "learning_rate": 0.001,
    "optimizer": "adam",
    "batch_size": 128,
    "seed": 1,
    "init": "he",
}
MNIST_EPOCHS = 5
MNIST_SHAPE = {"train": 60_000, "test": 10_000, "side": 28, "classes": 10}


@dataclass(frozen=True)
class Workload:
    name: str
    dataset: str  # a path the loader reads, or a built-in name
    note: str
    network: dict[str, Any]
    epochs: int


def network_shape(network: dict[str, Any]) -> tuple[list[int], list[str]]:
    """(neurons per layer, activation per layer) of a request's network."""
    n = len(network["neurons"])
    return (
        [int(network["neurons"][f"layer{i}"]) for i in range(1, n + 1)],
        [str(network["activations"][f"layer{i}"]) for i in range(1, n + 1)],
    )


def synthetic_cat_like(path: Path, seed: int = 7) -> Path:
    """Stand-in for the cat set where it is absent: the same shapes (209 + 50 images of 64x64x3, uint8)
    with labels from a fixed random linear teacher, so the network has something to learn."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(259, 64, 64, 3), dtype=np.uint8)
    teacher = rng.normal(size=64 * 64 * 3)
    score = (x.reshape(259, -1).astype(np.float64) / 255 - 0.5) @ teacher
    y = (score > np.median(score)).astype(np.int64)
    np.savez(path, train_set_x=x[:209], train_set_y=y[:209], test_set_x=x[209:], test_set_y=y[209:])
    return path


def cat(workdir: Path, epochs: int = CAT_EPOCHS) -> Workload:
    if CAT_H5.exists():
        return Workload("cat", str(CAT_H5), f"the cat/non-cat benchmark ({CAT_H5.name})", CAT_NETWORK, epochs)
    path = synthetic_cat_like(workdir / "synthetic-cat-like.npz")
    note = (
        f"{CAT_H5.name} is absent: a synthetic stand-in with the cat set's shapes "
        "(209 + 50 examples of 12288 uint8 features, labels from a random linear teacher)"
    )
    return Workload("cat", str(path), note, CAT_NETWORK, epochs)


def tiled(source: str, factor: int, path: Path) -> Path:
    """`source` with `factor` times the training examples (copies), the same test set."""
    raw = load_raw(source)
    arrays = {k: np.asarray(v) for k, v in raw.items()}
    arrays["train_set_x"] = np.concatenate([arrays["train_set_x"]] * factor)
    arrays["train_set_y"] = np.concatenate([np.asarray(arrays["train_set_y"]).reshape(-1)] * factor)
    np.savez(path, **arrays)
    return path


def mnist_like(path: Path, train: int = 60_000, test: int = 10_000, seed: int = 2026) -> Path:
    """An MNIST-shaped set: 28x28 uint8 images of 10 classes. Each class has a smooth random template;
    an example blends its class's template with another class's (up to 45%), shifts it by up to two
    pixels and adds pixel noise, so a linear model does well and a hidden layer does better, and
    neither reaches 100%. Same seed, same bytes."""
    classes = MNIST_SHAPE["classes"]
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(classes, 7, 7))
    templates = np.kron(coarse, np.ones((MNIST_SHAPE["side"] // 7,) * 2))  # 28x28 blobs
    templates = (templates - templates.min()) / (templates.max() - templates.min())
    m = train + test
    labels = rng.integers(0, classes, size=m)
    other = (labels + rng.integers(1, classes, size=m)) % classes
    mix = rng.uniform(0.0, 0.45, size=(m, 1, 1))
    images = (1 - mix) * templates[labels] + mix * templates[other]
    shifts = rng.integers(-2, 3, size=(m, 2))
    for dy in range(-2, 3):  # a few rolls of whole groups: cheap, and still per-example shifts
        for dx in range(-2, 3):
            sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            images[sel] = np.roll(images[sel], (dy, dx), axis=(1, 2))
    images = images + rng.normal(scale=0.25, size=images.shape)
    x = np.clip(images * 255, 0, 255).astype(np.uint8)
    np.savez(path, train_set_x=x[:train], train_set_y=labels[:train], test_set_x=x[train:], test_set_y=labels[train:])
    return path


def mnist(workdir: Path, epochs: int = MNIST_EPOCHS, train: int = 60_000, test: int = 10_000) -> Workload:
    path = workdir / f"mnist-like-{train}.npz"
    if not path.exists():
        mnist_like(path, train, test)
    note = f"MNIST-shaped ({train:,} + {test:,} examples of 784 uint8 features, 10 classes; generated, seed 2026)"
    return Workload("mnist", str(path), note, MNIST_NETWORK, epochs)
