"""Triage of a trainer invocation (trainer/handlers/trainer.py), on fakes of the ports: where the
event stands against the chain decides what the copy does, and only the next event changes it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fakes import fake_services
from tests.fakes.chain import deliver, drain, launch, step_to
from trainer import lifecycle
from trainer.errors import EventError
from trainer.handlers.trainer import StepFailed
from trainer.vocabulary import Notice, Outcome, RunStatus


@pytest.fixture
def svc():
    return fake_services()


def weights(svc, run_id: str) -> dict[str, np.ndarray]:
    return svc.tensor_store.dump_run(run_id)[2]


def test_the_next_event_is_run_committed_and_handed_on(svc) -> None:
    run_id = launch(svc)
    first = step_to(svc, run_id, 0)
    result = deliver(svc, first)
    assert result["status"] == Outcome.APPLIED and result["last_seq"] == 0
    assert svc.tensor_store.cursor(run_id) == 0 and svc.tensor_store.done(run_id, 0)
    assert [e["seq"] for e in svc.invoker.events] == [1], "one successor, handed on"
    assert svc.run_store.get_run(run_id)["last_seq"] == 0


def test_a_duplicate_event_is_triaged_as_done(svc) -> None:
    run_id = launch(svc)
    event = step_to(svc, run_id, 3)
    deliver(svc, event)
    before, sent = weights(svc, run_id), svc.invoker.take()
    again = deliver(svc, event)
    assert again["status"] == Outcome.DUPLICATE and again["last_seq"] == 3 and not again["completed"]
    assert svc.invoker.events == [], "the successor went out once"
    assert svc.tensor_store.cursor(run_id) == 3
    after = weights(svc, run_id)
    assert sorted(after) == sorted(before) and all(np.array_equal(after[n], before[n]) for n in before)
    assert [e["seq"] for e in sent] == [4]


def test_an_event_from_far_behind_is_a_duplicate_too(svc) -> None:
    run_id = launch(svc)
    first = step_to(svc, run_id, 0)
    deliver(svc, first)
    step_to(svc, run_id, 5)
    assert deliver(svc, first)["status"] == Outcome.DUPLICATE
    assert svc.tensor_store.cursor(run_id) == 4 and svc.invoker.events == []


def test_a_stale_event_ahead_of_the_chain_changes_nothing(svc) -> None:
    run_id = launch(svc)
    svc.invoker.take()
    ahead = {"state": "forward", "run_id": run_id, "epoch": 0, "layer": 2, "batch": 0, "seq": 2}
    result = deliver(svc, ahead)
    assert result["status"] == Outcome.DUPLICATE and result["last_seq"] == -1
    assert svc.tensor_store.cursor(run_id) == -1 and svc.invoker.events == []


def test_a_cancelled_runs_step_does_nothing(svc) -> None:
    run_id = launch(svc)
    event = step_to(svc, run_id, 2)
    lifecycle.cancel(svc, run_id)
    result = deliver(svc, event)
    assert result["status"] == Outcome.CANCELLED
    assert svc.tensor_store.cursor(run_id) == 1 and svc.invoker.events == []
    run = svc.run_store.get_run(run_id)
    assert run["status"] == RunStatus.CANCELLED and run["last_seq"] == 1
    assert [m["kind"] for m in svc.notifier.sent] == [Notice.CANCELLED]


def test_an_event_outside_the_plan_is_refused_and_changes_nothing(svc) -> None:
    run_id = launch(svc)
    svc.invoker.take()
    forged = {"state": "backward", "run_id": run_id, "epoch": 0, "layer": 1, "batch": 0, "seq": 0}
    with pytest.raises(EventError, match="does not match the run's plan"):
        deliver(svc, forged)
    assert svc.tensor_store.cursor(run_id) == -1 and svc.invoker.events == []
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.RUNNING and svc.notifier.sent == []


def test_a_run_whose_cache_lost_its_position_fails_once_with_a_resume_hint(svc) -> None:
    run_id = launch(svc)
    event = step_to(svc, run_id, 2)
    svc.tensor_store.flush()  # a replaced node comes back empty; the warm environment still knows the run
    for _ in range(2):  # the event and Lambda's retry of it
        with pytest.raises(StepFailed, match="CacheLost"):
            deliver(svc, event)
    run = svc.run_store.get_run(run_id)
    assert run["status"] == RunStatus.FAILED and run["failure_reason"].startswith("cache lost:")
    assert "resume the run" in run["failure_reason"]
    assert [m["kind"] for m in svc.notifier.sent] == [Notice.FAILED], "one message for the failed chain"


def test_a_whole_run_ends_once_with_every_event_delivered_twice(svc) -> None:
    calm = launch(svc, seed=3)
    drain(svc)
    rough = launch(svc, seed=3)
    results = drain(svc, copies=2)
    assert sum(r["status"] == Outcome.SUCCEEDED for r in results) == 1
    runs = [svc.run_store.get_run(calm), svc.run_store.get_run(rough)]
    assert [r["status"] for r in runs] == [RunStatus.SUCCEEDED] * 2
    assert runs[0]["final_cost"] == runs[1]["final_cost"] and runs[0]["test_accuracy"] == runs[1]["test_accuracy"]
    assert [len(svc.notifier.of(Notice.SUCCEEDED, r)) for r in (calm, rough)] == [1, 1]
