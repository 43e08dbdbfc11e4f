"""boto3 clients. The standard variables (AWS_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>)
decide where they point, so the same code talks to AWS or to an emulator."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

# Throttling and 5xx answers are retried by botocore with bounded exponential backoff.
RETRY = {"retries": {"mode": "standard", "max_attempts": 6}, "connect_timeout": 10, "read_timeout": 60}


@cache
def _client(
    service: str, endpoint: str | None, region: str | None, timeouts: tuple[float, float] | None, key: str | None
) -> Any:
    # boto3 is imported with the first client, not with the module: importing it costs a quarter
    # of a second, which a cold start then pays only where an AWS call is actually made.
    import boto3
    from botocore.config import Config

    config = {**RETRY} if timeouts is None else {**RETRY, "connect_timeout": timeouts[0], "read_timeout": timeouts[1]}
    # A key in the environment is passed as it is now: boto3's default session resolves credentials
    # once per process, and a new local cloud has a key of its own.
    keys = {
        "aws_access_key_id": key,
        "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "aws_session_token": os.environ.get("AWS_SESSION_TOKEN"),
    }
    return boto3.client(service, config=Config(**config), region_name=region, **(keys if key else {}))


def client(service: str, timeouts: tuple[float, float] | None = None) -> Any:
    """The process's client of `service`; `timeouts` (connect, read seconds) for one whose every
    attempt must end within a known time."""
    # The cache key includes the endpoint and the access key id so a changed environment (tests, a
    # new local cloud, which has a key of its own) gets a fresh client instead of one pointing at a
    # server that is gone, or signing with a key it no longer takes.
    endpoint = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return _client(service, endpoint, region, timeouts, os.environ.get("AWS_ACCESS_KEY_ID"))


def transient(exc: BaseException) -> bool:
    """An AWS error that a later attempt need not meet: throttling, a 5xx answer, a connection that
    failed or timed out. botocore's standard mode retries exactly these; one that still reaches the
    caller outlasted the SDK's attempts, which says nothing about the request itself."""
    from botocore.exceptions import ClientError
    from botocore.retries import standard

    if isinstance(exc, ClientError):
        context = standard.RetryContext(attempt_number=1, parsed_response=exc.response)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        checkers = (standard.ThrottledRetryableChecker(), standard.TransientRetryableChecker())
        # 429 too: SNS throttles with `Throttled`, a code botocore's list lacks.
        return status >= 500 or status == 429 or any(checker.is_retryable(context) for checker in checkers)
    return standard.TransientRetryableChecker().is_retryable(
        standard.RetryContext(attempt_number=1, caught_exception=exc)
    )
