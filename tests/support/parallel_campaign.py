"""The data-parallel chaos campaign (tests/integration/parallel/test_parallel_chaos_on_lambda.py):
each seed draws a request for 4 workers and the disturbances of its run, and the run is compared
with its calm twin. The seeds are LNN_DP_CAMPAIGN_SEEDS (`5`, the default `make test` runs;
`1-12`, or `3,7,9`); the figures are printed in pytest's summary.

    python -m tests.support.parallel_campaign --seeds 1-12

runs the campaign over those seeds (pytest on the campaign's file, with its own local cloud) and
prints the figures: runs, duplicate copies, kills, AWS faults, runs identical to their calm twin,
problems.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
from dataclasses import dataclass, field
from typing import Any

from tests.support.parallel import REQUEST
from trainer.local.faults import FaultPlan
from trainer.local.lambda_service import Chaos

SEEDS_VARIABLE = "LNN_DP_CAMPAIGN_SEEDS"
DEFAULT_SEEDS = "5"
WORKERS = 4
# As the fault campaign's: a run makes many DynamoDB calls (the workers' heartbeats, the finish's
# items), a few to S3 and SNS, so that each service sees some faults.
FAULT_FRACTIONS = {"dynamodb": 0.08, "s3": 0.2, "sns": 0.3}
NOTIFY_EVERY = 2
SPIRALS_EXAMPLES = 450  # REQUEST's training set, before a validation split
MIN_STEPS = 30  # steps of a run at least (a full-batch run has one an epoch): many events to disturb


def seeds(text: str | None = None) -> list[int]:
    """The campaign's seeds from `1-12`, `3,7,9` or a mix (`1-4,9`); LNN_DP_CAMPAIGN_SEEDS when not given."""
    text = os.environ.get(SEEDS_VARIABLE, DEFAULT_SEEDS) if text is None else text
    found: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(f"{SEEDS_VARIABLE}: {part!r} is not a seed nor a range of seeds (a-b)")
        first, last = int(lo), int(hi) if dash else int(lo)
        if last < first:
            raise ValueError(f"{SEEDS_VARIABLE}: the range {part!r} is empty")
        found.extend(n for n in range(first, last + 1) if n not in found)
    if not found:
        raise ValueError(f"{SEEDS_VARIABLE} names no seed")
    return found


@dataclass(frozen=True)
class Round:
    """One seed's request and the disturbances of its stormy run."""

    seed: int
    request: dict[str, Any]
    chaos: Chaos
    faults: FaultPlan

    @property
    def label(self) -> str:
        r = self.request
        return (
            f"seed {self.seed}: {r['optimizer']} {r['dtype']} batch {r['batch_size']} l2 {r['l2']} "
            f"validation {r['validation_fraction']} epochs {r['epochs']} "
            f"steps/inv {r['max_steps_per_invocation']} x{self.chaos.duplicates} kill {self.chaos.kill_probability}"
        )


def draw(seed: int, hosts: tuple[str, ...]) -> Round:
    """The seed's round, every choice from its own generator: the same round on every machine."""
    rng = random.Random(7000 + seed)
    batch_size = rng.choice([None, 64, 100, 150])
    validation = rng.choice([0.0, 0.2])
    examples = round(SPIRALS_EXAMPLES * (1 - validation))
    batches = 1 if batch_size is None else math.ceil(examples / batch_size)
    request = {
        **REQUEST,
        "workers": WORKERS,
        "epochs": max(REQUEST["epochs"], math.ceil(MIN_STEPS / batches)),
        "optimizer": rng.choice(["gd", "momentum", "adam"]),
        "batch_size": batch_size,
        "validation_fraction": validation,
        "dtype": rng.choice(["float64", "float32"]),
        "l2": rng.choice([0.0, 0.2]),
        "seed": seed,
        "max_steps_per_invocation": rng.randint(3, 10),  # many hand-ons: many copies to duplicate and kill
        "notify_every": NOTIFY_EVERY,
        "checkpoint_every": rng.choice([0, 2, 3]),
    }
    # Every worker event at least twice at nearly the same moment (with one copy, three failed
    # attempts in a row would end a worker on AWS too; the others stand in for it, but the campaign
    # is about copies), kills within the first tens of ms of an attempt (Lambda's retry follows).
    chaos = Chaos(
        seed=seed,
        duplicates=rng.choice([2, 3]),
        kill_probability=rng.choice([0.15, 0.2, 0.25]),
        kill_window_s=0.03,
        max_delay_s=0.02,
        hosts=hosts,
    )
    return Round(seed, request, chaos, FaultPlan(seed=seed, fractions=FAULT_FRACTIONS))


@dataclass
class Figures:
    runs: int = 0
    duplicates: int = 0  # copies delivered beyond the first of each event
    overlapping: int = 0  # deliveries that ran while another copy of their event ran
    kills: int = 0
    retries: int = 0
    faults: int = 0  # AWS faults injected into the functions' requests
    identical: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, stats: dict[str, Any]) -> None:
        self.runs += 1
        self.duplicates += stats["duplicate_copies"]
        self.overlapping += stats["overlapping_deliveries"]
        self.kills += stats["kills"]
        self.retries += stats["retries"]
        self.faults += stats["aws_faults"]["injected_total"]

    def line(self) -> str:
        return (
            f"runs {self.runs}, duplicate copies {self.duplicates}, overlapping deliveries {self.overlapping}, "
            f"kills {self.kills}, Lambda retries {self.retries}, AWS faults {self.faults}, "
            f"identical to their calm twin {self.identical}/{self.runs}, problems {len(self.problems)}"
        )


FIGURES = Figures()  # the session's, over every seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.parallel_campaign",
        description="The data-parallel chaos campaign over many seeds; prints its figures.",
    )
    parser.add_argument("--seeds", default="1-12", help="seeds: 1-12, 3,7,9 or a mix (default 1-12)")
    args = parser.parse_args(argv)
    try:
        seeds(args.seeds)
    except ValueError as exc:
        parser.error(str(exc))
    import pytest

    os.environ[SEEDS_VARIABLE] = args.seeds
    target = "tests/integration/parallel/test_parallel_chaos_on_lambda.py"
    return int(pytest.main([target, "-q", "-p", "no:cacheprovider", "-rN"]))


if __name__ == "__main__":
    sys.exit(main())
