from __future__ import annotations

import pytest

from trainer.errors import EventError
from trainer.statemachine import Event, Plan, check_in_plan, event_at, first_event, next_event, parse_event


def walk(plan: Plan) -> list[Event]:
    events, event = [], first_event("run-1")
    while event is not None:
        events.append(event)
        event = next_event(plan, event)
    return events


def test_transitions_follow_the_notes() -> None:
    plan = Plan(layers=2, epochs=2, batches=1)
    states = [(e.state, e.epoch, e.layer) for e in walk(plan)]
    assert states == [
        ("start", 0, 0),
        ("forward", 0, 1),
        ("forward", 0, 2),
        ("forward", 0, 3),
        ("backward", 0, 2),
        ("backward", 0, 1),
        ("start", 1, 0),
        ("forward", 1, 1),
        ("forward", 1, 2),
        ("forward", 1, 3),
        ("backward", 1, 2),
        ("backward", 1, 1),
        ("finish", 1, 0),
    ]


def test_mini_batches_repeat_the_passes_within_an_epoch() -> None:
    plan = Plan(layers=1, epochs=1, batches=3)
    batches = [(e.state, e.layer, e.batch) for e in walk(plan)]
    assert batches == [("start", 0, 0)] + [
        step for b in range(3) for step in (("forward", 1, b), ("forward", 2, b), ("backward", 1, b))
    ] + [("finish", 0, 0)]


@pytest.mark.parametrize("plan", [Plan(1, 1, 1), Plan(4, 3, 2), Plan(3, 5, 7)])
def test_every_event_is_addressable_by_its_seq(plan: Plan) -> None:
    events = walk(plan)
    assert len(events) == plan.total_steps
    assert [e.seq for e in events] == list(range(plan.total_steps))
    for event in events:
        assert event_at(plan, "run-1", event.seq) == event
        check_in_plan(plan, event)


def test_a_run_never_steps_past_its_plan() -> None:
    plan = Plan(2, 1, 1)
    last = walk(plan)[-1]
    assert last.state == "finish" and next_event(plan, last) is None
    with pytest.raises(EventError, match="outside the run's plan"):
        event_at(plan, "run-1", plan.total_steps)


def test_events_that_contradict_the_plan_are_refused() -> None:
    plan = Plan(2, 3, 1)
    with pytest.raises(EventError, match="does not match the run's plan"):
        check_in_plan(plan, Event("backward", "run-1", 0, 1, 0, 1))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "must be a JSON object"),
        ({"state": "start"}, "missing keys"),
        ({"state": "jump", "run_id": "r", "epoch": 0, "layer": 0, "batch": 0, "seq": 0}, "state 'jump'"),
        ({"state": "start", "run_id": "../x", "epoch": 0, "layer": 0, "batch": 0, "seq": 0}, "run_id"),
        ({"state": "start", "run_id": "r", "epoch": -1, "layer": 0, "batch": 0, "seq": 0}, "epoch"),
        ({"state": "start", "run_id": "r", "epoch": True, "layer": 0, "batch": 0, "seq": 0}, "epoch"),
        ({"state": "start", "run_id": "r", "epoch": 0, "layer": 0, "batch": 0, "seq": 0, "W1": [1]}, "unknown keys"),
    ],
)
def test_malformed_events_get_a_clear_error(payload, message: str) -> None:
    with pytest.raises(EventError, match=message):
        parse_event(payload)


def test_events_round_trip_and_stay_small() -> None:
    event = Event("backward", "run-1", 12, 3, 4, 987)
    assert parse_event(event.to_dict()) == event
    assert len(str(event.to_dict())) < 200
