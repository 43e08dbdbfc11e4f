"""Hands the next state on: an asynchronous self-invocation, on AWS and on the local cloud alike."""

from __future__ import annotations

import json
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
