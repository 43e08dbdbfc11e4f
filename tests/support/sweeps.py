"""The chain sweeps' shared parts (tests/integration/chain: test_sweeps.py, test_sweep_scheduling.py):
their base request and request builder, a launch on a stack with earlier hand-offs forgotten, and
delivery of everything held, in order or at random, once or in copies."""

from __future__ import annotations

import random
from typing import Any

from tests.support.chain import ChainStack
from tests.support.requests import moons, random_sweep

BASE = moons(
    (6, 1),
    ("tanh", "sigmoid"),
    epochs=12,
    learning_rate=0.05,
    optimizer="adam",
    batch_size=100,
    max_steps_per_invocation=25,
)


def sweep_request(**extra: Any) -> dict[str, Any]:
    defaults = {
        "base": BASE,
        "space": {"learning_rate": {"log_uniform": [0.001, 0.3]}, "neurons.layer1": [2, 6]},
        "trials": 6,
        "seed": 3,
        "max_concurrency": 2,
        "validation_fraction": 0.25,
        "early_stopping": {"asha": {"min_epochs": 2, "reduction_factor": 2}},
    }
    return random_sweep(**defaults | extra)


def deliver(stack: ChainStack, rng: random.Random | None = None, copies: int = 1) -> dict[str, int]:
    """Deliver until nothing is held: in random order and `copies` times each (one after the other,
    the event kept held for the next) when asked."""
    counts = {"deliveries": 0, "max_running": 0}
    while held := stack.held():
        event = held[rng.randrange(len(held)) if rng else 0]
        for copy in range(copies):
            delivery = stack.deliver(event["request_id"], keep=copy < copies - 1)
            assert not delivery.failed, delivery.errors
            counts["deliveries"] += 1
        running = {e["payload"]["run_id"] for e in stack.held()}
        counts["max_running"] = max(counts["max_running"], len(running))
    return counts


def launch(stack: ChainStack, payload: dict[str, Any]) -> dict[str, Any]:
    """LaunchLambda, the hand-offs of earlier tests forgotten."""
    stack.drop_all()
    return stack.launch(payload)
