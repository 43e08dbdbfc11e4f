"""A data-parallel worker's event is checked before anything is read: a malformed or forged one
is refused with an error naming what is wrong."""

from __future__ import annotations

import pytest

from trainer.errors import EventError
from trainer.handlers import worker
from trainer.parallel import launching
from trainer.stores.tensor_store import NO_CURSOR

GOOD = launching.worker_event("run-1", 3, 7)


def test_the_launchs_events_parse_as_one_per_worker_at_generation_0() -> None:
    events = launching.worker_events("run-1", 4)
    assert [worker.parse(e) for e in events] == [worker.WorkerEvent("run-1", w, 0) for w in range(4)]
    assert all(worker.is_worker_event(e) for e in events)
    assert worker.parse(GOOD) == worker.WorkerEvent("run-1", 3, 7)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"worker": 16}, "worker must be an integer 0..15"),
        ({"worker": -1}, "worker must be an integer 0..15"),
        ({"worker": True}, "worker must be an integer 0..15"),
        ({"worker": "1"}, "worker must be an integer 0..15"),
        ({"gen": -1}, "gen must be an integer"),
        ({"gen": 1.5}, "gen must be an integer"),
        ({"run_id": "../etc"}, "run_id is not a run id"),
        ({"run_id": "run\n"}, "run_id is not a run id"),
        ({"run_id": 5}, "run_id is not a run id"),
        ({"seq": 3}, "exactly the keys"),
        ({"resumes": -1}, "resumes must be an integer"),
        ({"resumes": True}, "resumes must be an integer"),
        ({"resumes": "2"}, "resumes must be an integer"),
    ],
)
def test_a_malformed_worker_event_is_refused_by_name(change, says) -> None:
    with pytest.raises(EventError, match=says):
        worker.parse({**GOOD, **change})


def test_a_chain_event_is_not_a_worker_event() -> None:
    chain = {"state": "start", "run_id": "run-1", "epoch": 0, "layer": 0, "batch": 0, "seq": 0}
    assert not worker.is_worker_event(chain) and not worker.is_worker_event([GOOD]) and not worker.is_worker_event(None)
    with pytest.raises(EventError, match="exactly the keys"):
        worker.parse({k: v for k, v in GOOD.items() if k != "gen"})


def test_a_resumed_runs_events_carry_its_resumes_and_hand_them_on() -> None:
    events = launching.worker_events("run-1", 2, resumes=3)
    assert [worker.parse(e) for e in events] == [worker.WorkerEvent("run-1", w, 0, 3) for w in range(2)]
    assert worker.parse(launching.worker_event("run-1", 1, 5, 3)) == worker.WorkerEvent("run-1", 1, 5, 3)
    assert "resumes" not in launching.worker_event("run-1", 1), "the launch's events are as before"


@pytest.mark.parametrize(
    ("cancelled", "cursor", "stands"),
    [
        (False, -1, worker.Standing.ON),  # the workers step: nothing committed
        (False, 59, worker.Standing.FINISHED),  # the finish committed at the chain's finish position
        (False, NO_CURSOR, worker.Standing.LOST),  # a flushed or replaced node
        (True, -1, worker.Standing.CANCELLED),
        (True, 59, worker.Standing.CANCELLED),
        (True, NO_CURSOR, worker.Standing.CANCELLED),  # a cancel clears the run's state, cursor and all
    ],
)
def test_where_a_run_stands_by_its_cancel_mark_and_cursor(cancelled, cursor, stands) -> None:
    assert worker.standing_of(cancelled, cursor) is stands
