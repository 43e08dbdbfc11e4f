"""A data-parallel request (`workers`) is checked at launch, with every other problem, before
anything is written: its bound, the trainer's concurrency, each worker's memory, the cache, the
invocations, and for a sweep the trials' workers at once. The launch's and the sweep's own
validation run with the deployment's settings; no store is reached, as nothing refused gets past
validation."""

from __future__ import annotations

import pytest

from tests.support.settings import MOONS, refusal, services
from trainer import request as request_mod
from trainer.handlers import launch
from trainer.parallel import admission, shards, tree
from trainer.sweep import scheduler


def _parsed(**fields):
    request, problems = request_mod.parse({**MOONS, **fields})
    assert problems == []
    return request


@pytest.mark.parametrize("workers", [0, 17, -2, True, "4", 2.5, None])
def test_a_worker_count_outside_1_to_16_is_refused_by_name(workers) -> None:
    _, problems = request_mod.parse({**MOONS, "workers": workers})
    assert len(problems) == 1 and problems[0].startswith("workers: "), problems


def test_without_workers_a_request_is_the_one_chain_as_before() -> None:
    request, _ = launch.validate(MOONS, services())
    assert request.workers == 1
    assert launch.validate({**MOONS, "workers": 1}, services())[0] == request


def test_a_data_parallel_request_within_every_bound_is_accepted() -> None:
    assert launch.validate({**MOONS, "workers": 4}, services())[0].workers == 4


def test_more_workers_than_the_trainer_may_run_at_once_are_refused() -> None:
    problems = refusal(lambda: launch.validate({**MOONS, "workers": 8}, services(concurrent_chains=6)))
    assert problems == [
        "workers: the 8 workers of a data-parallel run must all run at once, more than this deployment's "
        "ceiling of 6 concurrent chains (the trainer's reserved concurrency, TRAINER_RESERVED_CONCURRENCY); "
        "use fewer workers"
    ]
    assert launch.validate({**MOONS, "workers": 6}, services(concurrent_chains=6))[0].workers == 6


def test_every_worker_must_hold_some_examples() -> None:
    settings = services().settings
    problems = admission.problems(_parsed(workers=16), 10, settings)
    assert problems == [
        "workers: 16 workers on 10 training examples leave a worker none to hold (a worker holds whole "
        "micro-shards, 16 cut from the examples in order); the most workers that all hold some is 2"
    ]
    assert admission.problems(_parsed(workers=2), 10, settings) == []
    assert admission.problems(_parsed(workers=3), 10, settings) != []  # 16 = 6 + 5 + 5 micro-shards: the last empty
    assert admission.problems(_parsed(workers=16), 16, settings) == []


def test_each_worker_counts_its_invocations_against_the_ceiling() -> None:
    # 300 examples at batch 10: 30 batches an epoch, 300 epochs: 9,000 batches; 2000 per invocation.
    request = {**MOONS, "batch_size": 10, "workers": 4}
    problems = refusal(lambda: launch.validate(request, services(run_invocations=19)))
    assert [p for p in problems if p.startswith("invocations: 4 workers need at least 20 ")], problems
    assert launch.validate(request, services(run_invocations=20))[0].workers == 4
    # The chain's plan (45,301 steps of layers) is not a data-parallel run's: 9,000 steps of batches.
    assert launch.validate(request, services(run_steps=9_000, run_invocations=20))[0].workers == 4
    steps = refusal(lambda: launch.validate(request, services(run_steps=8_999)))
    assert [p for p in steps if p.startswith("steps: the run plans 9,000 steps (300 epochs x 30 batches)")], steps


def test_a_network_one_trainer_cannot_hold_trains_in_workers_each_holding_a_share() -> None:
    # 2000 hidden units on the whole batch of 300 examples: about 14 MiB of activations for one
    # trainer; a worker computes one micro-shard (19 examples) at a time.
    request = {**MOONS, "neurons": {"layer1": 2000, "layer2": 1}}
    small = services()
    object.__setattr__(small.settings, "memory_mb", 16)
    one = refusal(lambda: launch.validate(request, small))
    assert [p for p in one if p.startswith("network too large: needs about 14 MiB")], one
    assert launch.validate({**request, "workers": 4}, small)[0].workers == 4


def test_a_worker_holds_a_quarter_of_the_data_of_four() -> None:
    big = dict(neurons={"layer1": 128, "layer2": 10}, activations={"layer1": "relu", "layer2": "softmax"})
    one = request_mod.estimate_bytes(_parsed(**big, dtype="float32"), 784, 960_000)
    four = request_mod.estimate_bytes(_parsed(**big, dtype="float32", workers=4), 784, 960_000)
    assert one > 3.5 * four
    data_one, data_four = 784 * 960_000 * 2 * 4, 784 * shards.held_examples(960_000, 4) * 2 * 4
    assert data_four * 4 == data_one and four > data_four
    request = _parsed(**big, dtype="float32", workers=4)
    problems = request_mod.check_against_data(request, 784, 960_000, 10, memory_mb=3008)
    assert problems == []
    one_problems = request_mod.check_against_data(_parsed(**big, dtype="float32"), 784, 960_000, 10, memory_mb=3008)
    assert one_problems and one_problems[0].startswith("network too large")


def test_the_cache_holds_the_data_parameters_state_and_the_partials_in_flight() -> None:
    sizes = [784, 128, 10]
    params = 784 * 128 + 128 + 128 * 10 + 10
    assert admission.reduction_nodes(4) == 4 and admission.reduction_nodes(16) == 16
    covers = [[(2, 0), (1, 2)], [(1, 3), (1, 4), (0, 10)], [(0, 11), (2, 3)]]  # 6 + 5 + 5 micro-shards
    assert [tree.cover(shards.micro_shards_of(3, w)) for w in range(3)] == covers
    assert admission.reduction_nodes(3) == 7
    # parameters and state, then three kept steps of nodes, parameters and state
    assert admission.cache_bytes(1000, sizes, 4, "adam", 4) == 1000 + 4 * params * (1 + 2 + 3 * (4 + 1 + 2))
    assert admission.cache_bytes(1000, sizes, 8, "gd", 16) == 1000 + 8 * params * (1 + 3 * (16 + 1))
    # Over the capacity, the launch names the cache.
    small = services()
    object.__setattr__(small.settings, "cache_capacity_mib", 1)
    request = {**MOONS, "neurons": {"layer1": 1500, "layer2": 1}, "workers": 16, "optimizer": "adam"}
    problems = refusal(lambda: launch.validate(request, small))
    assert [p for p in problems if p.startswith("dataset: the run needs about")], problems
    assert launch.validate({**request, "workers": 2}, small)[0].workers == 2


def test_a_sweep_counts_each_trials_workers_against_the_concurrency() -> None:
    payload = {
        "action": "sweep",
        "base": {**MOONS, "workers": 4},
        "space": {"learning_rate": [0.01, 0.02, 0.05, 0.1]},
        "strategy": "grid",
        "max_concurrency": 3,
    }
    problems = refusal(lambda: scheduler.validate(payload, services(concurrent_chains=10)))
    assert [p for p in problems if p.startswith("max_concurrency: 3 trials at once x 4 worker(s) is 12 ")], problems
    checked = scheduler.validate({**payload, "max_concurrency": 2}, services(concurrent_chains=10))
    assert [t["request"]["workers"] for t in checked.trials] == [4, 4, 4, 4]


def test_a_data_parallel_sweep_with_early_stopping_is_accepted() -> None:
    payload = {
        "action": "sweep",
        "base": {**MOONS, "workers": 2, "epochs": 4},
        "space": {"learning_rate": [0.01, 0.02]},
        "strategy": "grid",
        "max_concurrency": 2,
        "early_stopping": {"asha": {"min_epochs": 1}},
    }
    checked = scheduler.validate(payload, services(concurrent_chains=10))
    assert [t["request"]["workers"] for t in checked.trials] == [2, 2]


def test_a_data_parallel_run_may_hold_examples_out_for_validation() -> None:
    request, dataset = launch.validate({**MOONS, "workers": 2, "validation_fraction": 0.2}, services())
    assert request.workers == 2 and dataset.examples == 240 and dataset.x_val.shape == (2, 60)
    # the worker that scores them holds them too: counted in each worker's memory
    without = request_mod.estimate_bytes(_parsed(workers=2), 2, 240)
    assert request_mod.estimate_bytes(request, 2, 240) == without + 60 * 2 * 8
