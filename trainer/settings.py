"""Configuration from the environment: the variables below, which the Terraform functions module sets."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from trainer import keys
from trainer.ceilings import DEFAULT_CONCURRENT_CHAINS, DEFAULT_RUN_INVOCATIONS, DEFAULT_RUN_STEPS, Ceilings

# Every variable the handlers read; the Terraform functions module sets exactly these.
ENVIRONMENT = (
    "SNS_TOPIC_ARN",
    "TRAINER_FUNCTION_ARN",
    "LAUNCH_FUNCTION_ARN",
    "TABLE_NAME",
    "MODEL_BUCKET",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_USER_ID",
    "REDIS_REPLICATION_GROUP_ID",
    "REDIS_TLS",
    "TRAINER_MEMORY_MB",
    "CACHE_CAPACITY_MIB",
    "TRAINER_TIMEOUT_S",
    "DATASET_PREFIX",
    "TRAINER_RESERVED_CONCURRENCY",
    "MAX_RUN_STEPS",
    "MAX_RUN_INVOCATIONS",
)


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def _positive(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    if not value.strip().isdigit() or int(value) < 1:
        raise RuntimeError(f"configuration: {name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Settings:
    table_name: str
    model_bucket: str
    sns_topic_arn: str
    trainer_function_arn: str
    launch_function_arn: str
    redis_host: str
    redis_port: int
    # ElastiCache IAM authentication: the cache's user and the group its tokens are signed for
    # (None: a redis-server without authentication, as in unit tests).
    redis_user_id: str | None
    redis_replication_group_id: str | None
    redis_tls: bool
    redis_ca_file: str | None
    memory_mb: int
    handoff_claim_ttl_s: int
    # Memory Redis may fill (None: unknown, nothing checked); LaunchLambda refuses a larger run.
    cache_capacity_mib: int | None = None
    # The trainer's Lambda timeout (None: unknown, nothing checked); a run's time margin must fit in it.
    trainer_timeout_s: int | None = None
    # Where in the bucket datasets are uploaded; the launch reads s3:// datasets from there only.
    dataset_prefix: str = keys.DATASET_PREFIX
    # What one request may plan (trainer.ceilings): steps, invocations, chains at once.
    ceilings: Ceilings = field(default_factory=Ceilings)
    region: str = "us-east-1"

    @classmethod
    def from_env(cls) -> Settings:
        missing = [
            n
            for n in ("TABLE_NAME", "MODEL_BUCKET", "SNS_TOPIC_ARN", "TRAINER_FUNCTION_ARN", "REDIS_HOST")
            if not os.environ.get(n)
        ]
        if missing:
            raise RuntimeError(f"missing configuration: set {', '.join(missing)} in the environment")
        return cls(
            table_name=os.environ["TABLE_NAME"],
            model_bucket=os.environ["MODEL_BUCKET"],
            sns_topic_arn=os.environ["SNS_TOPIC_ARN"],
            trainer_function_arn=os.environ["TRAINER_FUNCTION_ARN"],
            launch_function_arn=os.environ.get("LAUNCH_FUNCTION_ARN", ""),
            redis_host=os.environ["REDIS_HOST"],
            redis_port=int(os.environ.get("REDIS_PORT", "6379")),
            redis_user_id=os.environ.get("REDIS_USER_ID") or None,
            redis_replication_group_id=os.environ.get("REDIS_REPLICATION_GROUP_ID") or None,
            redis_tls=_flag("REDIS_TLS", True),
            redis_ca_file=os.environ.get("REDIS_CA_FILE") or None,
            memory_mb=int(
                os.environ.get("TRAINER_MEMORY_MB") or os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 10240
            ),
            handoff_claim_ttl_s=int(os.environ.get("HANDOFF_CLAIM_TTL_S", "30")),
            cache_capacity_mib=int(os.environ["CACHE_CAPACITY_MIB"]) if os.environ.get("CACHE_CAPACITY_MIB") else None,
            trainer_timeout_s=int(os.environ["TRAINER_TIMEOUT_S"]) if os.environ.get("TRAINER_TIMEOUT_S") else None,
            dataset_prefix=os.environ.get("DATASET_PREFIX") or keys.DATASET_PREFIX,
            ceilings=Ceilings(
                run_steps=_positive("MAX_RUN_STEPS", DEFAULT_RUN_STEPS),
                run_invocations=_positive("MAX_RUN_INVOCATIONS", DEFAULT_RUN_INVOCATIONS),
                # Unset without a reservation (a new account has too little concurrency to reserve).
                concurrent_chains=_positive("TRAINER_RESERVED_CONCURRENCY", DEFAULT_CONCURRENT_CHAINS),
            ),
            # Lambda sets AWS_REGION: the region the cache's tokens are signed for.
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        )
