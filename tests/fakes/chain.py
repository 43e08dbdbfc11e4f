"""Driving runs on fakes: requests through LaunchLambda's own entry point, and the events the
invoker was handed through the TrainerLambda's, as Lambda's asynchronous queue delivers them."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from trainer.handlers import launch as launch_handler
from trainer.handlers import trainer as trainer_handler
from trainer.services import Services

REQUEST = {
    "dataset": "moons",
    "neurons": {"layer1": 4, "layer2": 1},
    "activations": {"layer1": "relu", "layer2": "sigmoid"},
    "epochs": 2,
    "learning_rate": 0.5,
    "chain": "per_step",
    "checkpoint_every": 0,
}


class Deadline:
    """A Lambda context's clock: `left_ms` of the invocation's time remaining."""

    def __init__(self, left_ms: int) -> None:
        self.left_ms = left_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.left_ms


def launch(svc: Services, **request: Any) -> str:
    """A run launched as LaunchLambda launches it; its id (unique: the warm caches key by it)."""
    payload = {**REQUEST, "run_id": "u-" + secrets.token_hex(6), **request}
    return launch_handler.launch(payload, svc)["run_id"]


def deliver(svc: Services, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """An event the invoker was handed, to the function it was sent to: the TrainerLambda."""
    return trainer_handler.run(event, context, svc)


def ask(svc: Services, request: dict[str, Any]) -> dict[str, Any]:
    """A user's request to LaunchLambda (a sweep, a resume, a cancel)."""
    return launch_handler.run(request, None, svc)


def drain(svc: Services, copies: int = 1, limit: int = 10_000) -> list[dict[str, Any]]:
    """Deliver every event sent, `copies` times each, until none is left; the results in order."""
    results: list[dict[str, Any]] = []
    while events := svc.invoker.take():
        for event in events:
            for _ in range(copies):
                results.append(deliver(svc, event))
        if len(results) > limit:
            raise AssertionError(f"more than {limit} invocations: a chain that does not end")
    return results


def step_to(svc: Services, run_id: str, seq: int) -> dict[str, Any]:
    """Deliver events until the run's next event is `seq`; that event, sent but not delivered."""
    while True:
        events = svc.invoker.take()
        assert len(events) == 1, f"one event in flight expected, got {events}"
        if events[0]["seq"] == seq:
            return events[0]
        deliver(svc, events[0])


def once_before(obj: Any, method: str, action: Callable[[], Any]) -> list[Any]:
    """Run `action` once, just before the next call of `obj.method` (another copy's move landing
    between this copy's read and its write); what the action answered, in a list."""
    original = getattr(obj, method)
    answered: list[Any] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        setattr(obj, method, original)
        answered.append(action())
        return original(*args, **kwargs)

    setattr(obj, method, wrapped)
    return answered
