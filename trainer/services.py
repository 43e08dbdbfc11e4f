"""The adapters a handler uses. Built from the environment once per Lambda execution environment;
a caller may build its own and pass them in (the CLI reads runs with them, the tests arrange state)."""

from __future__ import annotations

from dataclasses import dataclass

from trainer.invoker import Invoker, LambdaInvoker
from trainer.notifier import SnsNotifier
from trainer.ports import BlobStore, Notifier, RunStore, TensorStore
from trainer.settings import Settings
from trainer.stores.blob_store import S3BlobStore
from trainer.stores.cache_token import IamCredentials
from trainer.stores.run_store import DynamoRunStore
from trainer.stores.tensor_store import RedisTensorStore, connect


@dataclass
class Services:
    settings: Settings
    tensor_store: TensorStore
    run_store: RunStore
    notifier: Notifier
    invoker: Invoker
    blob_store: BlobStore


def build(settings: Settings, invoker: Invoker | None = None) -> Services:
    # ElastiCache IAM authentication: each new connection signs a token with the function's role.
    iam = (
        IamCredentials(settings.redis_replication_group_id, settings.redis_user_id, settings.region)
        if settings.redis_user_id and settings.redis_replication_group_id
        else None
    )
    redis_client = connect(
        settings.redis_host,
        settings.redis_port,
        None,
        settings.redis_tls,
        settings.redis_ca_file,
        credential_provider=iam,
    )
    return Services(
        settings=settings,
        tensor_store=RedisTensorStore(redis_client),
        run_store=DynamoRunStore(settings.table_name),
        notifier=SnsNotifier(settings.sns_topic_arn),
        invoker=invoker or LambdaInvoker(settings.trainer_function_arn),
        blob_store=S3BlobStore(settings.model_bucket),
    )


_from_env: Services | None = None


def current() -> Services:
    """Adapters built from the environment, once per execution environment (the cold start)."""
    global _from_env
    if _from_env is None:
        _from_env = build(Settings.from_env())
    return _from_env
