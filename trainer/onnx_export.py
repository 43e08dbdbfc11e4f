"""A trained model as an ONNX graph that takes what `lnn predict` takes: raw features, one example
per row. The normalisation is part of the graph, done in float64 as LNN does it, then the layers in
the model's own dtype; the graph gives the output layer's probabilities and the predicted class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

OPSET = 17
_HIDDEN = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "leaky_relu": "LeakyRelu"}


def build(activations: list[str], params: dict[str, np.ndarray], shift: np.ndarray, scale: np.ndarray) -> Any:
    """The ONNX model (onnx.ModelProto) for these layers and statistics."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from trainer.nn.activations import LEAKY_SLOPE

    dtype = params["W1"].dtype
    elem = {np.dtype(np.float64): TensorProto.DOUBLE, np.dtype(np.float32): TensorProto.FLOAT}[dtype]
    features = shift.shape[0]
    inits = [
        numpy_helper.from_array(shift.reshape(1, features).astype(np.float64), "shift"),
        numpy_helper.from_array(scale.reshape(1, features).astype(np.float64), "scale"),
    ]
    nodes = [
        helper.make_node("Sub", ["features", "shift"], ["shifted"]),
        helper.make_node("Div", ["shifted", "scale"], ["normalized"]),
        helper.make_node("Cast", ["normalized"], ["a0"], to=elem),
    ]
    count = len(activations)
    for layer in range(1, count + 1):
        w, b = params[f"W{layer}"], params[f"b{layer}"]
        inits += [numpy_helper.from_array(w, f"W{layer}"), numpy_helper.from_array(b.reshape(-1), f"b{layer}")]
        # Rows are examples here, so A·Wᵀ + b is the layer's W·A + b of the column layout.
        nodes.append(helper.make_node("Gemm", [f"a{layer - 1}", f"W{layer}", f"b{layer}"], [f"z{layer}"], transB=1))
        if layer < count:
            kind = activations[layer - 1]
            extra: dict[str, Any] = {"alpha": LEAKY_SLOPE} if kind == "leaky_relu" else {}
            nodes.append(helper.make_node(_HIDDEN[kind], [f"z{layer}"], [f"a{layer}"], **extra))
    nodes += _output_nodes(activations[-1], f"z{count}")
    classes = params[f"W{count}"].shape[0]
    graph = helper.make_graph(
        nodes,
        "lnn",
        [helper.make_tensor_value_info("features", TensorProto.DOUBLE, ["examples", features])],
        [
            helper.make_tensor_value_info("probabilities", elem, ["examples", classes]),
            helper.make_tensor_value_info("class", TensorProto.INT64, ["examples"]),
        ],
        inits,
    )
    # IR version 8 is opset 17's own: runtimes older than the onnx package still load it.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lnn", ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def _output_nodes(activation: str, z: str) -> list[Any]:
    from onnx import TensorProto, helper

    if activation == "sigmoid":
        # The class as `predict` decides it: sigmoid(z) > 0.5 exactly when z > 0.
        return [
            helper.make_node("Sigmoid", [z], ["probabilities"]),
            helper.make_node("Constant", [], ["zero"], value_float=0.0),
            helper.make_node("CastLike", ["zero", z], ["zero_like"]),
            helper.make_node("Greater", [z, "zero_like"], ["positive"]),
            helper.make_node("Cast", ["positive"], ["positive_int"], to=TensorProto.INT64),
            helper.make_node("Constant", [], ["column"], value_ints=[1]),
            helper.make_node("Squeeze", ["positive_int", "column"], ["class"]),
        ]
    return [
        helper.make_node("Softmax", [z], ["probabilities"], axis=1),
        helper.make_node("ArgMax", [z], ["class"], axis=1, keepdims=0),
    ]


def write(
    path: str, activations: list[str], params: dict[str, np.ndarray], shift: np.ndarray, scale: np.ndarray
) -> None:
    import onnx

    onnx.save(build(activations, params, shift, scale), path)
