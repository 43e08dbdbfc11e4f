"""The run's status machine (statemachine.RUN_TRANSITIONS) and checkpoints' integrity: pure rules."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from trainer import checkpoints, lifecycle
from trainer.statemachine import RUN_TRANSITIONS, may_become
from trainer.vocabulary import RunStatus

FINAL = (RunStatus.SUCCEEDED, RunStatus.CANCELLED, RunStatus.STOPPED)


def test_nothing_moves_a_run_out_of_a_final_status() -> None:
    for to, sources in RUN_TRANSITIONS.items():
        assert not (set(sources) & {RunStatus.CANCELLED, RunStatus.STOPPED}), to
        if to is not RunStatus.SUCCEEDED:  # SUCCEEDED -> SUCCEEDED: the finish's completion again
            assert RunStatus.SUCCEEDED not in sources, to


def test_a_cancel_and_a_finish_cannot_both_win() -> None:
    # Each needs a status the other's move leaves behind it: whichever writes first, the other fails.
    assert RunStatus.CANCELLED not in may_become(RunStatus.SUCCEEDED)
    assert RunStatus.SUCCEEDED not in may_become(RunStatus.CANCELLED)
    assert RunStatus.CANCELLED not in may_become(RunStatus.RUNNING)


def test_stalled_is_never_stored_and_failed_keeps_its_first_reason() -> None:
    assert RunStatus.STALLED not in RUN_TRANSITIONS
    assert all(RunStatus.STALLED not in sources for sources in RUN_TRANSITIONS.values())
    assert may_become(RunStatus.FAILED) == (RunStatus.RUNNING,)


class _Blobs:
    bucket = "b"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, body: bytes, content_type: str = "") -> str:
        self.objects[key] = body
        return f"s3://b/{key}"

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def keys(self, prefix: str) -> list[str]:
        return [k for k in self.objects if k.startswith(prefix)]


def test_a_checkpoint_is_the_same_bytes_whoever_writes_it_and_loads_only_when_they_match() -> None:
    tensors = {"W1": np.arange(6.0).reshape(2, 3), "b1": np.zeros((2, 1)), "cost": np.array([0.5])}
    blobs = _Blobs()
    first = checkpoints.save(blobs, "r", 3, 41, tensors)
    written = blobs.get("checkpoints/r/epoch-000003.npz")
    with zipfile.ZipFile(io.BytesIO(written)) as archive:  # no time of writing in the bytes
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert checkpoints.save(blobs, "r", 3, 41, tensors) == first == checkpoints.digest(written)
    key = checkpoints.latest_key(blobs, "r")
    seq, epoch, loaded = checkpoints.load(blobs, key, first)
    assert (seq, epoch) == (41, 3) and all(np.array_equal(loaded[k], v) for k, v in tensors.items())
    blobs.objects[key] = checkpoints.dumps(3, 41, {**tensors, "W1": tensors["W1"] + 1})
    with pytest.raises(checkpoints.CheckpointError, match="does not match the sha256"):
        checkpoints.load(blobs, key, first)
    with pytest.raises(checkpoints.CheckpointError, match="no digest recorded"):
        checkpoints.load(blobs, key, None)


@pytest.mark.parametrize("value", ["60", -1, True, None, 10**9])
def test_a_stall_threshold_that_is_not_seconds_is_named(value) -> None:
    assert lifecycle.stall_problem(value).startswith("stall_after_s: must be a number of seconds")


def test_a_stall_threshold_in_seconds_is_taken() -> None:
    assert lifecycle.stall_problem(0) is None and lifecycle.stall_problem(60.5) is None
    run = {"status": "RUNNING", "last_step_at": 1000.0}
    assert lifecycle.effective_status(run, 60, now=1061.0) == "STALLED"
    assert lifecycle.effective_status(run, 120, now=1061.0) == "RUNNING"
