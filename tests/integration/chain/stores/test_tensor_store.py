from __future__ import annotations

import numpy as np
import pytest

from tests.performance.measuring import metered
from trainer.stores.tensor_store import NO_CURSOR, CommitResult, Superseded


def test_commit_applies_once_and_only_from_the_expected_position(stack) -> None:
    store = stack.services.tensor_store
    assert store.create_run("store-1", "{}", {"W1": np.ones((2, 2))})
    assert not store.create_run("store-1", "{}", {"W1": np.zeros((2, 2))}), "a second create must not overwrite"
    assert store.cursor("store-1") == -1
    assert store.commit("store-1", -1, 3, {"W1": np.full((2, 2), 7.0)}, '{"seq": 3}') is CommitResult.OK
    again = store.commit("store-1", -1, 3, {"W1": np.full((2, 2), 9.0)}, '{"seq": 3, "x": 1}')
    assert again is CommitResult.MOVED, "a duplicate commit is refused"
    cursor, cancel, tensors = store.snapshot("store-1", ["W1", "absent"])
    assert cursor == 3 and not cancel and list(tensors) == ["W1"] and tensors["W1"][0, 0] == 7.0
    assert store.outbox("store-1", 3) == '{"seq": 3}', "the outbox is the winner's"
    assert 0 < store.client.ttl("lnn:{store-1}:t:W1") <= store.ttl_s
    assert store.cursor("never-created") == NO_CURSOR


def test_a_later_read_from_a_position_that_moved_is_refused(stack) -> None:
    store = stack.services.tensor_store
    store.create_run("store-4", "{}", {"W1": np.ones(2), "W2": np.ones(2)})
    assert store.read_at("store-4", -1, ["W2"])["W2"][0] == 1.0
    store.commit("store-4", -1, 1, {"W2": np.full(2, 5.0)}, "{}")
    with pytest.raises(Superseded):
        store.read_at("store-4", -1, ["W2"])  # it would have mixed position 1's W2 into position -1
    assert store.read_at("store-4", 1, ["W1", "W2"])["W2"][0] == 5.0


def test_no_commit_is_accepted_once_the_run_is_cancelled(stack) -> None:
    store = stack.services.tensor_store
    store.create_run("store-5", "{}", {"W1": np.ones(2)})
    store.request_cancel("store-5")
    assert store.commit("store-5", -1, 0, {"W1": np.zeros(2)}, "{}") is CommitResult.CANCELLED
    assert store.cursor("store-5") == -1 and store.read_at("store-5", -1, ["W1"])["W1"][0] == 1.0


def test_a_step_reads_in_one_round_trip_and_commits_in_one(stack) -> None:
    store = stack.services.tensor_store
    store.create_run("store-2", "{}", {"W1": np.ones(3), "b1": np.ones(1)})
    with metered(store) as meter:
        store.snapshot("store-2", ["W1", "b1"])
        assert meter.round_trips == 1
        store.read_at("store-2", -1, ["W1", "b1"])
        assert meter.round_trips == 2
        store.commit("store-2", -1, 0, {"W1": np.zeros(3), "b1": np.zeros(1)}, "{}")
        assert meter.round_trips == 3
