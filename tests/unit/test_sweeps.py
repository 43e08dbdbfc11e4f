"""The sweep request's validation, its trials, the validation split and ASHA's decisions: pure."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data.split import SplitError, carve, validation_indices
from trainer.sweep import asha, space
from trainer.vocabulary import RungDecision

BASE = {
    "dataset": "moons",
    "neurons": {"layer1": 8, "layer2": 1},
    "activations": {"layer1": "relu", "layer2": "sigmoid"},
    "epochs": 300,
    "learning_rate": 0.01,
}


def request(**extra):
    return {
        "action": "sweep",
        "base": BASE,
        "space": {"learning_rate": {"log_uniform": [1e-4, 1e-1]}, "optimizer": ["gd", "adam"]},
        "strategy": "random",
        "trials": 24,
        **extra,
    }


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"space": {}}, "space: no dimension to search"),
        ({"space": {"optimizer": []}}, "space.optimizer: an empty list of values"),
        ({"space": {"dataset": ["a", "b"]}}, "space.dataset: cannot be searched"),
        ({"space": {"neurons.first": [1]}}, "space.neurons.first: a dotted key must be neurons.layerN"),
        ({"space": {"l2": {"normal": [0, 1]}}}, "space.l2: 'normal' is not a distribution"),
        ({"space": {"l2": {"uniform": [1, 0]}}}, "space.l2: uniform needs [low, high] with low < high"),
        ({"space": {"learning_rate": {"log_uniform": [0, 1]}}}, "log_uniform needs low > 0"),
        ({"space": {"l2": 0.1}}, "space.l2: must be a list of values"),
        ({"space": {"seed": [[1]]}}, "space.seed: values must be numbers, strings or null"),
        ({"strategy": "grid"}, "a grid needs a list of values, not a log_uniform distribution"),
        ({"strategy": "bayes"}, "strategy: must be one of 'grid', 'random', got 'bayes'"),
        ({"trials": None}, "trials: a random sweep needs the number of trials"),
        ({"trials": 0}, "trials: Expected `int` >= 1, got 0"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"max_concurrency": 0}, "max_concurrency: Expected `int` >= 1, got 0"),
        ({"validation_fraction": 1.0}, "validation_fraction: Expected `float` < 1.0, got 1.0"),
        ({"metric": "test_accuracy"}, "metric: must be one of 'validation_accuracy', got 'test_accuracy'"),
        ({"early_stopping": {"asha": {"min_epochs": 0}}}, "early_stopping.asha.min_epochs"),
        ({"early_stopping": {"hyperband": {}}}, "early_stopping.hyperband: unknown field"),
        ({"base": {**BASE, "run_id": "x"}}, "base.run_id: each trial's run id"),
        ({"base": {**BASE, "notify_every": 5}}, "base.notify_every: a sweep sends one summary"),
        ({"sweep_id": "no spaces"}, "sweep_id: must be 1-56 letters"),
        (
            {"strategy": "grid", "trials": 3, "space": {"optimizer": ["gd", "adam"]}},
            "trials: the grid has 2 points; leave trials out or give 2",
        ),
    ],
)
def test_bad_sweep_requests_are_refused_naming_the_problem(change, problem) -> None:
    sweep, problems = space.parse(request(**change))
    assert sweep is None
    assert any(problem in p for p in problems), problems


def test_every_problem_is_listed_at_once() -> None:
    _, problems = space.parse(request(space={"optimizer": [], "dataset": [1]}, trials=None))
    assert len(problems) == 3


def test_random_trials_are_seeded() -> None:
    first, _ = space.parse(request(seed=7))
    again, _ = space.parse(request(seed=7))
    other, _ = space.parse(request(seed=8))
    trials = space.assignments(first)
    assert trials == space.assignments(again) and trials != space.assignments(other)
    assert len(trials) == 24
    assert all(1e-4 <= t["learning_rate"] <= 1e-1 and t["optimizer"] in ("gd", "adam") for t in trials)


def test_grid_is_the_product_in_key_order() -> None:
    sweep, _ = space.parse(
        request(strategy="grid", trials=None, space={"optimizer": ["gd", "adam"], "neurons.layer1": [4, 8, 16]})
    )
    trials = space.assignments(sweep)
    assert len(trials) == 6
    assert trials[:3] == [{"optimizer": "gd", "neurons.layer1": n} for n in (4, 8, 16)]
    built = space.trial_request(BASE, trials[4])
    assert built["neurons"] == {"layer1": 8, "layer2": 1} and built["optimizer"] == "adam"
    assert BASE["neurons"]["layer1"] == 8  # the base itself is not changed


def test_asha_rungs() -> None:
    assert asha.rungs(25, 3, 300) == (25, 75, 225)
    assert asha.rungs(25, 3, 25) == ()


def test_asha_decisions_on_a_constructed_case() -> None:
    """Trials arrive at a rung one by one with these accuracies (reduction factor 3): each goes on
    only if it is in the top ⌊n/3⌋ (at least 1) of the n trials at the rung so far."""
    arrivals = [0.70, 0.60, 0.80, 0.75, 0.50, 0.90, 0.85]
    expected = [
        RungDecision.CONTINUE,  # alone: the best so far always goes on
        RungDecision.STOP,  # 2 at the rung, 1 kept: 0.70 is better
        RungDecision.CONTINUE,  # the best of 3
        RungDecision.STOP,  # 4 at the rung, 1 kept: 0.80 is better
        RungDecision.STOP,  # 5, 1 kept: 4 are better
        RungDecision.CONTINUE,  # the best of 6 (2 kept)
        RungDecision.CONTINUE,  # 7, 2 kept: only 0.90 is better
    ]
    seen: list[float] = []
    got = []
    for value in arrivals:
        got.append(asha.decide(value, seen, 3))
        seen.append(value)
    assert got == expected


def test_asha_ties_go_to_the_earlier_arrival() -> None:
    assert asha.decide(0.5, [0.5], 2) is RungDecision.STOP
    assert asha.decide(0.5, [0.4], 2) is RungDecision.CONTINUE
    assert asha.decide(0.5, [0.5, 0.4, 0.3], 2) is RungDecision.CONTINUE  # 4 at the rung, 2 kept


def test_validation_split_is_seeded_and_from_the_training_set_only() -> None:
    x = np.arange(100).reshape(50, 2)
    raw = {"train_set_x": x, "train_set_y": np.arange(50) % 2, "test_set_x": -x[:10], "test_set_y": np.ones(10)}
    indices = validation_indices(50, 0.2, 3)
    assert len(indices) == 10 and np.array_equal(indices, validation_indices(50, 0.2, 3))
    assert not np.array_equal(indices, validation_indices(50, 0.2, 4))
    train, held = carve(raw, indices)
    assert train["test_set_x"] is raw["test_set_x"] and train["test_set_y"] is raw["test_set_y"]
    assert len(train["train_set_x"]) == 40 and len(held["x"]) == 10
    together = np.concatenate([train["train_set_x"], held["x"]])
    assert sorted(map(tuple, together)) == sorted(map(tuple, x))  # disjoint, and nothing else in it


@pytest.mark.parametrize("fraction", [0.001, 0.999])
def test_a_split_that_leaves_a_side_empty_is_refused(fraction) -> None:
    with pytest.raises(SplitError, match="each needs at least one"):
        validation_indices(50, fraction, 1)


def test_every_problem_of_a_sweep_comes_in_one_round() -> None:
    # A field's own problem and the space's problems used to come back one round after the other.
    _, problems = space.parse(request(max_concurrency=0, space={"dataset": ["a"], "l2": {"normal": [0, 1]}}))
    assert any(p.startswith("max_concurrency:") for p in problems)
    assert any(p.startswith("space.dataset: cannot be searched") for p in problems)
    assert any(p.startswith("space.l2: 'normal' is not a distribution") for p in problems)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_random_sweep_is_refused_for_a_value_it_might_not_draw(seed: int) -> None:
    # One trial draws one of three optimizers; whichever it draws, the bad one is named.
    sweep = request(trials=1, seed=seed, space={"optimizer": ["gd", "adam", "sgd2"]})
    _, problems = space.parse(sweep)
    assert problems == ["space.optimizer: value 'sgd2': optimizer: must be one of 'gd', 'momentum', 'adam', got 'sgd2'"]


def test_each_end_of_a_random_distribution_must_be_valid() -> None:
    _, problems = space.parse(request(space={"learning_rate": {"uniform": [0.001, 50.0]}}))
    assert len(problems) == 1 and problems[0].startswith("space.learning_rate: value 50.0: learning_rate:")


def test_the_base_requests_problems_come_with_the_sweeps_own() -> None:
    base = {k: v for k, v in BASE.items() if k != "learning_rate"} | {"epoch": 3}
    _, problems = space.parse(request(trials=None, base=base, space={"learning_rate": [0.1]}))
    assert "trials: a random sweep needs the number of trials" in problems
    assert "base.epoch: unknown field (did you mean 'epochs'?)" in problems
    assert not any(p.startswith("base.learning_rate") for p in problems)  # the space supplies it
