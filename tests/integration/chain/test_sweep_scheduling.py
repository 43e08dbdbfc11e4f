"""A trial is started by an invocation of its own: the completion of the trial that freed a slot
only records the slot free and sends the scheduler's event "start trial k of sweep S" (held here
like every trainer event). Such an event that the scheduler did not send is refused and changes
nothing; one sent twice starts its trial once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.chain import ChainStack
from tests.support.sweeps import BASE, deliver, launch, sweep_request
from trainer import lifecycle
from trainer.aws import client
from trainer.errors import RunNotFound
from trainer.sweep import scheduler
from trainer.vocabulary import RunStatus, SweepStatus


def _one_slot(sweep_id: str) -> dict[str, Any]:
    """Three short trials, one at a time, no early stopping."""
    return sweep_request(
        sweep_id=sweep_id, trials=3, max_concurrency=1, early_stopping=None, base={**BASE, "epochs": 2}
    )


def _started(stack: ChainStack, run_id: str) -> bool:
    try:
        stack.services.run_store.get_run(run_id)
    except RunNotFound:
        return False
    return True


def _deliver_until_start_event(stack: ChainStack) -> dict[str, Any]:
    """Deliver the running trial's events until the scheduler's event is all that is held."""
    while True:
        held = stack.held()
        starts = [e for e in held if e["payload"].get("action") == "start_trial"]
        if starts:
            return starts[0]
        assert held, "the trial ended and no scheduler event was sent"
        assert not stack.deliver(held[0]["request_id"]).failed


def _send(stack: ChainStack, payload: Any) -> dict[str, Any]:
    """An event to the trainer as anyone with invoke rights could send one; the held copy."""
    body = json.dumps(payload).encode()
    client("lambda").invoke(FunctionName=stack.trainer, InvocationType="Event", Payload=body)
    (held,) = [e for e in stack.held() if e["payload"] == payload]
    return held


def test_a_trials_completion_sends_the_start_of_the_next_and_starts_nothing_itself(stack) -> None:
    launched = launch(stack, _one_slot("by-event"))
    assert launched["started"] == ["by-event-t000"]
    event = _deliver_until_start_event(stack)
    assert event["payload"] == {"action": "start_trial", "sweep_id": "by-event", "trial": 1, "run_id": "by-event-t001"}
    # trial 0 has ended and handed its slot on; trial 1 does not exist until its own event runs
    assert stack.services.run_store.get_run("by-event-t000")["status"] == RunStatus.SUCCEEDED
    assert int(stack.services.run_store.get_trial("by-event", 0)["successor"]) == 1
    assert not _started(stack, "by-event-t001")
    delivery = stack.deliver(event["request_id"], copies=2)  # two copies at once: one start
    assert not delivery.failed, delivery.errors
    assert stack.services.run_store.get_run("by-event-t001")["status"] == RunStatus.RUNNING
    firsts = [e for e in stack.held() if e["payload"].get("run_id") == "by-event-t001"]
    assert {e["payload"].get("seq") for e in firsts} == {0}  # the trial's first event, at most a duplicate
    deliver(stack)
    status = scheduler.status(stack.services, "by-event")
    assert status["status"] == SweepStatus.ENDED
    assert status["by_state"] == {"SUCCEEDED": 3}


def _forged(sweep_id: str) -> list[tuple[dict[str, Any], str]]:
    good = {"action": "start_trial", "sweep_id": sweep_id, "trial": 2, "run_id": f"{sweep_id}-t002"}
    return [
        (good, "has not been given a slot"),
        ({**good, "trial": 7, "run_id": f"{sweep_id}-t007"}, f"sweep {sweep_id!r} has no trial 7"),
        ({**good, "sweep_id": "no-such-sweep", "run_id": "no-such-sweep-t002"}, "no sweep 'no-such-sweep'"),
        ({**good, "run_id": f"{sweep_id}-t000"}, "run_id: must be trial 2's run id"),
        ({**good, "trial": True}, "trial: must be a trial's number"),
        ({**good, "trial": -1}, "trial: must be a trial's number"),
        ({**good, "sweep_id": "../x"}, "sweep_id: must be"),
        ({**good, "extra": 1}, "extra: unknown field"),
        ({k: v for k, v in good.items() if k != "trial"}, "trial: missing"),
    ]


def test_a_start_event_the_scheduler_did_not_send_is_refused_and_changes_nothing(stack) -> None:
    launched = launch(stack, _one_slot("forged-starts"))
    sweep_before = stack.services.run_store.get_sweep("forged-starts")
    for payload, problem in _forged("forged-starts"):
        held = _send(stack, payload)
        delivery = stack.deliver(held["request_id"])
        assert delivery.failed and all(problem in e for e in delivery.errors), (payload, delivery.errors)
    assert not _started(stack, "forged-starts-t002")
    assert stack.services.run_store.get_sweep("forged-starts") == sweep_before
    assert [e["payload"]["run_id"] for e in stack.held()] == launched["started"]
    stack.failure_records()  # the refused events' records, drained
    deliver(stack)
    status = scheduler.status(stack.services, "forged-starts")
    assert status["status"] == SweepStatus.ENDED and status["by_state"] == {"SUCCEEDED": 3}


@pytest.mark.parametrize("late", ["ended", "cancelled"])
def test_a_late_start_event_of_a_trial_that_ended_does_nothing(stack, late: str) -> None:
    sweep_id = f"late-{late}"
    launch(stack, _one_slot(sweep_id))
    event = _deliver_until_start_event(stack)
    if late == "cancelled":
        stack.launch({"action": "cancel", "sweep_id": sweep_id})
    assert not stack.deliver(event["request_id"], keep=True).failed
    deliver(stack)
    before = scheduler.status(stack.services, sweep_id)
    again = _send(stack, event["payload"])  # the same event once more, long after
    assert not stack.deliver(again["request_id"]).failed
    assert not stack.held()
    assert scheduler.status(stack.services, sweep_id)["by_state"] == before["by_state"]
    if late == "cancelled":
        assert before["status"] == SweepStatus.CANCELLED and not _started(stack, f"{sweep_id}-t001")


def test_a_data_parallel_trial_starts_once_as_its_workers_and_a_repeat_sends_only_duplicates(stack) -> None:
    sweep_id = "dp-start"
    base = {**BASE, "epochs": 2, "workers": 2}
    launch(stack, sweep_request(sweep_id=sweep_id, trials=2, max_concurrency=1, early_stopping=None, base=base))
    store = stack.services.run_store
    first = store.get_run(f"{sweep_id}-t000")
    workers = [{"state": "dp_worker", "run_id": f"{sweep_id}-t000", "worker": w, "gen": 0} for w in (0, 1)]
    assert [e["payload"] for e in stack.held()] == workers  # one event per worker, no chain's
    # the start again (a retried launch, a copy of a start event): the same state and record,
    # and the workers' events again, which the workers take as duplicates of each other
    scheduler.start_trial(stack.services, store.get_sweep(sweep_id), 0)
    assert store.get_run(f"{sweep_id}-t000")["created_at"] == first["created_at"]
    assert sorted((e["payload"]["worker"], e["payload"]["gen"]) for e in stack.held()) == [
        (0, 0),
        (0, 0),
        (1, 0),
        (1, 0),
    ]
    stack.drop_all()
    # cancelled, it hands its slot on as a chain trial does: the next starts from the scheduler's
    # event, delivered twice at once, as its workers, once
    lifecycle.cancel(stack.services, f"{sweep_id}-t000")
    (event,) = stack.held()
    assert event["payload"] == scheduler.start_event(sweep_id, 1)
    assert not stack.deliver(event["request_id"], copies=2).failed
    assert store.get_run(f"{sweep_id}-t001")["status"] == RunStatus.RUNNING
    assert {(e["payload"]["run_id"], e["payload"]["worker"]) for e in stack.held()} == {
        (f"{sweep_id}-t001", 0),
        (f"{sweep_id}-t001", 1),
    }
    stack.drop_all()
    lifecycle.cancel(stack.services, f"{sweep_id}-t001")
    stack.drop_all()
    status = scheduler.status(stack.services, sweep_id)
    assert status["status"] == SweepStatus.ENDED and status["by_state"] == {"CANCELLED": 2}
