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
    # worker 0: its node to both chunks (40 B) with the loss sum (8), its chunk (20) with the two costs
    # (16) and its state (40); worker 1 the same without the costs
    assert sent == ((40 + 8 + 20 + 16 + 40) + (40 + 8 + 20 + 40)) / 2
    # worker 0: both nodes' slices of its chunk (2 x 20) and their loss sums (2 x 8); worker 1 the
    # slices only; each gathers every chunk (40) and chunk 0's costs (16)
    assert received == ((40 + 16 + 56) + (40 + 56)) / 2


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
        assert r.step_s == pytest.approx(8.4 / n + r.sync_s)
        assert r.run_s == pytest.approx(3.0 + 0.05 + 376 * MB / n / 75e6 + 4 * r.step_s)
        assert 0 < r.steps_efficiency <= 1 and 0 < r.efficiency <= 1
    assert [rows[n].speedup for n in pm.MODELLED_WORKERS] == sorted(rows[n].speedup for n in pm.MODELLED_WORKERS)
    # GB-s: every worker at its memory size for the run after the launch, the launch at 1 GB
    assert rows[16].gb_s == pytest.approx(16 * 2 * (rows[16].run_s - 3.0) + 3.0)
    assert rows[16].cost == pytest.approx(rows[16].gb_s * A.gb_s_price + 17 * A.request_price)


def test_a_worker_hands_on_at_its_step_budget() -> None:
    rows = {r.workers: r for r in pm.model(workload(steps=5000, chain_step_s=0.01, worker_math_s=0.01), A)}
    assert rows[2].invocations == 3  # 2000 steps an invocation
    assert rows[2].run_s > 3 * A.hop_ms / 1000


def test_small_batches_do_not_pay_and_the_break_even_batches_balance_the_step() -> None:
    example_s = 17e-6
    rows = pm.break_even(MB // 4, 4, 2, example_s, A)
    assert [r.workers for r in rows] == list(pm.MODELLED_WORKERS[1:])
    for r in rows:
        n = r.workers
        # at the batch `over_one`, N workers' step equals one worker's
        assert r.over_one * example_s / n + r.sync_s == pytest.approx(r.over_one * example_s)
        # at the batch `efficient`, a step is 70% math
        math_s = r.efficient * example_s / n
        assert math_s / (math_s + r.sync_s) == pytest.approx(0.7)
        assert r.efficient > r.over_one
    two = rows[0]
    assert two.over_half == pytest.approx(two.over_one)  # N/2 = 1: the same question
    # MNIST's batch of 128 is far below what even two workers need
    assert two.over_one > 50 * 128
