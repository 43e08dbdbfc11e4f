"""Data-parallel workers reduce through a real (TLS, password) redis-server, with blocking stream
reads: the result is the one-process reference's, bit for bit, whatever the number of workers,
and each worker's traffic per step does not grow with their number. The workers are threads of
this process, each with its own connection (the Lambda invocations that will run them are not
built yet)."""

from __future__ import annotations

import secrets
import threading
import time

import numpy as np
import pytest
import redis

from trainer import engine
from trainer.keys import CacheKind, cache_key
from trainer.nn.init import initialise
from trainer.parallel import reference, shards, step, worker
from trainer.stores.reduction_store import Behind, ReductionStore, Stalled, Stopped, start_generation
from trainer.stores.tensor_store import CacheLost, RedisTensorStore
from trainer.vocabulary import StopCause

WAIT_S = 60.0  # the bound of one wait: far above a step here, so only a real stall reaches it


def problem(dtype: str, m: int = 211, features: int = 10):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(features, m)).astype(dtype)
    y = rng.integers(0, 3, size=(1, m)).astype(dtype)
    sizes = (features, 6, 3)
    return x, y, initialise(list(sizes), "he", 7, dtype), sizes


def job_for(sizes, workers: int, optimizer: str, batch_size, epochs: int = 2) -> worker.Job:
    return worker.Job(sizes, ("tanh", "softmax"), optimizer, 0.05, 0.3, batch_size, 211, epochs, 9, workers)


class Killed(Exception):
    """A worker's environment killed mid-step (the test's stand-in for SIGKILL inside a thread)."""


class KilledAt(ReductionStore):
    """A worker's store that dies at step `step`: before sending its partials, or after publishing
    its chunk and before gathering (`where`)."""

    def __init__(self, *args, step: int, where: str):
        super().__init__(*args)
        self.kill_step, self.where = step, where

    def send(self, step, nodes, chunks):
        if step == self.kill_step and self.where == "before-send":
            raise Killed(step)
        super().send(step, nodes, chunks)

    def gather(self, step, deadline):
        if step == self.kill_step and self.where == "after-publish":
            raise Killed(step)
        return super().gather(step, deadline)


def micro_shard_data(x, y):
    """What a worker standing in for a lost one reads: micro-shard k's examples, alone."""

    def shard(k: int) -> step.Held:
        lo, hi = shards.examples_of(x.shape[1], range(k, k + 1))
        return step.Held(np.asfortranarray(x[:, lo:hi]), np.ascontiguousarray(y[:, lo:hi]), lo)

    return shard


def run_workers(
    redis_server,
    x,
    y,
    params,
    job,
    run_id,
    copies=(),
    kill=None,
    budget=None,
    takeover=None,
    absent=(),
    retry=True,
    retry_after=None,
    validation=None,
) -> dict:
    """Each worker in its own thread and connection; `copies` names workers run twice at once
    (a duplicate delivery); `kill` (worker, step, where) kills one worker once, then starts it again
    as Lambda's retry would. {(worker, copy): Result or the exception it raised}."""
    out: dict = {}

    def one(w: int, copy: int) -> None:
        if copy == 0 and w in absent:
            return  # never started: its environment never came
        client = redis.Redis(**redis_server.client_kwargs(), socket_timeout=30)
        args = (client, run_id, job.workers, str(x.dtype))
        killed = kill is not None and kill[0] == w and copy == 0
        store = KilledAt(*args, step=kill[1], where=kill[2]) if killed else ReductionStore(*args)
        try:
            held = worker.holding(x, y, job.workers, w)
            if budget is None:
                result = worker.train(job, w, held, params, store, WAIT_S, takeover=takeover, validation=validation)
            else:  # hands on every `budget` steps: each successor rejoins where its predecessor stopped
                runs = []
                while not runs or not runs[-1].finished:
                    runs.append(worker.train(job, w, held, params, store, WAIT_S, lambda steps: steps < budget))
                result = runs[-1]
                out[(w, "invocations")] = [(r.rejoined_at, r.steps) for r in runs]
            out[(w, copy)] = (result, store.traffic)
        except Killed:
            out[(w, copy)] = "killed"
            if retry_after is not None:  # Lambda's retry comes late: once the others passed this step
                client.xread({f"lnn:{{{run_id}}}:dp:{retry_after}:done": "0-0"}, block=60_000)
            if retry:
                one(w, 2)  # the retry: a new environment, nothing of the killed one's memory
        except Exception as exc:  # a late duplicate may find its step gone
            out[(w, copy)] = exc
        finally:
            client.close()

    threads = [threading.Thread(target=one, args=(w, 0)) for w in range(job.workers)]
    threads += [threading.Thread(target=one, args=(w, 1)) for w in copies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    return out


def bits(params: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {k: v.tobytes() for k, v in sorted(params.items())}


@pytest.mark.parametrize(
    ("dtype", "optimizer", "batch_size"),
    [("float64", "adam", None), ("float32", "momentum", 40), ("float32", "gd", None), ("float64", "adam", 64)],
)
def test_workers_reducing_through_redis_end_bit_identical_for_1_2_and_4_workers(
    redis_server, dtype, optimizer, batch_size
) -> None:
    x, y, params, sizes = problem(dtype)
    want_params, want_costs, _, want_hits = reference.train(
        x, y, params, ["tanh", "softmax"], 2, 0.05, optimizer, 0.3, batch_size, 9, workers=1
    )
    for n in (1, 2, 4):
        out = run_workers(redis_server, x, y, params, job_for(sizes, n, optimizer, batch_size), secrets.token_hex(6))
        for w in range(n):
            result, _ = out[(w, 0)]
            assert bits(result.params) == bits(want_params), f"worker {w} of {n} ends on other weights"
            assert result.costs == want_costs and result.hits == dict(enumerate(want_hits)), (
                f"worker {w} of {n} has another cost curve"
            )


def test_each_workers_bytes_per_step_do_not_grow_with_the_number_of_workers(redis_server) -> None:
    x, y, params, sizes = problem("float32")
    params_bytes = sum(v.nbytes for v in params.values())
    per_worker = {}
    for n in (2, 4, 8):
        out = run_workers(redis_server, x, y, params, job_for(sizes, n, "gd", None, epochs=3), secrets.token_hex(6))
        moved = [(t.sent + t.received) / r.steps for r, t in out.values()]
        per_worker[n] = max(moved)
        # its partial to everyone, everyone's nodes of its chunk, its chunk out, every chunk in: 3 + 1/n
        # parameter vectors, and the float64s chunk 0's owner moves: the nodes' tallies (loss sum and
        # hits, 16 bytes a node) and the step's figures (costs and hits, 24 bytes) out and back in
        assert per_worker[n] <= (3 + 1 / n) * params_bytes + 32 * n + 64, (n, per_worker[n], params_bytes)
    assert per_worker[8] <= per_worker[2] * 1.05, per_worker


def test_a_duplicate_worker_leaves_the_result_identical(redis_server) -> None:
    x, y, params, sizes = problem("float64")
    want_params, want_costs, _, want_hits = reference.train(
        x, y, params, ["tanh", "softmax"], 2, 0.05, "adam", 0.3, 64, 9, 4
    )
    out = run_workers(redis_server, x, y, params, job_for(sizes, 4, "adam", 64), secrets.token_hex(6), copies=(1, 3))
    for w in range(4):
        finished = [out[(w, c)] for c in (0, 1) if (w, c) in out and not isinstance(out[(w, c)], Exception)]
        assert finished, f"no copy of worker {w} finished: {out}"
        for result, _ in finished:
            assert (
                bits(result.params) == bits(want_params)
                and result.costs == want_costs
                and result.hits == dict(enumerate(want_hits))
            )
    # A copy that fell behind finds its step's chunks gone and stops, having changed nothing.
    assert all(isinstance(v, Behind) for v in out.values() if isinstance(v, Exception)), out


def test_workers_handing_on_at_their_budget_end_identical(redis_server) -> None:
    x, y, params, sizes = problem("float64")
    want_params, want_costs, _, want_hits = reference.train(
        x, y, params, ["tanh", "softmax"], 3, 0.05, "momentum", 0.3, 64, 9, 4
    )
    out = run_workers(
        redis_server, x, y, params, job_for(sizes, 4, "momentum", 64, epochs=3), secrets.token_hex(6), budget=5
    )
    for w in range(4):
        assert out[(w, "invocations")] == [(-1, 5), (4, 5), (9, 2)], out[(w, "invocations")]  # 12 steps
        result, _ = out[(w, 0)]
        assert (
            bits(result.params) == bits(want_params)
            and result.costs == want_costs
            and result.hits == dict(enumerate(want_hits))
        )


@pytest.mark.parametrize("where", ["before-send", "after-publish"])
@pytest.mark.parametrize("victim", [0, 2])
def test_a_killed_worker_started_again_rejoins_and_the_run_ends_identical(redis_server, victim, where) -> None:
    x, y, params, sizes = problem("float32")
    want_params, want_costs, _, want_hits = reference.train(
        x, y, params, ["tanh", "softmax"], 3, 0.05, "adam", 0.3, 64, 9, 4
    )
    job = job_for(sizes, 4, "adam", 64, epochs=3)  # 4 batches an epoch: 12 steps
    out = run_workers(redis_server, x, y, params, job, secrets.token_hex(6), kill=(victim, 6, where))
    assert out[(victim, 0)] == "killed"
    retry, _ = out[(victim, 2)]
    assert retry.rejoined_at in (5, 6) and retry.steps == 12 - retry.rejoined_at - 1
    for w in range(4):
        result, _ = out[(w, 2 if w == victim else 0)]
        assert bits(result.params) == bits(want_params), f"worker {w} ends on other weights"
        assert result.costs == want_costs and result.hits == dict(enumerate(want_hits))


def test_a_missing_worker_stalls_the_others_only_up_to_the_waits_bound(redis_server) -> None:
    x, y, params, sizes = problem("float64")
    job = job_for(sizes, 2, "gd", None)
    client = redis.Redis(**redis_server.client_kwargs(), socket_timeout=30)
    store = ReductionStore(client, secrets.token_hex(6), 2, "float64")
    started = time.monotonic()
    with pytest.raises(Stalled, match=r"step 0's partials of chunk 0: \[\(3, 1\)\] still missing"):
        worker.train(job, 0, worker.holding(x, y, 2, 0), params, store, wait_s=1.5)
    assert 1.5 <= time.monotonic() - started < 10
    client.close()


TAKEOVER_S = 1.0


@pytest.mark.parametrize("lost", [0, 2])
def test_a_worker_that_never_comes_is_stood_in_for_and_the_run_ends_identical(redis_server, lost) -> None:
    x, y, params, sizes = problem("float32")
    want_params, want_costs, _, want_hits = reference.train(
        x, y, params, ["tanh", "softmax"], 3, 0.05, "adam", 0.3, 64, 9, 4
    )
    takeover = worker.Takeover(TAKEOVER_S, micro_shard_data(x, y))
    job = job_for(sizes, 4, "adam", 64, epochs=3)
    started = time.monotonic()
    out = run_workers(redis_server, x, y, params, job, secrets.token_hex(6), takeover=takeover, absent=(lost,))
    elapsed = time.monotonic() - started
    for w in set(range(4)) - {lost}:
        result, _ = out[(w, 0)]
        assert result.lost == {lost}
        assert (
            bits(result.params) == bits(want_params)
            and result.costs == want_costs
            and result.hits == dict(enumerate(want_hits))
        ), f"worker {w}"
    # The loss is waited for once (the bound, at the first step and at the first gather), not at every step.
    assert elapsed < 2 * TAKEOVER_S + 20, elapsed


@pytest.mark.parametrize("victim", [0, 3])
def test_a_killed_worker_is_stood_in_for_and_its_late_retry_rejoins_identical(redis_server, victim) -> None:
    x, y, params, sizes = problem("float64")
    want_params, want_costs, _, want_hits = reference.train(
        x, y, params, ["tanh", "softmax"], 3, 0.05, "momentum", 0.3, 40, 9, 4
    )
    takeover = worker.Takeover(TAKEOVER_S, micro_shard_data(x, y))
    job = job_for(sizes, 4, "momentum", 40, epochs=3)  # 6 batches an epoch: 18 steps
    out = run_workers(
        redis_server,
        x,
        y,
        params,
        job,
        secrets.token_hex(6),
        kill=(victim, 4, "before-send"),
        takeover=takeover,
        retry_after=9,
    )
    assert out[(victim, 0)] == "killed"
    for w in range(4):
        result, _ = out[(w, 2 if w == victim else 0)]
        assert (
            bits(result.params) == bits(want_params)
            and result.costs == want_costs
            and result.hits == dict(enumerate(want_hits))
        ), f"worker {w}"
        if w != victim:
            assert result.stood_in == {victim}, (w, result.stood_in)
    retry, _ = out[(victim, 2)]
    assert retry.rejoined_at >= 8


def test_a_killed_worker_never_retried_is_stood_in_for_to_the_end(redis_server) -> None:
    x, y, params, sizes = problem("float32")
    want_params, want_costs, _, want_hits = reference.train(
        x, y, params, ["tanh", "softmax"], 2, 0.05, "gd", 0.3, None, 9, 4
    )
    takeover = worker.Takeover(TAKEOVER_S, micro_shard_data(x, y))
    job = job_for(sizes, 4, "gd", None)
    out = run_workers(
        redis_server,
        x,
        y,
        params,
        job,
        secrets.token_hex(6),
        kill=(1, 0, "after-publish"),
        takeover=takeover,
        retry=False,
    )
    for w in (0, 2, 3):
        result, _ = out[(w, 0)]
        assert (
            bits(result.params) == bits(want_params)
            and result.costs == want_costs
            and result.hits == dict(enumerate(want_hits))
        ), f"worker {w}"


def test_a_cancel_wakes_a_worker_blocked_in_a_wait_at_once(redis_server) -> None:
    """Worker 0 of 2 waits for worker 1's partials, which never come; the cancel's entry on the
    stop stream ends its wait at once, not at the wait's bound."""
    x, y, params, sizes = problem("float64")
    job = job_for(sizes, 2, "gd", None)
    client = redis.Redis(**redis_server.client_kwargs(), socket_timeout=30)
    run_id = secrets.token_hex(6)
    store = ReductionStore(client, run_id, 2, "float64")
    cancel = threading.Timer(0.5, lambda: RedisTensorStore(client).request_cancel(run_id, workers=True))
    cancel.start()
    started = time.monotonic()
    with pytest.raises(Stopped) as stopped:
        worker.train(job, 0, worker.holding(x, y, 2, 0), params, store, wait_s=30)
    assert stopped.value.cause is StopCause.CANCELLED
    assert time.monotonic() - started < 5, "woken by the cancel, not by the wait's 30 s bound"
    client.close()


def test_a_resume_starts_its_generation_once(redis_server) -> None:
    client = redis.Redis(**redis_server.client_kwargs(), socket_timeout=30)
    run_id = secrets.token_hex(6)
    before = ReductionStore(client, run_id, 2, "float64")
    before.publish(3, 0, np.ones(4), np.zeros(0), (1.0, 1.0, 0))
    assert start_generation(client, run_id, 1), "the resume clears the generation before"
    assert before.resume_point() == -1 and not client.exists(f"lnn:{{{run_id}}}:dp:3:w:0")
    resumed = ReductionStore(client, run_id, 1, "float64", generation=1)
    resumed.publish(0, 0, np.ones(4), np.zeros(0), (1.0, 1.0, 0))
    assert not start_generation(client, run_id, 1), "a resume sent again leaves its workers' reduction"
    assert resumed.resume_point() == 0
    stale = ReductionStore(client, run_id, 1, "float64")  # a worker of the generation before, still alive
    stale.publish(0, 0, np.ones(4), np.zeros(0), (1.0, 1.0, 0))
    with pytest.raises(Behind, match="generation 1 replaced generation 0"):
        stale.gather(0, time.monotonic() + 1)
    client.close()


@pytest.mark.parametrize(("workers", "victim"), [(1, None), (2, None), (4, None), (4, 0)])
def test_validation_scores_through_redis_are_the_references_whoever_scores(redis_server, workers, victim) -> None:
    """Each epoch's validation scores: published with chunk 0's update at the next epoch's first
    step, by its owner or (`victim` 0 killed right there, before sending) by a worker standing in
    for it; the last epoch's from the final parameters. The same bits for 1, 2 and 4 workers."""
    x, y, params, sizes = problem("float64")
    x_val, y_val, _, _ = problem("float64", m=53)
    want: list[tuple[float, float]] = []
    want_params, _, _, _ = reference.train(
        x,
        y,
        params,
        ["tanh", "softmax"],
        3,
        0.05,
        "adam",
        0.3,
        40,
        9,
        workers,
        on_epoch=lambda e, p: want.append(engine.evaluate_model(["tanh", "softmax"], p, x_val, y_val)),
    )
    scored: list[int] = []

    def score(p: dict[str, np.ndarray]) -> tuple[float, float]:
        scored.append(1)
        return engine.evaluate_model(["tanh", "softmax"], p, x_val, y_val)

    run_id = secrets.token_hex(6)
    job = job_for(sizes, workers, "adam", 40, epochs=3)  # 6 batches an epoch: epoch 1 starts at step 6
    takeover = worker.Takeover(TAKEOVER_S, micro_shard_data(x, y)) if victim is not None else None
    kill = (victim, 6, "before-send") if victim is not None else None
    out = run_workers(
        redis_server, x, y, params, job, run_id, kill=kill, takeover=takeover, retry_after=9, validation=score
    )
    for w in range(workers):
        result, _ = out[(w, 2 if w == victim else 0)]
        assert bits(result.params) == bits(want_params), f"worker {w}"
    client = redis.Redis(**redis_server.client_kwargs())
    published = ReductionStore(client, run_id, workers, "float64").validation_scores()
    final = score(want_params)
    assert [published[0], published[1], final] == want
    assert len(scored) >= 3  # epochs 0 and 1 scored by the workers, at least once each


class Interleaved(redis.Redis):
    """A connection that runs `between` once, right after its `after`-th command from the moment it
    is armed: another worker's moves landing between this worker's round trips."""

    def arm(self, after: int, between) -> None:
        self.left, self.between = after, between

    def execute_command(self, *args, **options):
        answer = super().execute_command(*args, **options)
        if getattr(self, "left", 0) > 0:
            self.left -= 1
            if self.left == 0:
                self.between()
        return answer


def test_the_finishs_claim_is_taken_renewed_and_refused_in_one_round_trip(redis_server) -> None:
    client = Interleaved(**redis_server.client_kwargs())
    store = ReductionStore(client, secrets.token_hex(6), 2, "float64")
    key = store._run_key("finisher")
    assert store.claim_finish(0, 5) and client.get(key) == b"0"
    assert client.ttl(key) <= 5
    assert not store.claim_finish(1, 5), "held by worker 0"
    second: list[bool] = []
    client.arm(2, lambda: second.append(True))  # a second command of the renewal would set this
    assert store.claim_finish(0, 100), "the holder renews"
    assert not second, "the renewal is one round trip"
    client.arm(0, None)
    assert 5 < client.ttl(key) <= 100, "its lease renewed from now"
    client.close()


@pytest.mark.parametrize("after", [1, 2, 3], ids=["after-1st-round-trip", "after-2nd", "after-3rd"])
def test_a_renewal_after_the_lease_lapsed_and_another_claimed_never_extends_the_new_holders_lease(
    redis_server, after
) -> None:
    """Worker 0 holds the finish and renews its claim with a long lease (100 s). After the
    renewal's `after`-th round trip (or after the renewal, if it makes fewer), its lease lapses
    and worker 1 claims the finish for 5 s. Whatever the moment, worker 1 holds the finish
    afterwards, on its own 5 s lease: a renewal that read worker 0's claim, then wrote after the
    lapse, would have given worker 1's claim worker 0's 100 s."""
    run_id = secrets.token_hex(6)
    client, other = Interleaved(**redis_server.client_kwargs()), redis.Redis(**redis_server.client_kwargs())
    holder, taker = ReductionStore(client, run_id, 2, "float64"), ReductionStore(other, run_id, 2, "float64")
    key = holder._run_key("finisher")
    assert holder.claim_finish(0, 5)
    took: list[bool] = []

    def lapse_and_take() -> None:
        other.delete(key)  # the lease ran out (as EX would end it, without waiting for it)
        took.append(taker.claim_finish(1, 5))

    client.arm(after, lapse_and_take)
    renewed = holder.claim_finish(0, 100)
    if not took:  # the renewal made fewer round trips: the lapse comes after it
        lapse_and_take()
    assert took == [True]
    assert other.get(key) == b"1"
    assert 0 < other.ttl(key) <= 5, (renewed, other.ttl(key))
    assert not holder.claim_finish(0, 100) and other.ttl(key) <= 5, "a lapsed holder's renewal is refused"
    client.close()
    other.close()


@pytest.mark.parametrize("gone", ["cursor", "cancelled"])
def test_a_wait_ends_within_a_block_once_the_cache_lost_the_run_or_it_was_cancelled(redis_server, gone) -> None:
    """A worker waiting for another's partials when its run's node is replaced (empty: the cursor
    gone, and nobody able to write a stop to it) ends with CacheLost about a block later, not at its
    bound; a cancel mark found so stops it. A bare reduction (no cursor to watch) waits to its bound."""
    client = redis.Redis(**redis_server.client_kwargs())
    run_id = secrets.token_hex(6)
    cursor = cache_key(run_id, CacheKind.CURSOR)
    client.set(cursor, "-1")
    store = ReductionStore(client, run_id, 2, "float64", watch_cursor=True)
    if gone == "cursor":
        disturb, expected = (lambda: client.delete(cursor)), CacheLost
    else:
        disturb, expected = (lambda: client.set(cache_key(run_id, CacheKind.CANCEL), "1")), Stopped
    threading.Timer(0.3, disturb).start()
    started = time.monotonic()
    with pytest.raises(expected):
        store.collect(1, 0, {(0, 1)}, time.monotonic() + 30)
    assert time.monotonic() - started < 5, "ended near one blocking read, not at the 30 s bound"
    bare = ReductionStore(client, run_id, 2, "float64")
    with pytest.raises(Stalled):
        bare.collect(1, 0, {(0, 1)}, time.monotonic() + 1.5)
    client.close()
