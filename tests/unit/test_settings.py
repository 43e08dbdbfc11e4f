"""The Lambdas' environment: what Terraform sets is exactly what the handlers read."""

from __future__ import annotations

import re

import pytest

from tests.support.paths import REPO_ROOT
from trainer.settings import ENVIRONMENT, Settings


def _terraform_environment() -> set[str]:
    text = (REPO_ROOT / "terraform" / "modules" / "functions" / "main.tf").read_text()
    block = re.search(r"\n  environment = \{\n(.*?)\n  \}", text, re.S)
    assert block, "the functions module defines its environment in locals"
    return set(re.findall(r"^\s+([A-Z][A-Z0-9_]+)\s+=", block.group(1), re.M))


def test_terraform_sets_exactly_what_the_handlers_read() -> None:
    assert _terraform_environment() == set(ENVIRONMENT)


def test_settings_come_from_the_environment(monkeypatch) -> None:
    values = {
        "SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t",
        "TRAINER_FUNCTION_ARN": "arn:aws:lambda:us-east-1:1:function:t",
        "LAUNCH_FUNCTION_ARN": "arn:aws:lambda:us-east-1:1:function:l",
        "TABLE_NAME": "runs",
        "MODEL_BUCKET": "b",
        "REDIS_HOST": "cache.internal",
        "REDIS_PORT": "6380",
        "REDIS_USER_ID": "lnn-functions",
        "REDIS_REPLICATION_GROUP_ID": "lnn",
        "REDIS_TLS": "true",
        "AWS_REGION": "eu-west-1",
        "TRAINER_MEMORY_MB": "3008",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    assert (settings.redis_port, settings.redis_tls, settings.memory_mb) == (6380, True, 3008)
    assert (settings.redis_user_id, settings.redis_replication_group_id) == ("lnn-functions", "lnn")
    assert settings.region == "eu-west-1" and settings.table_name == "runs"


def test_missing_configuration_is_named(monkeypatch) -> None:
    for key in ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TABLE_NAME", "runs")
    with pytest.raises(RuntimeError, match="MODEL_BUCKET, SNS_TOPIC_ARN, TRAINER_FUNCTION_ARN, REDIS_HOST"):
        Settings.from_env()
