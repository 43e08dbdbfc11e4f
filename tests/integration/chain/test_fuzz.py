"""Bad input, fuzzed through LaunchLambda's validate on the local cloud (issue 6, item 5): every
case is accepted (and then usable) or refused with a message that names what is wrong, and a
refused launch writes nothing and invokes nothing. The strategies and checks: tests/support/fuzz.py;
the request validator, event parser and dataset loader alone: tests/unit/test_fuzz.py."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event as event_
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.chain import footprint
from tests.support.fuzz import check_accepted_request, check_refusal, examples, requests
from trainer.errors import RequestError
from trainer.handlers import launch as launch_handler


@pytest.fixture(scope="module")
def svc(stack):
    return stack.services


@settings(max_examples=examples(ci=30, deep=150))
@given(data=st.data())
def test_launch_validate_accepts_or_refuses_and_writes_nothing(stack, svc, data):
    payload = data.draw(requests(svc.settings.model_bucket))
    # svc's invoker is the production one: an invoke would reach the Lambda service, which holds it.
    *before, queued = footprint(stack)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            request, dataset = launch_handler.validate(payload, svc)
        except RequestError as exc:
            event_("refused")
            check_refusal(exc.problems, payload)
            assert str(exc).startswith("invalid training request")
        else:
            event_("accepted")
            check_accepted_request(request, payload)
            assert dataset is not None and dataset.features >= 1 and dataset.examples >= 1
            for array in (dataset.x_train, dataset.x_test, dataset.y_train, dataset.y_test):
                assert np.all(np.isfinite(array))
    *after, held = footprint(stack)
    assert after == before, "validate wrote something"
    assert held == queued, "validate invoked the trainer"


def test_dataset_errors_reach_the_user_as_request_errors(stack, svc, tmp_path: Path):
    """Through LaunchLambda's validate: a bad file is one 'dataset: ...' problem, nothing written."""
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    before = footprint(stack)
    with pytest.raises(RequestError) as info:
        launch_handler.validate(
            {
                "dataset": str(path),
                "neurons": {"layer1": 1},
                "activations": {"layer1": "sigmoid"},
                "epochs": 1,
                "learning_rate": 0.1,
            },
            svc,
        )
    assert [p for p in info.value.problems if p.startswith("dataset:")]
    assert footprint(stack) == before
