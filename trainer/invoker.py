"""Hands the next state on. On Lambda: an asynchronous self-invocation; locally: a queue that the
local runner drains, calling the same handler."""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Protocol

from trainer.aws import client


class Invoker(Protocol):
    def invoke_async(self, event: dict[str, Any]) -> None: ...


class LambdaInvoker:
    def __init__(self, function_arn: str):
        self.function_arn = function_arn
        self.lambda_ = client("lambda")

    def invoke_async(self, event: dict[str, Any]) -> None:
        resp = self.lambda_.invoke(
            FunctionName=self.function_arn, InvocationType="Event", Payload=json.dumps(event).encode()
        )
        if resp.get("StatusCode") != 202:
            raise RuntimeError(f"asynchronous invoke of {self.function_arn} answered {resp.get('StatusCode')}")


class LocalInvoker:
    """In-process queue of trainer events, drained by trainer.local.runner."""

    def __init__(self) -> None:
        self.queue: deque[dict[str, Any]] = deque()
        self.sent = 0

    def invoke_async(self, event: dict[str, Any]) -> None:
        self.queue.append(json.loads(json.dumps(event)))  # what the wire would carry, nothing more
        self.sent += 1
