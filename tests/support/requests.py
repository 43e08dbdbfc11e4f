"""The requests the tests send, built in one place: a network on the built-in moons set, a random
sweep over a base request, and the small run the deploy rehearsals launch through the AWS CLI."""

from __future__ import annotations

from typing import Any


def network(dataset: str, neurons: tuple[int, ...], activations: tuple[str, ...], **fields: Any) -> dict[str, Any]:
    """A training request: layer i has neurons[i-1] units and activations[i-1]; `fields` add to it
    (epochs and learning_rate are required by the request, so callers give them)."""
    assert len(neurons) == len(activations), "one activation per layer"
    return {
        "dataset": dataset,
        "neurons": {f"layer{i}": n for i, n in enumerate(neurons, 1)},
        "activations": {f"layer{i}": a for i, a in enumerate(activations, 1)},
        **fields,
    }


def moons(neurons: tuple[int, ...], activations: tuple[str, ...], **fields: Any) -> dict[str, Any]:
    """A network on the built-in moons set (two features, one sigmoid output in every use here)."""
    return network("moons", neurons, activations, **fields)


def random_sweep(base: dict[str, Any], space: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A random-strategy sweep over `base` (LaunchLambda's `sweep` action); `fields` (trials, seed,
    max_concurrency, sweep_id, early_stopping ...) add to it or replace a default."""
    return {"action": "sweep", "base": base, "space": space, "strategy": "random", **fields}


# The small training run the deploy rehearsals launch through the AWS CLI (tests/integration/
# test_up_down.py, tests/infra/terraform/test_apply_cycle.py): the same run in both, a few seconds
# of training.
REQUEST = moons((8, 1), ("relu", "sigmoid"), epochs=30, learning_rate=0.5, seed=7)


# The run the image's own test drives through the real entry point (tests/infra/images/
# test_image_runtime.py), mirrored by the Go Terratest (tests/infra/terratest checks they agree).
IMAGE_RUN = moons((8, 1), ("relu", "sigmoid"), epochs=40, learning_rate=0.5, seed=7, chain="per_step")


def resumable(epochs: int) -> dict[str, Any]:
    """A run of many invocations with a checkpoint every other epoch: the control plane's and the
    lifecycle's tests fail, resume, cancel and race it (tests/integration/chain)."""
    return moons(
        (6, 1),
        ("relu", "sigmoid"),
        epochs=epochs,
        learning_rate=0.05,
        optimizer="adam",
        batch_size=100,
        checkpoint_every=2,
        max_steps_per_invocation=9,
    )


# A request LaunchLambda accepts, the smallest there is: the base the refusal tests change one field of.
GOOD = moons((4, 1), ("relu", "sigmoid"), epochs=3, learning_rate=0.1)

# Every epoch notified and checkpointed: the exactly-once tests count one message and one
# checkpoint per epoch (tests/integration/chain/test_concurrent_copies.py stepped,
# tests/integration/test_exactly_once_on_lambda.py under the Lambda service's chaos).
EVERY_EPOCH = moons(
    (5, 3, 1), ("relu", "tanh", "sigmoid"), epochs=4, learning_rate=0.05, notify_every=1, checkpoint_every=1
)

# The chain against plain numpy: one small network, changed by each variant (the optimizers, the
# activations, softmax on another data set, float32), stepped (tests/integration/chain/
# test_chain.py) and on the Lambda service (tests/integration/test_chain_on_lambda.py).
CHAIN_SMALL = moons((6, 4, 1), ("relu", "tanh", "sigmoid"), epochs=6, learning_rate=0.05)
CHAIN_VARIANTS: dict[str, dict[str, Any]] = {
    "full-batch-gd": {},
    "minibatch-adam-l2": {"optimizer": "adam", "batch_size": 64, "l2": 0.3, "init": "he"},
    "momentum-leaky": {
        "optimizer": "momentum",
        "activations": {"layer1": "leaky_relu", "layer2": "sigmoid", "layer3": "sigmoid"},
    },
    "softmax-spirals": {
        **network("spirals", (8, 5, 3), ("relu", "relu", "softmax")),
        "batch_size": 100,
        "optimizer": "adam",
        "normalize": "standardize",
    },
    "float32": {"dtype": "float32", "optimizer": "adam", "batch_size": 50},
}


def chain_variant(variant: str, chain: str, **extra: Any) -> dict[str, Any]:
    return {**CHAIN_SMALL, **CHAIN_VARIANTS[variant], "chain": chain, **extra}
