"""Fault-injection campaign: every run is disturbed at random (crashes around every I/O call,
DynamoDB and SNS errors, duplicated and reordered deliveries) and must end SUCCEEDED with the
weights of the undisturbed run, bit for bit. The counts are printed at the end of the session."""

from __future__ import annotations

import random

import numpy as np
import pytest
from botocore.exceptions import ClientError

from tests.integration.chain.chain_helpers import REPORT, Faults, InjectedFault, final_params, run_to_end

BASE = {
    "dataset": "circles",
    "neurons": {"layer1": 5, "layer2": 3, "layer3": 1},
    "activations": {"layer1": "tanh", "layer2": "relu", "layer3": "sigmoid"},
    "epochs": 5,
    "learning_rate": 0.05,
    "optimizer": "momentum",
    "batch_size": 80,
    "notify_every": 2,
}


class AwsFaults(Faults):
    """Faults plus AWS-shaped errors (after botocore's own retries gave up) on DynamoDB and SNS."""

    def _maybe(self) -> None:
        if self.rng.random() < self.probability:
            self.injected += 1
            if self.rng.random() < 0.5:
                error = ClientError({"Error": {"Code": "ThrottlingException", "Message": "injected"}}, "Injected")
                raise InjectedFault("injected AWS error") from error
            raise InjectedFault("injected crash")

    def __enter__(self) -> AwsFaults:
        super().__enter__()
        svc = self.stack.services
        self._wrap(svc.notifier, "publish", before=True, after=False)
        self._wrap(svc.run_store, "mark_succeeded", before=True, after=True)
        self._wrap(svc.blob_store, "put", before=True, after=True)
        return self


@pytest.mark.parametrize("campaign", range(6))
def test_disturbed_runs_end_identical(stack, campaign: int) -> None:
    rng = random.Random(1000 + campaign)
    payload = {
        **BASE,
        "chain": rng.choice(["per_step", "fused"]),
        "max_steps_per_invocation": rng.randint(3, 12),
        "seed": campaign,
    }
    reference, _ = run_to_end(stack, payload)
    copies = rng.choice([1, 2, 3])
    original = stack.invoker.invoke_async

    def deliver_copies(event):
        for _ in range(copies):
            original(event)

    stack.invoker.invoke_async = deliver_copies
    try:
        with AwsFaults(stack, probability=0.06, seed=campaign) as faults:
            run_id, _ = run_to_end(stack, payload, pick=lambda queue: rng.randrange(len(queue)))
    finally:
        del stack.invoker.invoke_async
    run = stack.services.run_store.get_run(run_id)
    expected, got = final_params(stack, reference), final_params(stack, run_id)
    identical = run["status"] == "SUCCEEDED" and all(np.array_equal(expected[k], got[k]) for k in expected)
    REPORT.record(faults=faults.injected + (copies - 1), identical=identical)
    assert faults.injected > 0
    assert identical, f"run {run_id} ended {run['status']} or with different weights"
