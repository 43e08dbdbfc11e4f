"""Where an epoch of the cat benchmark goes, LNN against PyTorch, and how far each way of calling
BLAS for the two big products gets: the part of the bench that says what binds the PyTorch ratio.

An epoch of the cat network is dominated by two products with the training set X (features x
examples, 12288 x 209): the first layer's forward W1·X and its weight gradient dZ1·Xᵀ. The rest
(the three small layers, the loss, the element-wise work, the updates) is measured as the epoch
minus those two. For each product the alternatives within numpy and scipy are timed on LNN's own
data and shapes: the layouts, preallocated `out=` buffers, and scipy.linalg.blas's gemm called
with transpose flags (no copies; scipy ships a BLAS build of its own). Every timing is the median
of rounds that interleave the alternatives, so other load on the machine hits them alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tests.performance import runs
from trainer.data.loader import load_raw, prepare
from trainer.nn import layers, monolithic
from trainer.nn.init import initialise

ROUNDS = 15
CALLS_PER_ROUND = 10


def interleaved(options: dict[str, Callable[[], Any]], rounds: int = ROUNDS) -> dict[str, float]:
    """Milliseconds per call of each option: the median over rounds that run every option in turn."""
    samples: dict[str, list[float]] = {name: [] for name in options}
    for _ in range(rounds):
        for name, call in options.items():
            t = time.perf_counter()
            for _ in range(CALLS_PER_ROUND):
                call()
            samples[name].append((time.perf_counter() - t) / CALLS_PER_ROUND * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def blas_libraries() -> list[dict[str, Any]]:
    """The BLAS and OpenMP libraries loaded in this process and their thread counts (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "version", "num_threads", "architecture", "filepath")
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info()]


def product_options(x: np.ndarray, w: np.ndarray, dz: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-call ms of W1·X and dZ1·Xᵀ, each way. x is the trainer's layout (examples-major)."""
    from scipy.linalg import blas

    gemm = blas.sgemm if x.dtype == np.float32 else blas.dgemm
    x_features_major = np.ascontiguousarray(x)  # the codec's row-major layout
    out_mh = np.empty((x.shape[1], w.shape[0]), dtype=x.dtype)
    out_hn = np.empty((dz.shape[0], x.shape[0]), dtype=x.dtype)
    forward = interleaved(
        {
            "trainer/nn now: (Xᵀ·W1ᵀ)ᵀ, examples-major X": lambda: layers.weighted(w, x),
            "numpy W1 @ X, examples-major X (before)": lambda: w @ x,
            "numpy W1 @ X, features-major X": lambda: w @ x_features_major,
            "numpy (Xᵀ·W1ᵀ)ᵀ into an out= buffer": lambda: np.ascontiguousarray(np.matmul(x.T, w.T, out=out_mh).T),
            "scipy.linalg.blas gemm, trans flags": lambda: gemm(1.0, w.T, x, trans_a=1),
        }
    )
    backward = interleaved(
        {
            "trainer/nn now: dZ1 @ Xᵀ, examples-major X": lambda: layers.weight_gradient(dz, x),
            "numpy (X·dZ1ᵀ)ᵀ": lambda: (x @ dz.T).T,
            "numpy dZ1 @ Xᵀ, features-major X": lambda: dz @ x_features_major.T,
            "numpy dZ1 @ Xᵀ into an out= buffer": lambda: np.matmul(dz, x.T, out=out_hn),
            "scipy.linalg.blas gemm, trans flags": lambda: gemm(1.0, x, dz.T).T,
        }
    )
    return {"forward": forward, "backward": backward}


def lnn(dataset: str, network: dict[str, Any], dtype: str, epochs: int) -> dict[str, Any]:
    """LNN's epoch (the monolithic trainer: the same trainer/nn functions as the chain's steps, with
    nothing around them) split into the two products and the rest, and the options for each."""
    request = runs.training_request(dataset, network, epochs, dtype)
    ds = prepare(load_raw(dataset), request.normalize, dtype)
    params = initialise([ds.features, *request.neuron_list()], request.init, request.seed, dtype)
    x = np.asfortranarray(ds.x_train)  # the trainer's layout (engine.TrainData)
    walls = []
    for _ in range(2):
        t = time.perf_counter()
        monolithic.train(x, ds.y_train, params, request.activation_list(), epochs, request.learning_rate)
        walls.append(time.perf_counter() - t)
    epoch_ms = min(walls) / epochs * 1e3
    dz = np.random.default_rng(0).standard_normal((params["W1"].shape[0], x.shape[1])).astype(dtype)
    options = product_options(x, params["W1"], dz)
    forward_ms = options["forward"]["trainer/nn now: (Xᵀ·W1ᵀ)ᵀ, examples-major X"]
    backward_ms = options["backward"]["trainer/nn now: dZ1 @ Xᵀ, examples-major X"]
    best_forward, best_backward = min(options["forward"].values()), min(options["backward"].values())
    return {
        "dtype": dtype,
        "epochs": epochs,
        "epoch_ms": epoch_ms,
        "forward_ms": forward_ms,
        "backward_ms": backward_ms,
        "rest_ms": epoch_ms - forward_ms - backward_ms,
        "options_ms": options,
        "epoch_ms_with_best_options": epoch_ms - forward_ms - backward_ms + best_forward + best_backward,
        "blas": blas_libraries(),
    }


def section(dataset: str, network: dict[str, Any], dtypes: list[str], epochs: int, threads: int, workdir: Any) -> dict:
    """Per dtype: LNN's breakdown and PyTorch's (the same epochs, and its two products timed alike)."""
    rows = []
    for dtype in dtypes:
        row: dict[str, Any] = {"lnn": lnn(dataset, network, dtype, epochs)}
        if runs.torch_python() is not None:
            torch = runs.run_torch(dataset, network, epochs, dtype, threads, workdir, breakdown=True)
            epoch_ms = torch["train_s"] / epochs * 1e3
            row["torch"] = {
                "epoch_ms": epoch_ms,
                "forward_ms": torch["products_ms"]["forward"],
                "backward_ms": torch["products_ms"]["backward"],
                "rest_ms": epoch_ms - torch["products_ms"]["forward"] - torch["products_ms"]["backward"],
                "blas": torch["blas"],
            }
            row["epoch_ratio"] = row["lnn"]["epoch_ms"] / epoch_ms
            row["epoch_ratio_with_best_options"] = row["lnn"]["epoch_ms_with_best_options"] / epoch_ms
        rows.append(row)
    return {"epochs": epochs, "threads": threads, "rows": rows}
