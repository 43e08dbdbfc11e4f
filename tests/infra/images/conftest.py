"""Fixtures for the image-contents tests: the image's file system (built without Docker), a Lambda
Runtime API, and the real entry point (`python -m awslambdaric <handler>`) running against both."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.imageenv import ImageEnv, build
from trainer.local.runtime_api import RuntimeAPI


@pytest.fixture(scope="session")
def image_env() -> Iterator[ImageEnv]:
    env = build()
    total = env.deps_bytes + env.trainer_bytes
    print(
        f"\n[image] Python {env.python_version}; installed size {total / 2**20:.1f} MiB "
        f"(/opt/deps {env.deps_bytes / 2**20:.1f} MiB, /var/task {env.trainer_bytes / 2**20:.2f} MiB); "
        f"{'built' if env.built_now else 'reused'} in {env.build_seconds:.1f} s"
    )
    yield env
    shutil.rmtree(env.root, ignore_errors=True)


@pytest.fixture(scope="module")
def lambda_stack(aws_env: dict[str, str], tmp_path_factory) -> Iterator[dict[str, str]]:
    """Table, bucket, topic and the two functions in moto, and a cache node of the local cloud's
    ElastiCache (redis-server behind its IAM-authentication front, trusting the moto key the
    functions sign with); the functions' environment."""
    from trainer.local.elasticache import LocalElastiCache
    from trainer.local.provision import FUNCTIONS_ACCESS_STRING, provision

    prefix = "img" + secrets.token_hex(3)
    env = provision(prefix, create_functions=True)
    keys = {aws_env["AWS_ACCESS_KEY_ID"]: aws_env["AWS_SECRET_ACCESS_KEY"]}
    cache = LocalElastiCache(tmp_path_factory.mktemp("cache") / "ca.pem", secret_for=keys.get)
    node = cache.start_group(f"{prefix}-cache", {f"{prefix}-functions": FUNCTIONS_ACCESS_STRING}, tls=True)
    try:
        # In transit encryption as on ElastiCache; the node's CA is private, so the functions are
        # told to trust it (on AWS the system trust store does).
        env.update(
            {
                "REDIS_HOST": node.front.host,
                "REDIS_PORT": str(node.front.port),
                "REDIS_TLS": "true",
                "REDIS_CA_FILE": str(cache.ca_bundle),
                "REDIS_USER_ID": f"{prefix}-functions",
                "REDIS_REPLICATION_GROUP_ID": f"{prefix}-cache",
                **aws_env,
            }
        )
        yield env
    finally:
        cache.stop_all()


class RunningFunction:
    def __init__(self, api: RuntimeAPI, process: subprocess.Popen, log: Path, started: float) -> None:
        self.api = api
        self.process = process
        self.log = log
        self.started = started
        self.cold_start_s: float | None = None

    def invoke(self, event, timeout_s: float = 120):
        try:
            return self.api.invoke(event, self.process, timeout_s)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n--- runtime output ---\n{self.output()}") from exc

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-8000:] if self.log.exists() else ""


@pytest.fixture
def start_function(image_env: ImageEnv, tmp_path: Path):
    """start_function(handler, env) -> RunningFunction: the image's ENTRYPOINT + CMD, as Lambda runs it."""
    started: list[tuple[RuntimeAPI, subprocess.Popen, object]] = []

    def start(handler: str, env: dict[str, str], wait_ready: bool = True) -> RunningFunction:
        name = handler.split(".")[-2]
        arn = env.get("LAUNCH_FUNCTION_ARN" if name == "launch" else "TRAINER_FUNCTION_ARN", "")
        api = RuntimeAPI(function_arn=arn or f"arn:aws:lambda:us-east-1:123456789012:function:{name}")
        api.start()
        log = tmp_path / f"{name}-{len(started)}.log"
        log_file = open(log, "wb")  # noqa: SIM115 - closed at teardown
        lambda_env = image_env.environ(
            {
                **env,
                "AWS_LAMBDA_RUNTIME_API": api.address,
                "AWS_LAMBDA_FUNCTION_NAME": arn.rsplit(":", 1)[-1] or name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            }
        )
        t0 = time.monotonic()
        process = subprocess.Popen(
            image_env.entrypoint(handler),
            cwd=image_env.task_root,  # WORKDIR /var/task
            env=lambda_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        started.append((api, process, log_file))
        running = RunningFunction(api, process, log, t0)
        if wait_ready:
            # Init (imports) finished when the runtime first asks for an event.
            deadline = time.monotonic() + 120
            while not api.first_poll.wait(0.1):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the runtime did not start:\n{running.output()}")
            running.cold_start_s = time.monotonic() - t0
        return running

    yield start
    for api, process, log_file in started:
        if process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        api.stop()
        log_file.close()
