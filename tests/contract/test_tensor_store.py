"""The tensor store's contract, against the fake and a real TLS redis-server: the cursor, the
commit's guard, reads at a position, completion claims and clean-up."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from trainer.stores.tensor_store import NO_CURSOR, CacheLost, CommitResult, Superseded
from trainer.vocabulary import Claim


def test_a_run_is_created_once_and_never_after_its_cancel(tensors, ids) -> None:
    store, run = tensors.store, ids()
    assert store.create_run(run, '{"a": 1}', {"W1": np.ones((2, 2))})
    assert not store.create_run(run, '{"a": 2}', {"W1": np.zeros((2, 2))})
    assert store.cursor(run) == -1 and store.config(run) == '{"a": 1}'
    assert store.read_at(run, -1, ["W1"])["W1"][0, 0] == 1.0, "a second create must not overwrite"
    other = ids()
    store.request_cancel(other)
    assert not store.create_run(other, "{}", {"W1": np.ones(1)}), "a cancelled run's state never comes back"
    assert store.cursor(other) == NO_CURSOR and store.config(other) is None


def test_an_unknown_run_has_no_cursor_and_no_config(tensors, ids) -> None:
    store, run = tensors.store, ids()
    assert store.cursor(run) == NO_CURSOR and store.config(run) is None and not store.exists(run)
    assert store.snapshot(run, ["W1"]) == (NO_CURSOR, False, {})
    assert store.outbox(run, 0) is None


def test_the_cursor_advances_only_from_where_the_committer_found_it(tensors, ids) -> None:
    store, run = tensors.store, ids()
    store.create_run(run, "{}", {"W1": np.ones(2)}, cursor=4)
    assert store.commit(run, 3, 6, {"W1": np.zeros(2)}, "behind") is CommitResult.MOVED
    assert store.commit(run, 5, 6, {"W1": np.zeros(2)}, "ahead") is CommitResult.MOVED
    assert store.cursor(run) == 4 and store.outbox(run, 6) is None, "a refused commit writes nothing"
    assert store.commit(run, 4, 6, {"W1": np.full(2, 7.0)}, "first") is CommitResult.OK
    assert store.cursor(run) == 6


def test_a_second_commit_of_the_same_position_is_refused_and_the_first_stands(tensors, ids) -> None:
    store, run = tensors.store, ids()
    store.create_run(run, "{}", {"W1": np.ones((2, 2)), "b1": np.ones(1)})
    assert store.commit(run, -1, 3, {"W1": np.full((2, 2), 7.0)}, '{"seq": 3}') is CommitResult.OK
    assert store.commit(run, -1, 3, {"W1": np.full((2, 2), 9.0)}, '{"seq": 3, "x": 1}') is CommitResult.MOVED
    cursor, cancelled, found = store.snapshot(run, ["W1", "b1", "absent"])
    assert (cursor, cancelled, sorted(found)) == (3, False, ["W1", "b1"])
    assert found["W1"][0, 0] == 7.0 and found["b1"][0] == 1.0, "untouched tensors stay as they were"
    assert store.outbox(run, 3) == '{"seq": 3}', "the outbox is the winner's"


def test_no_commit_lands_on_a_cancelled_run_or_a_lost_one(tensors, ids) -> None:
    store, run, lost = tensors.store, ids(), ids()
    store.create_run(run, "{}", {"W1": np.ones(2)})
    store.request_cancel(run)
    assert store.commit(run, -1, 0, {"W1": np.zeros(2)}, "{}") is CommitResult.CANCELLED
    assert store.cursor(run) == -1 and store.read_at(run, -1, ["W1"])["W1"][0] == 1.0
    assert store.snapshot(run, [])[1] is True
    assert store.commit(lost, -1, 0, {"W1": np.zeros(2)}, "{}") is CommitResult.LOST
    assert not store.exists(lost), "a refused commit creates nothing"


def test_a_read_at_a_position_the_chain_left_is_refused(tensors, ids) -> None:
    store, run = tensors.store, ids()
    store.create_run(run, "{}", {"W1": np.ones(2), "W2": np.ones(2)})
    assert store.read_at(run, -1, ["W2"])["W2"][0] == 1.0
    store.commit(run, -1, 1, {"W2": np.full(2, 5.0)}, "{}")
    with pytest.raises(Superseded):
        store.read_at(run, -1, ["W2"])  # it would have mixed position 1's W2 into position -1
    assert store.read_at(run, 1, ["W1", "W2"])["W2"][0] == 5.0
    assert store.read_at(run, 0, []) == {}, "nothing asked, nothing checked"
    with pytest.raises(KeyError, match="absent"):
        store.read_at(run, 1, ["W1", "absent"])
    with pytest.raises(CacheLost):
        store.read_at(ids(), -1, ["W1"])


def test_tensors_come_back_with_their_dtype_and_shape(tensors, ids) -> None:
    store, run = tensors.store, ids()
    values = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([3], dtype=np.int64)}
    store.create_run(run, "{}", values)
    found = store.read_at(run, -1, ["a", "b"])
    for name, value in values.items():
        assert found[name].dtype == value.dtype and found[name].shape == value.shape
        np.testing.assert_array_equal(found[name], value)
    found["a"][0, 0] = 99.0
    assert store.read_at(run, -1, ["a"])["a"][0, 0] == 0.0, "a read is a copy, never the stored value"


def _committed(store, run: str, first: int, last: int) -> None:
    """Positions first..last committed: only a committed position's completion can be claimed."""
    store.create_run(run, "{}", {"W1": np.ones(2)}, cursor=first - 1)
    for seq in range(first, last + 1):
        assert store.commit(run, seq - 1, seq, {"W1": np.full(2, seq)}, f"outbox-{seq}") is CommitResult.OK


def test_a_completion_claim_is_one_holders_lease_until_done(tensors, ids) -> None:
    store, run = tensors.store, ids()
    _committed(store, run, 5, 6)
    assert store.claim(run, 5, "copy-a", 30) is Claim.ACQUIRED
    assert store.claim(run, 5, "copy-a", 30) is Claim.ACQUIRED, "the holder holds it still"
    assert store.claim(run, 5, "copy-b", 30) is Claim.BUSY
    assert store.claim(run, 6, "copy-b", 30) is Claim.ACQUIRED, "each position has its own claim"
    store.release(run, 5, "copy-b")  # not the holder's: nothing happens
    assert store.claim(run, 5, "copy-b", 30) is Claim.BUSY
    assert not store.done(run, 5)
    assert not store.mark_done(run, 5, "copy-b"), "only the holder marks it done"
    assert not store.done(run, 5)
    assert store.mark_done(run, 5, "copy-a")
    assert store.done(run, 5)
    assert store.claim(run, 5, "copy-a", 30) is Claim.DONE and store.claim(run, 5, "copy-c", 30) is Claim.DONE
    store.release(run, 5, "copy-a")  # done is final, even for the one that held it
    assert store.done(run, 5)


def test_a_claim_whose_holder_vanished_is_taken_over_when_its_lease_ends(tensors, ids) -> None:
    store, run = tensors.store, ids()
    _committed(store, run, 2, 2)
    assert store.claim(run, 2, "crashed", 5) is Claim.ACQUIRED
    tensors.advance(3)
    assert store.claim(run, 2, "retry", 5) is Claim.BUSY
    tensors.advance(3)
    assert store.claim(run, 2, "retry", 5) is Claim.ACQUIRED
    assert store.claim(run, 2, "crashed", 5) is Claim.BUSY, "the old holder lost it"
    assert not store.mark_done(run, 2, "crashed"), "and cannot mark it done"
    store.release(run, 2, "retry")
    assert store.claim(run, 2, "third", 5) is Claim.ACQUIRED, "a released claim is free at once"


def test_a_holder_whose_lease_ended_while_it_worked_marks_it_done_if_nobody_took_it(tensors, ids) -> None:
    """Its effects are made: a later copy must find the position done, not make them again (after a
    run's end, with its tensors gone)."""
    store, run = tensors.store, ids()
    _committed(store, run, 3, 4)
    assert store.claim(run, 3, "slow", 5) is Claim.ACQUIRED and store.claim(run, 4, "slow", 5) is Claim.ACQUIRED
    tensors.advance(6)
    assert store.mark_done(run, 3, "slow") and store.done(run, 3)
    assert store.claim(run, 3, "later", 5) is Claim.DONE
    assert store.claim(run, 4, "other", 5) is Claim.ACQUIRED, "taken over: the new holder's to mark"
    assert not store.mark_done(run, 4, "slow") and not store.done(run, 4)


def test_the_clean_up_keeps_the_chains_bookkeeping_for_late_duplicates(tensors, ids) -> None:
    store, run = tensors.store, ids()
    store.put_data(run, {"x_train": np.ones((2, 3)), "y_train": np.zeros((1, 3))})
    store.create_run(run, "{}", {"W1": np.ones(2)})
    store.commit(run, -1, 0, {"W1": np.zeros(2)}, "outbox-0")
    assert store.claim(run, 0, "copy", 30) is Claim.ACQUIRED and store.mark_done(run, 0, "copy")
    assert store.has_data(run)
    assert store.delete_run(run) == 3  # W1, x_train, y_train
    assert not store.has_data(run) and store.snapshot(run, ["W1"]) == (0, False, {})
    assert store.exists(run) and store.outbox(run, 0) == "outbox-0" and store.done(run, 0)
    assert store.delete_run(run, keep_cursor=False) == 4  # cursor, config, outbox, claim
    assert not store.exists(run) and store.cursor(run) == NO_CURSOR


def test_data_is_read_whole_or_refused(tensors, ids) -> None:
    store, run = tensors.store, ids()
    assert not store.has_data(run)
    store.put_data(run, {"x_train": np.arange(4.0), "shift": np.zeros(2)})
    assert store.has_data(run)
    np.testing.assert_array_equal(store.get_data(run, ["x_train"])["x_train"], np.arange(4.0))
    with pytest.raises(KeyError, match="y_train"):
        store.get_data(run, ["x_train", "y_train"])


def test_a_cancel_mark_is_seen_by_the_snapshot(tensors, ids) -> None:
    store, run = tensors.store, ids()
    store.create_run(run, "{}", {"W1": np.ones(1)}, cursor=2)
    assert store.snapshot(run, ["W1"])[:2] == (2, False)
    store.request_cancel(run)
    assert store.snapshot(run, ["W1"])[:2] == (2, True)


def test_of_copies_committing_at_once_exactly_one_lands(tensors, ids) -> None:
    store, run = tensors.store, ids()
    store.create_run(run, "{}", {"W1": np.zeros(1)})
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda n: store.commit(run, -1, 0, {"W1": np.full(1, n)}, str(n)), range(8)))
    assert answers.count(CommitResult.OK) == 1 and answers.count(CommitResult.MOVED) == 7
    winner = answers.index(CommitResult.OK)
    assert store.outbox(run, 0) == str(winner) and store.read_at(run, 0, ["W1"])["W1"][0] == winner


def test_a_position_whose_commit_the_cache_lost_cannot_be_claimed_or_marked(tensors, ids) -> None:
    """A copy held up while the node was replaced: its claim, or its 'sent', must not land in the
    empty node, where the resumed chain would find that position done before it got there."""
    store, run = tensors.store, ids()
    with pytest.raises(CacheLost, match="the commit of step 21 is gone"):
        store.claim(run, 21, "held-up", 30)
    assert not store.mark_done(run, 21, "held-up") and not store.done(run, 21)
    _committed(store, run, 12, 21)  # the resumed chain reaches the position: it is free
    assert store.claim(run, 21, "resumed", 30) is Claim.ACQUIRED


def test_of_copies_claiming_at_once_exactly_one_holds_the_claim(tensors, ids) -> None:
    store, run = tensors.store, ids()
    _committed(store, run, 0, 0)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda n: store.claim(run, 0, f"copy-{n}", 30), range(8)))
    assert answers.count(Claim.ACQUIRED) == 1 and answers.count(Claim.BUSY) == 7
