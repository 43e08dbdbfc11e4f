"""The LNN state machine of the original notes, as pure functions: event in, next event out.

    start(epoch) -> forward 1..L -> forward L+1 (the loss) -> backward L..1 -> next batch's
    forward 1, or next epoch's start, or finish.

Every event is also addressable by its sequence number, so a step can be checked against the
run's plan (no foreign, replayed-out-of-plan or runaway events) without any stored state.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from trainer.errors import EventError
from trainer.request import RUN_ID_PATTERN
from trainer.vocabulary import RunStatus


class State(StrEnum):
    """A step's kind; the value is what an event carries on the wire."""

    START = "start"
    FORWARD = "forward"  # layers 1..L, then the loss at layer L+1
    BACKWARD = "backward"
    FINISH = "finish"


STATES = tuple(State)
EVENT_KEYS = ("state", "run_id", "epoch", "layer", "batch", "seq")


@dataclass(frozen=True)
class Plan:
    layers: int
    epochs: int
    batches: int

    @property
    def steps_per_batch(self) -> int:
        return 2 * self.layers + 1

    @property
    def steps_per_epoch(self) -> int:
        return 1 + self.batches * self.steps_per_batch

    @property
    def total_steps(self) -> int:
        """Every step of the run, finish included; the last event's seq is total_steps - 1."""
        return self.epochs * self.steps_per_epoch + 1


@dataclass(frozen=True)
class Event:
    state: State
    run_id: str
    epoch: int
    layer: int
    batch: int
    seq: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.state}(epoch={self.epoch}, layer={self.layer}, batch={self.batch}, seq={self.seq})"


def parse_event(payload: Any) -> Event:
    """A trainer event from its JSON form, or EventError naming what is wrong."""
    if not isinstance(payload, dict):
        raise EventError(f"trainer event must be a JSON object, got {type(payload).__name__}")
    problems = []
    missing = [k for k in EVENT_KEYS if k not in payload]
    unknown = [k for k in payload if k not in EVENT_KEYS]
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown keys: {', '.join(map(str, unknown))}")
    state, run_id = payload.get("state"), payload.get("run_id")
    if "state" in payload and state not in STATES:
        problems.append(f"state {state!r} is not one of {', '.join(STATES)}")
    if "run_id" in payload and (not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id)):
        problems.append("run_id is not a valid run id")
    for key in ("epoch", "layer", "batch", "seq"):
        value = payload.get(key)
        if key in payload and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**40):
            problems.append(f"{key} must be a non-negative integer")
    if problems:
        raise EventError("invalid trainer event: " + "; ".join(problems))
    return Event(
        State(payload["state"]), payload["run_id"], payload["epoch"], payload["layer"], payload["batch"], payload["seq"]
    )


def first_event(run_id: str) -> Event:
    return Event(State.START, run_id, 0, 0, 0, 0)


def next_event(plan: Plan, event: Event) -> Event | None:
    """The transition function. None after finish: a run never steps past its plan."""
    seq = event.seq + 1
    if event.state == State.START:
        return Event(State.FORWARD, event.run_id, event.epoch, 1, 0, seq)
    if event.state == State.FORWARD:
        if event.layer <= plan.layers:
            return Event(State.FORWARD, event.run_id, event.epoch, event.layer + 1, event.batch, seq)
        return Event(State.BACKWARD, event.run_id, event.epoch, plan.layers, event.batch, seq)
    if event.state == State.BACKWARD:
        if event.layer > 1:
            return Event(State.BACKWARD, event.run_id, event.epoch, event.layer - 1, event.batch, seq)
        if event.batch + 1 < plan.batches:
            return Event(State.FORWARD, event.run_id, event.epoch, 1, event.batch + 1, seq)
        if event.epoch + 1 < plan.epochs:
            return Event(State.START, event.run_id, event.epoch + 1, 0, 0, seq)
        return Event(State.FINISH, event.run_id, event.epoch, 0, 0, seq)
    return None


def event_at(plan: Plan, run_id: str, seq: int) -> Event:
    """The event with sequence number `seq` in the plan (inverse of walking next_event)."""
    if not 0 <= seq < plan.total_steps:
        raise EventError(f"step {seq} is outside the run's plan of {plan.total_steps} steps")
    if seq == plan.total_steps - 1:
        return Event(State.FINISH, run_id, plan.epochs - 1, 0, 0, seq)
    epoch, offset = divmod(seq, plan.steps_per_epoch)
    if offset == 0:
        return Event(State.START, run_id, epoch, 0, 0, seq)
    batch, within = divmod(offset - 1, plan.steps_per_batch)
    if within <= plan.layers:  # forward 1..L, then the loss at L+1
        return Event(State.FORWARD, run_id, epoch, within + 1, batch, seq)
    return Event(State.BACKWARD, run_id, epoch, plan.steps_per_batch - within, batch, seq)


def check_in_plan(plan: Plan, event: Event) -> None:
    """Refuse an event that is not exactly the plan's event at its seq."""
    expected = event_at(plan, event.run_id, event.seq)
    if expected != event:
        raise EventError(f"event {event.describe()} does not match the run's plan, which has {expected.describe()}")


# -- a run's status ----------------------------------------------------------------------------
# The edges a run's stored status may move along, each one conditional write in the run store
# (trainer/README.md has the table, with who makes each move). STALLED is derived (RUNNING without a
# heartbeat), so its one edge, STALLED -> RUNNING by a resume, is RUNNING -> RUNNING conditioned on
# the heartbeat's age. SUCCEEDED -> SUCCEEDED is the finish's completion done again by a retry.
RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.RUNNING: frozenset({RunStatus.FAILED}),
    RunStatus.SUCCEEDED: frozenset({RunStatus.RUNNING, RunStatus.FAILED, RunStatus.SUCCEEDED}),
    RunStatus.FAILED: frozenset({RunStatus.RUNNING}),
    RunStatus.CANCELLED: frozenset({RunStatus.RUNNING, RunStatus.FAILED}),
    RunStatus.STOPPED: frozenset({RunStatus.RUNNING, RunStatus.FAILED}),
}


def may_become(status: RunStatus) -> tuple[RunStatus, ...]:
    """The stored statuses a run may move to `status` from, in a fixed order."""
    return tuple(sorted(RUN_TRANSITIONS[status]))


# Twice the longest a fused invocation can run (the 900 s Lambda limit) between two heartbeats. The
# one threshold of `status` and `resume`; a user may set another for either (LaunchLambda's resume
# request and the CLI take `stall_after_s`).
DEFAULT_STALL_AFTER_S = 1800.0


def effective_status(
    run: Mapping[str, Any], stall_after_s: float = DEFAULT_STALL_AFTER_S, now: float | None = None
) -> RunStatus:
    """RUNNING with no step for `stall_after_s` seconds is STALLED."""
    now = time.time() if now is None else now
    if run.get("status") == RunStatus.RUNNING and now - float(run.get("last_step_at", now)) > stall_after_s:
        return RunStatus.STALLED
    return RunStatus(str(run.get("status")))
