"""The Redis auth token, read from Secrets Manager once per execution environment."""

from __future__ import annotations

from functools import lru_cache

from trainer.aws import client


@lru_cache(maxsize=8)
def secret_string(secret_arn: str) -> str:
    return client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
