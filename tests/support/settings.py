"""A launch's settings without a deployment: the request checks and ceilings run against them,
and no store is reached (every request they see is refused, or checked only)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trainer.ceilings import Ceilings
from trainer.errors import RequestError
from trainer.settings import Settings

MOONS = {
    "dataset": "moons",
    "neurons": {"layer1": 8, "layer2": 1},
    "activations": {"layer1": "relu", "layer2": "sigmoid"},
    "epochs": 300,
    "learning_rate": 0.01,
}


def services(**ceiling_values: int) -> SimpleNamespace:
    settings = Settings(
        table_name="runs",
        model_bucket="bucket",
        sns_topic_arn="arn:aws:sns:us-east-1:123456789012:runs",
        trainer_function_arn="arn:aws:lambda:us-east-1:123456789012:function:lnn-trainer",
        launch_function_arn="",
        redis_host="cache.internal",
        redis_port=6379,
        redis_user_id=None,
        redis_replication_group_id=None,
        redis_tls=True,
        redis_ca_file=None,
        memory_mb=2048,
        handoff_claim_ttl_s=30,
        ceilings=Ceilings(**ceiling_values),
    )
    # No store is reached: every request here is refused before a run or sweep id is looked up.
    return SimpleNamespace(settings=settings, blob_store=SimpleNamespace(read=None))


def refusal(call) -> list[str]:
    with pytest.raises(RequestError) as caught:
        call()
    return caught.value.problems
