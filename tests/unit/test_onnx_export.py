"""`lnn export --onnx`: onnxruntime, given raw features, gives what LNN's own forward pass and
`predict` give, for every hidden activation, both output layers and both dtypes."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

from trainer import engine, onnx_export
from trainer.data import normalize
from trainer.nn import layers
from trainer.nn.activations import FORWARD


def _model(hidden: str, output: str, dtype: str, rng: np.random.Generator):
    sizes = [6, 5, 4, 1 if output == "sigmoid" else 3]
    params = {}
    for layer in range(1, len(sizes)):
        params[f"W{layer}"] = rng.normal(0, 0.8, (sizes[layer], sizes[layer - 1])).astype(dtype)
        params[f"b{layer}"] = rng.normal(0, 0.3, (sizes[layer], 1)).astype(dtype)
    activations = [hidden, hidden, output]
    stats = {"shift": rng.normal(0, 10, (6, 1)), "scale": rng.uniform(1, 50, (6, 1))}
    return activations, params, stats


def _lnn(activations, params, stats, raw, dtype):
    """LNN's own forward pass, output activation applied, examples as rows."""
    a = normalize.apply(stats, raw, dtype)
    for layer in range(1, len(activations) + 1):
        a = layers.forward(a, params[f"W{layer}"], params[f"b{layer}"], activations[layer - 1], False)
    return a.T, engine.predict(activations, params, normalize.apply(stats, raw, dtype)).ravel()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
@pytest.mark.parametrize("hidden", ["relu", "leaky_relu", "tanh", "sigmoid"])
def test_onnxruntime_matches_lnn(hidden: str, output: str, dtype: str, tmp_path) -> None:
    assert hidden in FORWARD
    rng = np.random.default_rng(7)
    activations, params, stats = _model(hidden, output, dtype, rng)
    raw = rng.normal(0, 40, (300, 6))
    path = tmp_path / "model.onnx"
    onnx_export.write(str(path), activations, params, stats["shift"], stats["scale"])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities, classes = session.run(["probabilities", "class"], {"features": raw})
    expected, predicted = _lnn(activations, params, stats, raw, dtype)
    assert probabilities.dtype == np.dtype(dtype)
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
    assert classes.tolist() == predicted.tolist()
