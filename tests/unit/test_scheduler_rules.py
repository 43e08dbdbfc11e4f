"""The sweep scheduler's decisions (trainer/sweep/scheduler.py), on fakes, through LaunchLambda's
and the trainer's entry points: a trial's slot goes to the next trial once, ASHA stops a trial
judged behind at a rung and lets the others go on, the last end ends the sweep once, and a cancel
stops the sweep and its trials with one message."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.fakes import fake_services
from tests.fakes.chain import REQUEST, ask, deliver, drain
from trainer import effects, once
from trainer.runconfig import RunConfig
from trainer.sweep import asha, scheduler
from trainer.vocabulary import Notice, Outcome, RungDecision, RunStatus, SweepStatus

BASE = dict(REQUEST)
RATES = [0.05, 0.5, 2.0]


@pytest.fixture
def svc():
    return fake_services()


def sweep(svc, **extra: Any) -> str:
    payload = {
        "action": "sweep",
        "sweep_id": "s-" + secrets.token_hex(5),
        "base": BASE,
        "space": {"learning_rate": RATES},
        "strategy": "grid",
        "max_concurrency": 1,
        **extra,
    }
    return ask(svc, payload)["sweep_id"]


def trial(sweep_id: str, number: int) -> str:
    return scheduler.trial_run_id(sweep_id, number)


def starts(results: list[dict[str, Any]], run_id: str) -> int:
    """How often the run's first step was applied (a first event sent twice is a duplicate)."""
    first = {"run_id": run_id, "status": Outcome.APPLIED, "last_seq": 0}
    return sum(all(r.get(k) == v for k, v in first.items()) for r in results)


def running(svc, sweep_id: str, trials: int = 3) -> int:
    ids = [trial(sweep_id, n) for n in range(trials)]
    return sum(svc.run_store.exists(r) and svc.run_store.get_run(r)["status"] == RunStatus.RUNNING for r in ids)


def drain_watching(svc, sweep_id: str, copies: int = 1) -> tuple[list[int], list[dict[str, Any]]]:
    """Deliver every event (`copies` times) one at a time: how many trials ran after each, and
    what each delivery answered."""
    seen, results = [], []
    while events := svc.invoker.take():
        for event in events:
            for _ in range(copies):
                results.append(deliver(svc, event))
                seen.append(running(svc, sweep_id))
    return seen, results


def test_each_end_starts_the_next_trial_once_and_the_last_ends_the_sweep_once(svc) -> None:
    sweep_id = sweep(svc)
    seen, results = drain_watching(svc, sweep_id, copies=2)  # every completion, every decision, repeated
    assert max(seen) == 1, "never more trials at once than the sweep's max_concurrency"
    assert [starts(results, trial(sweep_id, n)) for n in range(3)] == [1, 1, 1]
    stored = svc.run_store.get_sweep(sweep_id)
    assert (stored["status"], stored["next_trial"], stored["ended"], stored["ended_SUCCEEDED"]) == ("ENDED", 3, 3, 3)
    [summary] = svc.notifier.of(Notice.SWEEP_ENDED, sweep_id)
    assert summary["by_state"] == {"SUCCEEDED": 3} and summary["trials"] == 3
    assert svc.notifier.of(Notice.SUCCEEDED) == [], "a trial's sweep speaks for it"
    best = summary["best_run_id"]
    assert svc.blob_store.get(f"models/{sweep_id}/best.npz") == svc.blob_store.get(f"models/{best}/model.npz")
    rows = scheduler.leaderboard(svc, sweep_id)
    assert best == rows[0]["run_id"] and rows[0]["validation_accuracy"] == max(r["validation_accuracy"] for r in rows)


def test_two_slots_run_two_trials_side_by_side(svc) -> None:
    sweep_id = sweep(svc, max_concurrency=2)
    seen, results = drain_watching(svc, sweep_id)
    assert max(seen) == 2 and seen[-1] == 0
    assert svc.run_store.get_sweep(sweep_id)["status"] == SweepStatus.ENDED
    assert [starts(results, trial(sweep_id, n)) for n in range(3)] == [1, 1, 1]


def test_asha_decides_each_trial_at_each_rung_by_those_that_reached_it_before(svc) -> None:
    stopping = {"asha": {"min_epochs": 1, "reduction_factor": 2}}
    sweep_id = sweep(svc, base={**BASE, "epochs": 4}, early_stopping=stopping)
    drain(svc, copies=2)
    decided = {e["decision"] for r in (1, 2) for e in svc.run_store.rung_entries(sweep_id, r)}
    assert decided == {RungDecision.CONTINUE, RungDecision.STOP}, "these rates meet both decisions"
    for rung in asha.rungs(1, 2, 4):  # (1, 2)
        arrived: list[float] = []
        entries = {int(e["trial"]): e for e in svc.run_store.rung_entries(sweep_id, rung)}
        for number in sorted(entries):  # one slot: the trials reach every rung in trial order
            entry = entries[number]
            assert entry["decision"] == asha.decide(float(entry["value"]), arrived, 2), (rung, number)
            arrived.append(float(entry["value"]))
    for number in range(3):
        run = svc.run_store.get_run(trial(sweep_id, number))
        decisions = [e for r in (1, 2) for e in svc.run_store.rung_entries(sweep_id, r) if e["trial"] == number]
        stopped_at = next((e["rung"] for e in decisions if e["decision"] == RungDecision.STOP), None)
        if stopped_at is None:
            assert run["status"] == RunStatus.SUCCEEDED and len(svc.run_store.epochs(run["run_id"])) == 4
        else:
            assert run["status"] == RunStatus.STOPPED and run["epochs_run"] == stopped_at
            assert len(svc.run_store.epochs(run["run_id"])) == stopped_at, "a stopped trial's chain ends at its rung"
            assert max(e["rung"] for e in decisions) == stopped_at, "and is judged at no later rung"
    assert svc.run_store.get_run(trial(sweep_id, 0))["status"] == RunStatus.SUCCEEDED, "the first to arrive goes on"
    assert len(svc.notifier.of(Notice.SWEEP_ENDED, sweep_id)) == 1


@pytest.mark.parametrize(("others", "expected"), [(1.0, RunStatus.STOPPED), (0.0, RunStatus.SUCCEEDED)])
def test_a_trial_behind_at_a_rung_is_stopped_and_one_ahead_goes_on(svc, others, expected) -> None:
    stopping = {"asha": {"min_epochs": 1, "reduction_factor": 2}}
    sweep_id = sweep(svc, base={**BASE, "epochs": 2}, early_stopping=stopping, space={"learning_rate": [0.5]})
    for phantom in (90, 91):  # two trials that reached the rung first, with these scores
        svc.run_store.record_rung(sweep_id, 1, phantom, others, RungDecision.CONTINUE)
    drain(svc)
    run = svc.run_store.get_run(trial(sweep_id, 0))
    assert run["status"] == expected
    if expected == RunStatus.STOPPED:
        assert run["epochs_run"] == 1 and len(svc.run_store.epochs(run["run_id"])) == 1
        sent = [e["seq"] for e in svc.invoker.sent if e["run_id"] == run["run_id"]]
        assert max(sent) == 5, "no event past the step that closed the rung's epoch (seq 5)"
        assert svc.run_store.get_sweep(sweep_id)["ended_STOPPED"] == 1
    assert svc.run_store.get_sweep(sweep_id)["status"] == SweepStatus.ENDED


def test_a_cancel_stops_the_sweep_and_its_running_trials_with_one_message(svc) -> None:
    sweep_id = sweep(svc, max_concurrency=2)
    first = svc.invoker.take()
    for event in first:
        deliver(svc, event)
    for _ in range(2):  # the cancel sent again (a retry) says nothing more
        answer = ask(svc, {"action": "cancel", "sweep_id": sweep_id})
        assert answer["status"] == SweepStatus.CANCELLED
    assert svc.run_store.get_sweep(sweep_id)["status"] == SweepStatus.CANCELLED
    assert [svc.run_store.get_run(trial(sweep_id, n))["status"] for n in (0, 1)] == [RunStatus.CANCELLED] * 2
    results = drain(svc)
    assert results and all(r["status"] == Outcome.CANCELLED for r in results), "their steps in flight do nothing"
    assert not svc.run_store.exists(trial(sweep_id, 2)), "no trial starts after the cancel"
    assert [m["kind"] for m in svc.notifier.sent] == [Notice.SWEEP_CANCELLED]
    status = scheduler.status(svc, sweep_id)
    assert status["by_state"] == {"CANCELLED": 2, scheduler.NOT_STARTED: 1}


def test_an_ended_sweep_cannot_be_cancelled(svc) -> None:
    sweep_id = sweep(svc, space={"learning_rate": [0.5]})
    drain(svc)
    with pytest.raises(ValueError, match="has ended already"):
        ask(svc, {"action": "cancel", "sweep_id": sweep_id})
    assert svc.run_store.get_sweep(sweep_id)["status"] == SweepStatus.ENDED
    assert svc.notifier.of(Notice.SWEEP_CANCELLED) == []


def test_a_trial_cancelled_alone_hands_its_slot_on_and_says_nothing(svc) -> None:
    sweep_id = sweep(svc)
    results = [deliver(svc, event) for event in svc.invoker.take()]  # trial 0 starts
    answer = ask(svc, {"action": "cancel", "run_id": trial(sweep_id, 0)})
    assert answer["status"] == RunStatus.CANCELLED
    results += drain(svc)
    assert [starts(results, trial(sweep_id, n)) for n in (1, 2)] == [1, 1], "the next trial took the slot"
    assert svc.run_store.get_run(trial(sweep_id, 0))["status"] == RunStatus.CANCELLED
    stored = svc.run_store.get_sweep(sweep_id)
    assert (stored["status"], stored["ended_CANCELLED"], stored["ended_SUCCEEDED"]) == ("ENDED", 1, 2)
    assert svc.notifier.of(Notice.CANCELLED) == [] and len(svc.notifier.of(Notice.SWEEP_ENDED)) == 1


def test_a_rung_stop_that_meets_a_cancelled_trial_leaves_it_cancelled_and_hands_nothing_on(svc) -> None:
    """A data-parallel trial's workers judge its rungs outside any guarded commit: a user's cancel
    may land first. The rung's STOP then finds the run CANCELLED, and the cancel's own end is the
    trial's (its slot handed on once, as CANCELLED), not a second one as STOPPED."""
    sweep_id = sweep(svc)
    run_id = trial(sweep_id, 0)
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.RUNNING
    assert ask(svc, {"action": "cancel", "run_id": run_id})["status"] == RunStatus.CANCELLED
    config = RunConfig.from_json(svc.run_store.get_run(run_id)["config"])
    rung = {"epoch": 0, "validation_accuracy": 0.5}
    assert not effects.stop_trial(svc, config, rung, "token", once.NoDeadline())
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.CANCELLED
    stored = svc.run_store.get_sweep(sweep_id)
    assert stored.get("ended_STOPPED", 0) == 0 and stored["ended_CANCELLED"] == 1, stored
