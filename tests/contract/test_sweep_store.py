"""The sweep items' contract, against the fake and DynamoDB (moto): a sweep and its trials written
once, the slot bookkeeping (which trial takes a finished trial's slot, and the counts), the sweep's
end, and each rung's decision taken once."""

from __future__ import annotations

import pytest

from trainer.errors import RunNotFound
from trainer.stores.sweep_store import NO_SUCCESSOR
from trainer.vocabulary import RungDecision, RunStatus, SweepStatus


def new_sweep(store, sweep_id: str, trials: int = 3, concurrency: int = 2) -> list[int]:
    assert store.create_sweep(sweep_id, {"trials": trials, "max_concurrency": concurrency, "request": "{}"})
    store.put_trials(
        sweep_id,
        [{"trial": n, "run_id": f"{sweep_id}-t{n:03d}", "params": "{}", "request": "{}"} for n in range(trials)],
    )
    return store.claim_start(sweep_id, min(concurrency, trials))


def test_a_sweep_and_its_trials_are_written_once(runs, ids) -> None:
    store, sweep_id = runs.store, ids()
    assert not store.sweep_exists(sweep_id)
    with pytest.raises(RunNotFound, match=sweep_id):
        store.get_sweep(sweep_id)
    assert new_sweep(store, sweep_id) == [0, 1]
    assert not store.create_sweep(sweep_id, {"trials": 9}), "the id is taken"
    store.put_trials(sweep_id, [{"trial": 1, "run_id": "other", "params": "{}", "request": "{}"}])
    sweep = store.get_sweep(sweep_id)
    assert (sweep["status"], sweep["trials"], sweep["next_trial"], sweep["ended"]) == ("RUNNING", 3, 2, 0)
    assert [t["trial"] for t in store.sweep_trials(sweep_id)] == [0, 1, 2]
    assert store.get_trial(sweep_id, 1)["run_id"] == f"{sweep_id}-t001", "a trial is written once"
    with pytest.raises(RunNotFound):
        store.get_trial(sweep_id, 3)


def test_the_first_trials_are_counted_once(runs, ids) -> None:
    store, sweep_id = runs.store, ids()
    new_sweep(store, sweep_id, trials=5, concurrency=2)
    assert store.claim_start(sweep_id, 2) == [0, 1]  # the launch sent again
    assert store.get_sweep(sweep_id)["next_trial"] == 2


def test_a_finished_trials_slot_goes_to_the_next_trial_once(runs, ids) -> None:
    store, sweep_id = runs.store, ids()
    new_sweep(store, sweep_id, trials=3, concurrency=2)
    assert store.assign_successor(sweep_id, 0, RunStatus.SUCCEEDED) == 2
    assert store.assign_successor(sweep_id, 0, RunStatus.SUCCEEDED) == 2, "a repeat follows the first answer"
    assert store.assign_successor(sweep_id, 1, RunStatus.STOPPED) == NO_SUCCESSOR, "no trial is left"
    assert store.assign_successor(sweep_id, 2, RunStatus.FAILED) == NO_SUCCESSOR
    sweep = store.get_sweep(sweep_id)
    assert (sweep["next_trial"], sweep["ended"]) == (3, 3), "each end counted once"
    assert (sweep["ended_SUCCEEDED"], sweep["ended_STOPPED"], sweep["ended_FAILED"]) == (1, 1, 1)
    trial = store.get_trial(sweep_id, 0)
    assert (trial["successor"], trial["end_state"]) == (2, "SUCCEEDED")
    with pytest.raises(RunNotFound):
        store.assign_successor(sweep_id, 7, RunStatus.SUCCEEDED)


def test_a_sweep_ends_or_is_cancelled_once(runs, ids) -> None:
    store, sweep_id = runs.store, ids()
    new_sweep(store, sweep_id)
    assert store.update_sweep(sweep_id, SweepStatus.ENDED, {"summary": '{"best": 1}'})
    assert not store.update_sweep(sweep_id, SweepStatus.CANCELLED, {}), "an ended sweep is not cancelled"
    assert not store.update_sweep(sweep_id, SweepStatus.ENDED, {"summary": '{"best": 2}'})
    sweep = store.get_sweep(sweep_id)
    assert (sweep["status"], sweep["summary"]) == ("ENDED", '{"best": 1}')
    assert not store.update_sweep(ids(), SweepStatus.ENDED, {})


def test_a_trial_that_cannot_start_keeps_its_reason(runs, ids) -> None:
    store, sweep_id = runs.store, ids()
    new_sweep(store, sweep_id)
    store.note_trial_error(sweep_id, 2, "DatasetError: " + "x" * 3000)
    error = store.get_trial(sweep_id, 2)["start_error"]
    assert error.startswith("DatasetError: ") and len(error) == 2000


def test_a_rung_decision_is_taken_once_and_then_followed(runs, ids) -> None:
    store, sweep_id = runs.store, ids()
    new_sweep(store, sweep_id)
    assert store.rung_entries(sweep_id, 4) == []
    assert store.record_rung(sweep_id, 4, 0, 0.9, RungDecision.CONTINUE) is RungDecision.CONTINUE
    assert store.record_rung(sweep_id, 4, 0, 0.1, RungDecision.STOP) is RungDecision.CONTINUE, "the first stands"
    assert store.record_rung(sweep_id, 4, 1, 0.5, RungDecision.STOP) is RungDecision.STOP
    assert store.record_rung(sweep_id, 8, 0, 0.95, RungDecision.CONTINUE) is RungDecision.CONTINUE
    entries = sorted(store.rung_entries(sweep_id, 4), key=lambda e: e["trial"])
    assert [(e["trial"], e["value"], e["decision"]) for e in entries] == [(0, 0.9, "CONTINUE"), (1, 0.5, "STOP")]
