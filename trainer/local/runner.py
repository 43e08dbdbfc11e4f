"""The local runner: the same handlers as the Lambdas, with a queue for an invoker, a real
redis-server and moto server for DynamoDB, S3, SNS and Secrets Manager."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer import services as services_mod
from trainer.handlers import launch as launch_handler
from trainer.handlers import trainer as trainer_handler
from trainer.invoker import LocalInvoker
from trainer.local.provision import provision
from trainer.local.servers import MotoServer, RedisServer
from trainer.settings import Settings
from trainer.vocabulary import RunStatus

LAMBDA_ATTEMPTS = 3  # one delivery plus Lambda's two automatic retries of an async event


class LocalContext:
    """What a handler sees of a Lambda context; the deadline is the trainer timeout."""

    def __init__(self, timeout_ms: int = 900_000):
        self.aws_request_id = secrets.token_hex(8)
        self.function_name = "lnn-trainer-local"
        self.memory_limit_in_mb = 10240
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LocalStack:
    services: services_mod.Services
    invoker: LocalInvoker
    env: dict[str, str]


def connect(
    redis_host: str,
    redis_port: int,
    redis_password: str,
    prefix: str | None = None,
    redis_tls: bool = False,
    redis_ca_file: str | None = None,
    claim_lease_s: int = 30,
) -> LocalStack:
    """Provision the emulator's resources (AWS_* must point at it) and build local adapters."""
    prefix = prefix or f"lnn-{secrets.token_hex(3)}"
    env = provision(prefix, redis_password)
    settings = Settings(
        table_name=env["TABLE_NAME"],
        model_bucket=env["MODEL_BUCKET"],
        sns_topic_arn=env["SNS_TOPIC_ARN"],
        trainer_function_arn=env["TRAINER_FUNCTION_ARN"],
        launch_function_arn=env["LAUNCH_FUNCTION_ARN"],
        redis_host=redis_host,
        redis_port=redis_port,
        redis_auth_secret_arn=env["REDIS_AUTH_SECRET_ARN"],
        redis_tls=redis_tls,
        redis_ca_file=redis_ca_file,
        memory_mb=int(os.environ.get("TRAINER_MEMORY_MB", "10240")),
        handoff_claim_ttl_s=claim_lease_s,
    )
    invoker = LocalInvoker()
    svc = services_mod.build(settings, invoker)
    return LocalStack(services=svc, invoker=invoker, env=env)


@contextmanager
def local_servers() -> Iterator[tuple[RedisServer, MotoServer]]:
    """Start redis-server and moto server, point this process's AWS clients at moto, stop both at the end."""
    keys = (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    )
    saved = {k: os.environ.get(k) for k in keys}
    with RedisServer() as redis_server, MotoServer() as moto:
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": moto.endpoint_url,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_SESSION_TOKEN": "local",
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )
        try:
            yield redis_server, moto
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextmanager
def local_stack() -> Iterator[tuple[LocalStack, RedisServer, MotoServer]]:
    """`local_servers()` with the emulator provisioned and the local adapters built (TLS Redis)."""
    with local_servers() as (redis_server, moto):
        stack = connect(
            "127.0.0.1",
            redis_server.port,
            redis_server.password,
            redis_tls=redis_server.tls,
            redis_ca_file=redis_server.ca_file,
        )
        yield stack, redis_server, moto


def drain(
    stack: LocalStack,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    before_invoke: Callable[[dict[str, Any]], None] | None = None,
) -> list[str]:
    """Deliver queued trainer events until the chain ends, retrying a failed delivery as Lambda
    does; returns the errors of events that exhausted their attempts (the on-failure destination)."""
    dead_letters: list[str] = []
    while stack.invoker.queue:
        event = stack.invoker.queue.popleft()
        for attempt in range(1, LAMBDA_ATTEMPTS + 1):
            try:
                if before_invoke:
                    before_invoke(event)
                result = trainer_handler.run(event, LocalContext(), stack.services)
            except Exception as exc:
                if attempt == LAMBDA_ATTEMPTS:
                    dead_letters.append(f"{event.get('run_id')} step {event.get('seq')}: {type(exc).__name__}: {exc}")
                continue
            if on_result:
                on_result(result)
            break
    return dead_letters


def launch(stack: LocalStack, payload: dict[str, Any]) -> dict[str, Any]:
    return launch_handler.run(payload, LocalContext(), stack.services)


def export_run(stack: LocalStack, run_id: str, out_dir: Path) -> dict[str, Any]:
    """Copy the run's record, epochs and model out of the emulator before it stops."""
    run_dir = out_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    run = stack.services.run_store.get_run(run_id)
    epochs = sorted(stack.services.run_store.epochs(run_id), key=lambda e: e["epoch"])
    record = {"run": run, "epochs": epochs}
    (run_dir / "run.json").write_text(json.dumps(record, indent=1, default=str))
    if run.get("status") == RunStatus.SUCCEEDED:
        model = stack.services.blob_store.get(f"models/{run_id}/model.npz")
        (run_dir / "model.npz").write_bytes(model)
        record["model_path"] = str(run_dir / "model.npz")
        (run_dir / "state.npz").unlink(missing_ok=True)
    elif run.get("status") == RunStatus.FAILED:
        # The cache dies with this process: keep the run's state so `resume` can restore it.
        cursor, config, tensors, data = stack.services.tensor_store.dump_run(run_id)
        if config is not None:
            np.savez(
                run_dir / "state.npz",
                cursor=np.array(cursor),
                config=np.array(config),
                **{f"t_{k}": v for k, v in tensors.items()},
                **{f"d_{k}": v for k, v in data.items()},
            )
    return record


def restore_run(stack: LocalStack, run_dir: Path) -> str:
    """Load a run exported by `export_run` into this stack's emulator and cache."""
    record = json.loads((run_dir / "run.json").read_text())
    run = record["run"]
    run_id = run["run_id"]
    store = stack.services.run_store
    store.restore_run(run)
    store.put_epochs(run_id, [{k: e[k] for k in ("epoch", "cost", "duration_s")} for e in record["epochs"]])
    state_path = run_dir / "state.npz"
    if state_path.is_file():
        with np.load(state_path, allow_pickle=False) as state:
            tensors = {k[2:]: state[k] for k in state.files if k.startswith("t_")}
            data = {k[2:]: state[k] for k in state.files if k.startswith("d_")}
            stack.services.tensor_store.put_data(run_id, data)
            stack.services.tensor_store.create_run(run_id, str(state["config"]), tensors, cursor=int(state["cursor"]))
    return run_id
