"""The Lambda service's view of moto's Lambda control plane (in the same process): a function's
configuration, the account's reservations, DeleteFunction's end of the environments, and the
on-failure destination (an SQS queue of the same cloud)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from trainer.local.lambda_service import FunctionConfig, FunctionNotFound, LambdaService


def moto_function_config(function: str, region: str) -> FunctionConfig:
    """The function's configuration from moto's Lambda control plane (in this process)."""
    from moto.awslambda.exceptions import UnknownFunctionException
    from moto.awslambda.models import lambda_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    name = function
    if function.startswith("arn:"):
        parts = function.split(":")
        region, name = parts[3], parts[6]
    name = name.split(":")[0]
    try:
        fn = lambda_backends[DEFAULT_ACCOUNT_ID][region].get_function(name)
    except UnknownFunctionException as exc:
        raise FunctionNotFound(f"arn:aws:lambda:{region}:{DEFAULT_ACCOUNT_ID}:function:{name}") from exc
    invoke_config = fn.event_invoke_config[0].config if fn.event_invoke_config else {}
    on_failure = ((invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    command = list(fn.image_config.cmd or [])
    reserved = fn.reserved_concurrency
    return FunctionConfig(
        name=fn.function_name,
        arn=fn.function_arn,
        handler=command[0] if command else str(fn.handler),
        environment=tuple(sorted((str(k), str(v)) for k, v in (fn.environment_vars or {}).items())),
        timeout_s=int(fn.timeout),
        memory_mb=int(fn.memory_size),
        max_retry_attempts=int(invoke_config.get("MaximumRetryAttempts", 2)),
        max_event_age_s=int(invoke_config.get("MaximumEventAgeInSeconds", 21600)),
        on_failure=on_failure or None,
        recursive_loop=getattr(fn, "lnn_recursive_loop", "Terminate"),
        reserved_concurrency=int(reserved) if reserved not in (None, "") else None,
    )


def moto_reserved_total(region: str) -> int:
    """The concurrency the region's functions have reserved, from moto's Lambda control plane."""
    from moto.awslambda.models import lambda_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    functions = lambda_backends[DEFAULT_ACCOUNT_ID][region].list_functions()
    return sum(int(fn.reserved_concurrency) for fn in functions if fn.reserved_concurrency not in (None, ""))


def sqs_destination(endpoint_url: str, credentials: dict[str, str]) -> Callable[[str, dict[str, Any]], None]:
    def send(destination_arn: str, record: dict[str, Any]) -> None:
        import boto3

        if ":sqs:" not in destination_arn:
            print(f"local cloud: on-failure destination {destination_arn} is not an SQS queue; dropped", flush=True)
            return
        _, _, _, region, account, queue = destination_arn.split(":", 5)
        sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        )
        url = sqs.get_queue_url(QueueName=queue, QueueOwnerAWSAccountId=account)["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))

    return send


def forget_deleted_functions(service: LambdaService) -> None:
    """DeleteFunction (moto's control plane) also ends the function's execution environments,
    as on AWS: a destroyed stack leaves no process of its functions behind."""
    from moto.awslambda import models

    original = models.LambdaBackend.delete_function

    def delete_function(backend: Any, function_name: str, qualifier: str | None = None) -> None:
        original(backend, function_name, qualifier)
        if qualifier in (None, "$LATEST"):
            name = function_name.split(":")[6] if function_name.startswith("arn:") else function_name
            service.forget(name.split(":")[0])

    models.LambdaBackend.delete_function = delete_function  # type: ignore[method-assign, assignment]  # moto's own class, patched in place
