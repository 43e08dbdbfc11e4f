"""The deployment's spending ceilings, checked at launch before anything is written.

A run bills one Lambda invocation per hand-on (per step with ``chain: per_step``), and a sweep runs
``max_concurrency`` trials at once, each with its workers: nothing else stops a request from
planning a billion invocations or taking the region's whole concurrency, which throttles every other
function of the account. Each ceiling is a setting of the deployment (the Terraform functions module
sets them in the environment); a request over one is refused with a problem that names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainer.statemachine import Plan

if TYPE_CHECKING:
    from trainer.request import TrainingRequest

# Defaults when the environment sets nothing (the local cloud, `make demo`): generous enough for
# every benchmark and demo, small enough that a mistyped request cannot run for weeks.
DEFAULT_RUN_STEPS = 10_000_000
DEFAULT_RUN_INVOCATIONS = 200_000
DEFAULT_CONCURRENT_CHAINS = 100


@dataclass(frozen=True)
class Ceilings:
    run_steps: int = DEFAULT_RUN_STEPS
    run_invocations: int = DEFAULT_RUN_INVOCATIONS
    # Chains of invocations running at once: the trainer's reserved concurrency where it has one.
    concurrent_chains: int = DEFAULT_CONCURRENT_CHAINS


def invocations(plan: Plan, chain: str, max_steps_per_invocation: int) -> int:
    """The fewest invocations the run can take: one per step per_step; fused, at most
    `max_steps_per_invocation` steps in each (the time margin can only make it more)."""
    if chain == "per_step":
        return plan.total_steps
    return math.ceil(plan.total_steps / max_steps_per_invocation)


def run_problems(plan: Plan, chain: str, max_steps_per_invocation: int, ceilings: Ceilings) -> list[str]:
    """What of a run's plan is over the deployment's ceilings."""
    problems = []
    steps = plan.total_steps
    if steps > ceilings.run_steps:
        problems.append(
            f"steps: the run plans {steps:,} steps ({plan.epochs:,} epochs x {plan.batches:,} batches x "
            f"{plan.steps_per_batch} steps per batch), more than this deployment's ceiling of "
            f"{ceilings.run_steps:,} (MAX_RUN_STEPS); use fewer epochs or a larger batch_size"
        )
    calls = invocations(plan, chain, max_steps_per_invocation)
    if calls > ceilings.run_invocations:
        how = "one per step (chain per_step)" if chain == "per_step" else f"{max_steps_per_invocation} steps each"
        problems.append(
            f"invocations: the run needs at least {calls:,} Lambda invocations ({how}), more than this "
            f"deployment's ceiling of {ceilings.run_invocations:,} (MAX_RUN_INVOCATIONS); use chain fused "
            "or fewer steps"
        )
    return problems


def sweep_problems(trials: int, workers: int, max_concurrency: int, ceilings: Ceilings) -> list[str]:
    """Whether a sweep's chains at once fit the trainer's concurrency: more would be throttled and
    take the concurrency every other function of the account shares."""
    at_once = min(trials, max_concurrency) * workers
    if at_once <= ceilings.concurrent_chains:
        return []
    return [
        f"max_concurrency: {min(trials, max_concurrency):,} trials at once x {workers} worker(s) is {at_once:,} "
        f"concurrent chains, more than this deployment's ceiling of {ceilings.concurrent_chains:,} "
        "(the trainer's reserved concurrency, TRAINER_RESERVED_CONCURRENCY); lower max_concurrency"
    ]


def check_run(request: TrainingRequest, examples: int, ceilings: Ceilings) -> list[str]:
    """`run_problems` for a request on a dataset of `examples` training examples."""
    batch = min(request.batch_size or examples, examples)
    plan = Plan(layers=request.layers, epochs=request.epochs, batches=math.ceil(examples / max(1, batch)))
    return run_problems(plan, request.chain, request.max_steps_per_invocation, ceilings)
