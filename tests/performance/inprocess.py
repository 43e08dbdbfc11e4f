"""The bench's chain, delivered in this process: the real handlers and adapters (redis-server, moto
server), with a queue in place of the Lambda service so that the meter sees every Redis and AWS
call and the figures are the trainer's own (compute, data path, state moved), not the hop costs of
an emulated Lambda service. The tests run the chain through the local cloud."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from trainer import services as services_mod
from trainer.handlers import launch as launch_handler
from trainer.handlers import trainer as trainer_handler
from trainer.local.provision import provision
from trainer.local.servers import MotoServer, RedisServer
from trainer.settings import Settings

LAMBDA_ATTEMPTS = 3  # one delivery plus Lambda's two automatic retries of an async event


class Queue:
    """The trainer's hand-offs, kept in order for `drain`."""

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
    env: dict[str, str]


def connect(redis_server: RedisServer, prefix: str | None = None) -> BenchStack:
    """Provision the emulator's resources (AWS_* must point at it) and build the adapters."""
    env = provision(prefix or f"lnn-{secrets.token_hex(3)}", redis_server.password)
    settings = Settings(
        table_name=env["TABLE_NAME"],
        model_bucket=env["MODEL_BUCKET"],
        sns_topic_arn=env["SNS_TOPIC_ARN"],
        trainer_function_arn=env["TRAINER_FUNCTION_ARN"],
        launch_function_arn=env["LAUNCH_FUNCTION_ARN"],
        redis_host="127.0.0.1",
        redis_port=redis_server.port,
        redis_auth_secret_arn=env["REDIS_AUTH_SECRET_ARN"],
        redis_tls=getattr(redis_server, "tls", False),
        redis_ca_file=getattr(redis_server, "ca_file", None),
        memory_mb=int(os.environ.get("TRAINER_MEMORY_MB", "10240")),
        handoff_claim_ttl_s=30,
    )
    invoker = Queue()
    return BenchStack(services=services_mod.build(settings, invoker), invoker=invoker, env=env)


@contextmanager
def bench_stack() -> Iterator[tuple[BenchStack, RedisServer, MotoServer]]:
    """redis-server (TLS) and moto server started, this process's AWS clients pointed at moto, the
    resources provisioned; both servers stop at the end and the environment is restored."""
    keys = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    keys += ("AWS_REGION", "AWS_DEFAULT_REGION")
    saved = {k: os.environ.get(k) for k in keys}
    with RedisServer() as redis_server, MotoServer() as moto:
        os.environ.update({"AWS_ENDPOINT_URL": moto.endpoint_url, "AWS_REGION": "us-east-1"})
        os.environ.update({"AWS_DEFAULT_REGION": "us-east-1"})
        os.environ.update({k: "local" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")})
        try:
            yield connect(redis_server), redis_server, moto
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def launch(stack: BenchStack, payload: dict[str, Any]) -> dict[str, Any]:
    return launch_handler.run(payload, Context(), stack.services)


def drain(stack: BenchStack, on_result: Callable[[dict[str, Any]], None] | None = None) -> list[str]:
    """Deliver queued events until the chain ends, retrying a failed delivery as Lambda does;
    returns the errors of events that exhausted their attempts."""
    dead_letters: list[str] = []
    while stack.invoker.queue:
        event = stack.invoker.queue.popleft()
        for attempt in range(1, LAMBDA_ATTEMPTS + 1):
            try:
                result = trainer_handler.run(event, Context(), stack.services)
            except Exception as exc:
                if attempt == LAMBDA_ATTEMPTS:
                    dead_letters.append(f"{event.get('run_id')} step {event.get('seq')}: {type(exc).__name__}: {exc}")
                continue
            if on_result:
                on_result(result)
            break
    return dead_letters


def deliver(stack: BenchStack, event: dict[str, Any]) -> dict[str, Any]:
    return trainer_handler.run(event, Context(), stack.services)
