"""The bench's model of a data-parallel run on Lambda (tests/performance/parallel_model.py): LNN's
reduce-scatter traffic counted to the byte, and not growing with the number of workers, where
LambdaML's single summer's does; the sync, the run, its speedup and cost; and the batch sizes from
which adding workers pays."""

from __future__ import annotations

import pytest

from tests.performance import parallel_model as pm

A = pm.Assumptions()
MB = 1_000_000


def test_lnn_traffic_counts_each_workers_bytes_as_the_reduction_store_moves_them() -> None:
    # two workers, one tree node each, chunks of 5 float32 parameters, Adam's two state slots
    sent, received = pm.lnn_traffic([5, 5], 4, 2)
    # worker 0: its node to both chunks (40 B) with the loss sum and hits (16), its chunk (20) with
    # the three figures (24) and its state (40); worker 1 the same without the figures
    assert sent == ((40 + 16 + 20 + 24 + 40) + (40 + 16 + 20 + 40)) / 2
    # worker 0: both nodes' slices of its chunk (2 x 20) and their tallies (2 x 16); worker 1 the
    # slices only; each gathers every chunk (40) and chunk 0's figures (24)
    assert received == ((40 + 32 + 64) + (40 + 64)) / 2


def test_lnn_traffic_counts_the_extra_nodes_of_workers_that_do_not_divide_the_micro_shards() -> None:
    three = sum(pm.lnn_traffic(pm.even_chunks(300, 3), 4, 0))
    four = sum(pm.lnn_traffic(pm.even_chunks(300, 4), 4, 0))
    assert three > four  # 16 micro-shards over 3 workers: a worker's block is more than one tree node


def test_scatter_reduce_traffic_per_worker_does_not_grow_with_n_while_the_single_summers_does() -> None:
    parameters = MB // 4
    lnn = {n: pm.lnn_bytes_per_worker(parameters, 4, n, 2) for n in pm.MODELLED_WORKERS}
    summer = {n: pm.lambdaml_summer_bytes(parameters, 4, n) for n in pm.MODELLED_WORKERS}
    assert lnn[1] == summer[1] == 0  # one worker is the chain: nothing to reduce
    for n in pm.MODELLED_WORKERS[1:]:
        assert 3 * MB < lnn[n] <= 4.5 * MB + 1000, n  # (3 + 3/N) vectors and a few loss sums
        assert summer[n] == n * MB
    assert lnn[64] < lnn[16] < lnn[2]
    assert summer[64] == 32 * summer[2]


def test_the_sync_is_the_slower_link_plus_the_round_trips() -> None:
    s = pm.sync(MB // 4, 4, 16, 2, A)
    per_worker = pm.lnn_bytes_per_worker(MB // 4, 4, 16, 2)
    assert s.lnn_bytes == per_worker
    function = per_worker / (600e6 / 8)
    node = 16 * per_worker / (10e9 / 8)
    assert function > node
    assert s.lnn_s == pytest.approx(function + 5 * 0.5e-3)
    # each direction at full speed: the larger one (a worker receives two vectors) binds
    assert s.lnn_full_duplex_s == pytest.approx(max(2 * MB / (600e6 / 8), 16 * 2 * MB / (10e9 / 8)) + 5 * 0.5e-3)
    # a slower cache node binds instead, and then the sync grows with N
    slow = pm.Assumptions(node_gbps=1.0)
    assert pm.sync(MB // 4, 4, 16, 2, slow).lnn_s == pytest.approx(node * 10 + 5 * 0.5e-3)
    assert pm.sync(MB // 4, 4, 32, 2, slow).lnn_s > pm.sync(MB // 4, 4, 16, 2, slow).lnn_s


def test_lambdamls_summer_grows_linearly_and_polls() -> None:
    at = {n: pm.sync(MB // 4, 4, n, 2, A) for n in (8, 16, 32)}
    step = MB / (600e6 / 8)
    assert at[32].lambdaml_s - at[16].lambdaml_s == pytest.approx(16 * step)
    assert at[16].lambdaml_s - at[8].lambdaml_s == pytest.approx(8 * step)
    assert at[16].lambdaml_polling_s == pytest.approx(at[16].lambdaml_s + 0.1)
    assert at[16].lambdaml_s > 5 * at[16].lnn_s
    assert pm.sync(MB // 4, 4, 1, 2, A) == pm.Sync(0.0, 0.0, 0.0, 0.0, 0.0)


def workload(**changes: object) -> pm.Workload:
    base = {
        "parameters": 235_146,
        "itemsize": 4,
        "state_slots": 2,
        "steps": 4,
        "global_batch": 480_000,
        "chain_step_s": 8.0,
        "worker_math_s": 8.4,
        "shard_fixed_s": 0.001,
        "data_bytes": 376 * MB,
        "launch_s": 3.0,
        "max_steps": 2000,
        "memory_mb": dict.fromkeys(pm.MODELLED_WORKERS, 2048) | {1: 5120},
    }
    return pm.Workload(**(base | changes))  # type: ignore[arg-type]


def test_the_modelled_run_speeds_up_with_workers_and_one_worker_is_the_reference() -> None:
    rows = {r.workers: r for r in pm.model(workload(), A)}
    assert rows[1].speedup == rows[1].efficiency == rows[1].steps_efficiency == 1
    assert rows[1].step_s == 8.0 and rows[1].sync_s == 0
    for n in pm.MODELLED_WORKERS[1:]:
        r = rows[n]
        math_s = 8.4 + (max(16, n) - 16) * 0.001  # past 16 workers, a micro-shard each, each with its fixed cost
        assert r.step_s == pytest.approx(math_s / n + r.sync_s)
        assert r.run_s == pytest.approx(3.0 + 0.05 + 376 * MB / n / 75e6 + 4 * r.step_s)
        # the steps' efficiency: the faster one-worker step (here the chain's) / (N x the step)
        assert r.steps_efficiency == pytest.approx(8.0 / (n * r.step_s))
        assert 0 < r.steps_efficiency < 1 and 0 < r.efficiency < 1
    assert [rows[n].speedup for n in pm.MODELLED_WORKERS] == sorted(rows[n].speedup for n in pm.MODELLED_WORKERS)
    # GB-s: every worker at its memory size for the run after the launch, the launch at 1 GB
    assert rows[16].gb_s == pytest.approx(16 * 2 * (rows[16].run_s - 3.0) + 3.0)
    assert rows[16].cost == pytest.approx(rows[16].gb_s * A.gb_s_price + 17 * A.request_price)


def test_the_launch_is_one_function_moving_its_bytes_at_the_functions_bandwidth() -> None:
    """The chain's launch reads the whole set from S3 and writes it to the cache; a data-parallel
    launch that leaves the examples in the object moves the labels and the test set only: each is
    its time measured here plus its bytes at 600 Mbps, and the run, its GB-s and its speedup follow."""
    moved_by_chain, moved_by_workers = 2 * 376 * MB, 12 * MB
    w = workload(launch_bytes=moved_by_chain, workers_launch_s=1.5, workers_launch_bytes=moved_by_workers)
    rows = {r.workers: r for r in pm.model(w, A)}
    assert rows[1].launch_s == pytest.approx(3.0 + moved_by_chain / 75e6)  # 10 s more than measured here
    for n in pm.MODELLED_WORKERS[1:]:
        r = rows[n]
        assert r.launch_s == pytest.approx(1.5 + moved_by_workers / 75e6)
        assert r.run_s == pytest.approx(r.launch_s + 0.05 + 376 * MB / n / 75e6 + 4 * r.step_s)
    assert rows[16].gb_s == pytest.approx(16 * 2 * (rows[16].run_s - rows[16].launch_s) + rows[16].launch_s)
    # the launch no longer binds: against the launch as measured here (and the same for every N)
    before = {r.workers: r for r in pm.model(workload(), A)}
    assert rows[16].run_s == pytest.approx(before[16].run_s - (3.0 - rows[16].launch_s))
    assert rows[16].speedup > before[16].speedup
    # a saved run with no figure for the workers' launch: theirs is the chain's, bytes and all
    same = {r.workers: r for r in pm.model(workload(launch_bytes=moved_by_chain), A)}
    assert same[16].launch_s == same[1].launch_s == rows[1].launch_s


def test_a_worker_hands_on_at_its_step_budget() -> None:
    rows = {r.workers: r for r in pm.model(workload(steps=5000, chain_step_s=0.01, worker_math_s=0.01), A)}
    assert rows[2].invocations == 3  # 2000 steps an invocation
    assert rows[2].run_s > 3 * A.hop_ms / 1000


def test_the_math_is_fitted_to_two_batch_sizes() -> None:
    # the chain: 1 ms + 20 us an example; the workers together: 16 x 1.5 ms + 18 us an example
    fitted = pm.Math.fit((128, 0.001 + 128 * 20e-6, 0.024 + 128 * 18e-6), (480_000, 0.001 + 9.6, 0.024 + 8.64))
    assert fitted.chain_fixed_s == pytest.approx(0.001) and fitted.chain_example_s == pytest.approx(20e-6)
    assert fitted.shard_fixed_s == pytest.approx(0.0015) and fitted.example_s == pytest.approx(18e-6)
    assert fitted.workers(1000, 4) == pytest.approx(0.024 + 0.018)
    assert fitted.workers(1000, 64) == pytest.approx(64 * 0.0015 + 0.018)  # a micro-shard per worker past 16


def test_small_batches_do_not_pay_and_the_break_even_batches_balance_the_step() -> None:
    fitted = pm.Math(chain_fixed_s=0.0008, chain_example_s=22e-6, shard_fixed_s=0.0013, example_s=19.6e-6)
    rows = pm.break_even(MB // 4, 4, 2, fitted, A)
    assert [r.workers for r in rows] == list(pm.MODELLED_WORKERS[1:])

    def step(b: float, n: int) -> float:
        return fitted.chain(b) if n == 1 else fitted.workers(b, n) / n + pm.sync(MB // 4, 4, n, 2, A).lnn_s

    for r in rows:
        n = r.workers
        assert r.over_one is not None and r.efficient is not None and r.over_half is not None
        # the smallest batch: N beats one worker from it on, not just below it
        assert step(r.over_one, n) < step(r.over_one, 1) and step(r.over_one - 1, n) >= step(r.over_one - 1, 1)
        half = max(1, n // 2)
        assert step(r.over_half, n) < step(r.over_half, half)
        assert r.over_half == 1 or step(r.over_half - 1, n) >= step(r.over_half - 1, half)
        best = min(fitted.chain(r.efficient), fitted.workers(r.efficient, 1))
        assert best >= 0.7 * n * step(r.efficient, n) and r.efficient > r.over_one
    two = rows[0]
    assert two.over_half == two.over_one  # N/2 = 1: the same question
    assert two.over_one > 20 * 128  # MNIST's batch of 128 is far below what even two workers need


def test_a_batch_that_never_pays_is_said_so() -> None:
    # the micro-shards' math 10x the chain's an example: up to 8 workers never catch the chain up
    costly = pm.Math(chain_fixed_s=0.0, chain_example_s=1e-6, shard_fixed_s=0.0, example_s=10e-6)
    assert {r.workers for r in pm.break_even(MB // 4, 4, 2, costly, A) if r.over_one is None} == {2, 4, 8}
    assert pm.smallest_batch(lambda b: b >= 37) == 37
    assert pm.smallest_batch(lambda b: False) is None
