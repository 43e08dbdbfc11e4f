"""The PyTorch row: what a user would write instead, run in its own virtual environment (.venv-torch,
`pip install torch==2.13.0`; torch is never in the lock files), as a subprocess of the bench.

    .venv-torch/bin/python tests/performance/torch_train.py <folder>

The folder (written by tests/performance/runs.py) holds the run's description (run.json) and raw
little-endian arrays: the normalised data examples-major, the initial weights and biases, and for
mini-batches the bench's order of the examples in each epoch. Same data, same initial weights, same
batches, same dtype as LNN's run; nn.Linear layers, BCEWithLogitsLoss or CrossEntropyLoss, SGD or
Adam. Prints one JSON object. Only torch and the standard library: the plain torch install.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any


def products(x, first: Any, dtype: Any) -> dict[str, Any]:
    """The first layer's two products as autograd runs them (addmm forward, mm for the weight
    gradient), timed like tests/performance/breakdown.py times LNN's: medians of interleaved rounds."""
    import statistics

    import torch

    w, b = first.weight.detach(), first.bias.detach()
    grad = torch.randn(x.shape[0], w.shape[0], dtype=dtype)
    calls = {"forward": lambda: torch.addmm(b, x, w.t()), "backward": lambda: grad.t().mm(x)}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(15):
        for name, call in calls.items():
            t = time.perf_counter()
            for _ in range(10):
                call()
            samples[name].append((time.perf_counter() - t) / 10 * 1e3)
    config = torch.__config__.show()
    blas = [line.strip() for line in config.splitlines() if "Math Kernel Library" in line or "BLAS_INFO" in line]
    return {
        "products_ms": {name: statistics.median(v) for name, v in samples.items()},
        "blas": [b.split(",")[0].lstrip("- ") for b in blas],
    }


def main(folder: Path) -> int:
    spec = json.loads((folder / "run.json").read_text())
    threads = int(spec["threads"])
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    started = time.perf_counter()
    # The plain install has no numpy, and needs none here: raw files in, JSON out.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    imported = time.perf_counter()
    dtype = {"float64": torch.float64, "float32": torch.float32}[spec["dtype"]]
    features, m, m_test = spec["features"], spec["examples"], spec["test_examples"]

    def load(name: str, count: int, kind: torch.dtype) -> torch.Tensor:
        return torch.from_file(str(folder / f"{name}.bin"), shared=False, size=count, dtype=kind)

    x = load("x_train", features * m, dtype).reshape(m, features)
    x_test = load("x_test", features * m_test, dtype).reshape(m_test, features)
    y_int = load("y_train", m, torch.int64)
    y_test = load("y_test", m_test, torch.int64)
    softmax = spec["activations"][-1] == "softmax"
    y = y_int if softmax else y_int.to(dtype).reshape(m, 1)

    sizes = [features, *spec["neurons"]]
    modules: list[torch.nn.Module] = []
    for i in range(1, len(sizes)):
        linear = torch.nn.Linear(sizes[i - 1], sizes[i], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(load(f"W{i}", sizes[i] * sizes[i - 1], dtype).reshape(sizes[i], sizes[i - 1]))
            linear.bias.copy_(load(f"b{i}", sizes[i], dtype))
        modules.append(linear)
        if i < len(sizes) - 1:
            modules.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*modules)
    loss_fn = torch.nn.CrossEntropyLoss() if softmax else torch.nn.BCEWithLogitsLoss()
    if spec["optimizer"] == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(
            model.parameters(), lr=spec["learning_rate"], betas=(0.9, 0.999), eps=1e-8
        )
    else:
        opt = torch.optim.SGD(model.parameters(), lr=spec["learning_rate"])

    epochs, batch = spec["epochs"], spec["batch_size"]
    order = load("order", epochs * m, torch.int64).reshape(epochs, m) if batch < m else None
    loaded = time.perf_counter()
    costs = []
    for epoch in range(epochs):
        epoch_cost = 0.0
        for start in range(0, m, batch):
            if order is None:
                xb, yb = x, y
            else:
                cols = order[epoch, start : start + batch]
                xb, yb = x.index_select(0, cols), y.index_select(0, cols)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            epoch_cost += loss.item() * (xb.shape[0] / m)
        costs.append(epoch_cost)
    trained = time.perf_counter()
    with torch.no_grad():

        def accuracy(inputs: torch.Tensor, labels: torch.Tensor) -> float:
            out = model(inputs)
            pred = out.argmax(dim=1) if softmax else (out[:, 0] > 0).to(torch.int64)
            return float((pred == labels).to(torch.float64).mean())

        test_acc, train_acc = accuracy(x_test, y_test), accuracy(x, y_int)
    done = time.perf_counter()
    extra = products(x, modules[0], dtype) if spec.get("breakdown") else {}
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "import_s": imported - started,
                "load_s": loaded - imported,
                "train_s": trained - loaded,
                "wall_s": done - imported,
                "costs": costs,
                "final_cost": costs[-1],
                "test_accuracy": test_acc,
                "train_accuracy": train_acc,
                **extra,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
