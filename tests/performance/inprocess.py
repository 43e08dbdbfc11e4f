"""The sweep section's chains, delivered in this process: the real handlers and adapters on the
bench's stack in the local cloud (its DynamoDB, S3, SNS and ElastiCache), with a queue in place of
the Lambda service, so that the section can interleave every trial's events as concurrent chains
would and count each trial's invocations. Every other chain of the bench runs through the Lambda
service (tests/performance/cloud.py)."""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from trainer import services as services_mod
from trainer.handlers import launch as launch_handler
from trainer.handlers import trainer as trainer_handler
from trainer.settings import Settings


class Queue:
    """The trainer's hand-offs, kept in order for the caller to deliver."""

    def __init__(self) -> None:
        self.queue: deque[dict[str, Any]] = deque()
        self.sent = 0

    def invoke_async(self, event: dict[str, Any]) -> None:
        self.queue.append(json.loads(json.dumps(event)))  # what the wire would carry, nothing more
        self.sent += 1


class Context:
    """What a handler reads of a Lambda context: a request id and the time left."""

    def __init__(self, timeout_ms: int = 900_000) -> None:
        self.aws_request_id = secrets.token_hex(8)
        self.function_name = "lnn-bench-trainer"
        self.memory_limit_in_mb = 10240
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class BenchStack:
    services: services_mod.Services
    invoker: Queue


def on(settings: Settings) -> BenchStack:
    """Adapters on a provisioned stack's resources (this process's AWS clients must point at it)."""
    invoker = Queue()
    return BenchStack(services=services_mod.build(settings, invoker), invoker=invoker)


def launch(stack: BenchStack, payload: dict[str, Any]) -> dict[str, Any]:
    return launch_handler.run(payload, Context(), stack.services)


def deliver(stack: BenchStack, event: dict[str, Any]) -> dict[str, Any]:
    return trainer_handler.run(event, Context(), stack.services)
