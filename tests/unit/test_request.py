"""The training request's schema: every problem at once, each naming its field and what was sent."""

from __future__ import annotations

import math

import pytest

from trainer import request as request_mod
from trainer import schema

GOOD = {
    "dataset": "moons",
    "neurons": {"layer1": 4, "layer2": 1},
    "activations": {"layer1": "relu", "layer2": "sigmoid"},
    "epochs": 10,
    "learning_rate": 0.1,
}


def test_a_good_request_takes_its_defaults_and_dumps_every_field() -> None:
    request, problems = request_mod.parse(GOOD)
    assert problems == [] and request is not None
    assert (request.optimizer, request.batch_size, request.dtype, request.chain) == ("gd", None, "float64", "fused")
    dumped = schema.to_json(request)
    assert dumped["max_steps_per_invocation"] == 2000 and dumped["run_id"] is None
    assert request_mod.parse(dumped) == (request, [])  # what is stored reads back as the same request


def test_every_problem_is_reported_at_once() -> None:
    payload = {
        **GOOD,
        "epochs": 0,
        "learning_rate": "0.1",
        "optimizer": "sgd",
        "seed": True,
        "colour": "red",
        "run_id": "a b",
    }
    del payload["dataset"]
    _, problems = request_mod.parse(payload)
    assert sorted(problems) == sorted(
        [
            "colour: unknown field",
            "dataset: required field is missing",
            "epochs: Expected `int` >= 1, got 0",
            "learning_rate: Expected `float`, got `str` ('0.1')",
            "optimizer: must be one of 'gd', 'momentum', 'adam', got 'sgd'",
            "seed: Expected `int`, got `bool` (True)",
            "run_id: must be 1-64 letters, digits, '-' or '_', starting with a letter or digit",
        ]
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(value: float) -> None:
    # The Lambda runtime's JSON parser accepts NaN and Infinity; the bounds must refuse them.
    request, problems = request_mod.parse({**GOOD, "learning_rate": value, "l2": value})
    assert request is None
    assert [p.split(":")[0] for p in problems] == ["learning_rate", "l2"]


@pytest.mark.parametrize(
    ("early_stopping", "problem"),
    [
        ({"asha": {"min_epochs": 0}}, "early_stopping.asha.min_epochs: Expected `int` >= 1"),
        ({"asha": {}}, "early_stopping.asha.min_epochs: required field is missing"),
        ({"asha": {"min_epochs": 5, "eta": 3}}, "early_stopping.asha.eta: unknown field"),
        ({"asha": "soon"}, "early_stopping.asha: Expected `object`, got `str`"),
    ],
)
def test_a_problem_inside_a_nested_object_names_its_path(early_stopping: dict, problem: str) -> None:
    from trainer.sweep import space

    payload = {"base": GOOD, "space": {"optimizer": ["gd"]}, "strategy": "grid", "early_stopping": early_stopping}
    assert space.parse(payload) == (None, [problem])


@pytest.mark.parametrize(
    ("field", "meant"), [("optimiser", "optimizer"), ("epoch", "epochs"), ("learning-rate", "learning_rate")]
)
def test_a_misspelt_field_names_the_field_meant(field: str, meant: str) -> None:
    _, problems = request_mod.parse({**GOOD, field: 1})
    assert f"{field}: unknown field (did you mean {meant!r}?)" in problems


def test_a_field_like_no_other_gets_no_guess() -> None:
    _, problems = request_mod.parse({**GOOD, "colour": "red"})
    assert problems == ["colour: unknown field"]


def test_a_sweep_sent_without_its_action_is_told_so_in_one_problem() -> None:
    sweep = {"base": dict(GOOD), "space": {"learning_rate": [0.1, 0.01]}, "strategy": "grid"}
    request, problems = request_mod.parse(sweep)
    assert request is None
    assert problems == ['action: this looks like a sweep (it has base, space and strategy): add "action": "sweep"']


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (1.0, "validation_fraction: Expected `float` < 1.0, got 1.0"),
        (-0.1, "validation_fraction: Expected `float` >= 0.0, got -0.1"),
        ("0.2", "validation_fraction: Expected `float`, got `str` ('0.2')"),
        (math.nan, "validation_fraction: Expected `float` >= 0.0, got nan"),
    ],
)
def test_a_runs_validation_fraction_is_checked_as_every_field_is(value: object, problem: str) -> None:
    request, problems = request_mod.parse({**GOOD, "validation_fraction": value, "epochs": 0})
    assert request is None and problem in problems and "epochs: Expected `int` >= 1, got 0" in problems
    assert request_mod.parse({**GOOD, "validation_fraction": 0.25})[0].validation_fraction == 0.25
    assert request_mod.parse(GOOD)[0].validation_fraction == 0.0  # none held out unless asked


def test_a_runs_validation_examples_are_carved_from_its_training_set_as_a_sweeps_are() -> None:
    import numpy as np

    from tests.support.settings import services
    from trainer.data.builtin import BUILTIN
    from trainer.data.split import validation_indices
    from trainer.handlers import launch

    request, dataset = launch.validate({**GOOD, "validation_fraction": 0.2, "seed": 5}, services())
    raw = BUILTIN["moons"]()
    held = validation_indices(300, 0.2, 5)
    kept = np.setdiff1d(np.arange(300), held)
    assert request.validation_fraction == 0.2
    assert dataset.examples == 240 and dataset.x_val_raw.shape == (60, 2)
    assert np.array_equal(dataset.x_val_raw, raw["train_set_x"][held])
    assert np.array_equal(dataset.x_train_raw, raw["train_set_x"][kept])
    assert np.array_equal(dataset.x_test_raw, raw["test_set_x"])  # the test set is never touched
    assert "x_val" in dataset.arrays() and "y_val" in dataset.arrays()
    _, plain = launch.validate(GOOD, services())
    assert plain.examples == 300 and plain.x_val_raw is None


def test_a_validation_split_that_leaves_a_side_empty_is_refused_with_the_others() -> None:
    from tests.support.settings import refusal, services
    from trainer.handlers import launch

    problems = refusal(lambda: launch.validate({**GOOD, "validation_fraction": 0.001, "l2": -1}, services()))
    assert problems == [
        "l2: Expected `float` >= 0.0, got -1",
        "validation_fraction: 0.001 of 300 training examples leaves 0 for validation and 300 for training; "
        "each needs at least one",
    ]
    # The batch must fit in what the split leaves for training.
    problems = refusal(lambda: launch.validate({**GOOD, "validation_fraction": 0.2, "batch_size": 250}, services()))
    assert problems == ["batch_size: 250 is larger than the 240 training examples"]


def test_a_sweeps_base_leaves_the_split_to_the_sweep() -> None:
    from trainer.sweep import space

    payload = {"base": {**GOOD, "validation_fraction": 0.3}, "space": {"optimizer": ["gd"]}, "strategy": "grid"}
    sweep, problems = space.parse(payload)
    assert sweep is None
    assert problems == [
        "base.validation_fraction: the sweep's own validation_fraction holds out one split for every trial"
    ]
