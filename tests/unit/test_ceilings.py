"""Spending ceilings at launch: a run's steps and invocations, a sweep's chains at once. The checks
run the launch's and the sweep's own validation with the deployment's settings; the stores are
never reached because nothing over a ceiling gets past validation."""

from __future__ import annotations

import pytest

from tests.support.settings import MOONS, refusal, services
from trainer import ceilings
from trainer.ceilings import Ceilings
from trainer.handlers import launch
from trainer.settings import Settings
from trainer.statemachine import Plan
from trainer.sweep import scheduler


def test_a_million_epoch_per_step_moons_run_at_batch_1_is_refused_by_name() -> None:
    request = {**MOONS, "epochs": 1_000_000, "batch_size": 1, "chain": "per_step"}
    problems = refusal(lambda: launch.validate(request, services()))
    steps = [p for p in problems if p.startswith("steps: ")]
    calls = [p for p in problems if p.startswith("invocations: ")]
    assert len(steps) == 1 and "MAX_RUN_STEPS" in steps[0]
    assert len(calls) == 1 and "MAX_RUN_INVOCATIONS" in calls[0] and "chain per_step" in calls[0]
    # The figure is the run's plan: epochs x (1 + batches x (2 layers + 1)) + finish.
    train_examples = int(steps[0].split(" x ")[1].split(" batches")[0].replace(",", ""))
    assert f"{1_000_000 * (1 + train_examples * 5) + 1:,} steps" in steps[0]
    assert f"{1_000_000 * (1 + train_examples * 5) + 1:,} Lambda invocations" in calls[0]


def test_the_same_run_within_the_ceilings_is_not_refused_by_them() -> None:
    request = {**MOONS, "epochs": 10, "batch_size": 1, "chain": "per_step"}
    assert launch.validate(request, services())[0].epochs == 10


def test_a_thousand_trial_sweep_at_max_concurrency_1000_is_refused_by_name() -> None:
    payload = {
        "action": "sweep",
        "base": MOONS,
        "space": {"learning_rate": {"log_uniform": [1e-4, 1e-1]}},
        "strategy": "random",
        "trials": 1000,
        "max_concurrency": 1000,
    }
    problems = refusal(lambda: scheduler.validate(payload, services(concurrent_chains=20)))
    named = [p for p in problems if p.startswith("max_concurrency: ")]
    assert named == [
        "max_concurrency: 1,000 trials at once x 1 worker(s) is 1,000 concurrent chains, more than this "
        "deployment's ceiling of 20 (the trainer's reserved concurrency, TRAINER_RESERVED_CONCURRENCY); "
        "lower max_concurrency"
    ]


def test_a_sweep_trial_over_the_run_ceilings_is_named_by_trial() -> None:
    payload = {
        "action": "sweep",
        "base": {**MOONS, "epochs": 1_000_000, "batch_size": 1, "chain": "per_step"},
        "space": {"learning_rate": [0.01, 0.1]},
        "strategy": "grid",
        "max_concurrency": 2,
    }
    problems = refusal(lambda: scheduler.validate(payload, services()))
    assert any("steps: the run plans" in p and "every trial (2)" in p for p in problems), problems


@pytest.mark.parametrize(
    ("trials", "workers", "max_concurrency", "ceiling", "refused"),
    [(4, 1, 4, 4, False), (5, 1, 5, 4, True), (100, 1, 4, 4, False), (3, 2, 3, 5, True), (2, 2, 10, 4, False)],
)
def test_chains_at_once_are_trials_at_once_times_workers(
    trials: int, workers: int, max_concurrency: int, ceiling: int, refused: bool
) -> None:
    problems = ceilings.sweep_problems(trials, workers, max_concurrency, Ceilings(concurrent_chains=ceiling))
    assert bool(problems) == refused


def test_fused_chains_count_invocations_by_the_steps_each_may_take() -> None:
    plan = Plan(layers=2, epochs=1000, batches=10)  # 51 steps an epoch: 51,001 steps
    assert ceilings.invocations(plan, "per_step", 2000) == 51_001
    assert ceilings.invocations(plan, "fused", 2000) == 26
    assert ceilings.run_problems(plan, "fused", 2000, Ceilings(run_invocations=26)) == []
    assert ceilings.run_problems(plan, "fused", 1000, Ceilings(run_invocations=26))[0].startswith("invocations: ")


def test_settings_read_the_ceilings_and_refuse_a_malformed_one(monkeypatch) -> None:
    for name, value in {
        "TABLE_NAME": "runs",
        "MODEL_BUCKET": "b",
        "SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t",
        "TRAINER_FUNCTION_ARN": "arn:aws:lambda:us-east-1:1:function:t",
        "REDIS_HOST": "cache.internal",
        "TRAINER_RESERVED_CONCURRENCY": "25",
        "MAX_RUN_STEPS": "1000",
        "MAX_RUN_INVOCATIONS": "10",
    }.items():
        monkeypatch.setenv(name, value)
    assert Settings.from_env().ceilings == Ceilings(run_steps=1000, run_invocations=10, concurrent_chains=25)
    monkeypatch.delenv("TRAINER_RESERVED_CONCURRENCY")
    assert Settings.from_env().ceilings.concurrent_chains == ceilings.DEFAULT_CONCURRENT_CHAINS
    monkeypatch.setenv("MAX_RUN_STEPS", "-5")
    with pytest.raises(RuntimeError, match="MAX_RUN_STEPS must be a positive integer"):
        Settings.from_env()
