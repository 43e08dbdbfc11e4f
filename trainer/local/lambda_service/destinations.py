"""The record Lambda sends to an asynchronous invocation's on-failure destination, in AWS's format."""

from __future__ import annotations

import datetime
import json
from enum import Enum
from typing import Any

from trainer.local.lambda_service.config import FunctionConfig
from trainer.local.lambda_service.environment import Attempt


class Condition(str, Enum):
    """Why Lambda gave up on an event (the record's requestContext.condition)."""

    RETRIES_EXHAUSTED = "RetriesExhausted"
    EVENT_AGE_EXCEEDED = "EventAgeExceeded"
    RECURSIVE_INVOCATION = "RecursiveInvocationException"


def failure_record(
    config: FunctionConfig,
    request_id: str,
    payload: bytes,
    invoke_count: int,
    condition: Condition,
    attempt: Attempt | None,
) -> dict[str, Any]:
    """The destination record of an event given up on; `attempt` is its last one, if one ran."""
    try:
        request_payload: Any = json.loads(payload)
    except ValueError:
        request_payload = payload.decode("utf-8", "replace")
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"{config.arn}:$LATEST",
            "condition": condition.value,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": request_payload,
    }
    if attempt is not None:
        record["responseContext"] = {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
        record["responsePayload"] = attempt.error_document()
    return record
