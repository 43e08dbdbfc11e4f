"""An execution environment: one `python -m awslambdaric <handler>` process polling its own Runtime
API server (trainer.local.runtime_api), started from the function's configuration, and what one
invocation in it ends as (an `Attempt`). The function's timeout and memory size are enforced here:
past either the process is killed, as Lambda kills a sandbox."""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from trainer.local import children, fleet
from trainer.local.lambda_service.config import FunctionConfig, Runtime, function_variables
from trainer.local.lambda_service.forkserver import ForkServers
from trainer.local.runtime_api import Outcome, Pending, RuntimeAPI

READY_TIMEOUT_S = 120.0
MEMORY_CHECK_S = 0.02  # how often a running invocation's resident memory is compared with the memory size


@dataclass
class Attempt:
    """The end of one invocation in an execution environment."""

    request_id: str
    ok: bool
    body: bytes
    error_type: str | None = None
    killed: bool = False
    timed_out: bool = False

    def error_document(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return self.body.decode("utf-8", "replace")


class ExecutionEnvironment:
    """One `python -m awslambdaric <handler>` process and the Runtime API it polls."""

    _ids = itertools.count(1)

    def __init__(
        self,
        config: FunctionConfig,
        runtime: Runtime,
        cloud_env: dict[str, str],
        log_dir: Path,
        host: str | None = None,
        forks: ForkServers | None = None,
    ) -> None:
        self.id = next(self._ids)
        self.config = config
        self.key = config.environment_key()
        self.api = RuntimeAPI(config.arn, config.timeout_s).start()
        region = config.arn.split(":")[3]
        environ = {**runtime.environ, **cloud_env, **function_variables(config.environment)}
        self.host, self.kernel = host, fleet.kernel_of(host, dict(config.environment))
        environ.update(fleet.host_variables(host, dict(config.environment)))
        # Lambda's reserved variables: the function's own environment cannot override them.
        environ.update(
            {
                "AWS_LAMBDA_RUNTIME_API": self.api.address,
                "AWS_LAMBDA_FUNCTION_NAME": config.name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{self.id}",
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region,
                "_HANDLER": config.handler,
            }
        )
        self.environ = environ
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{config.name}-{self.id}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.started_at = time.monotonic()
        self.process: Any
        if forks is not None:
            self.process = forks.start(runtime.python, config.handler, environ, runtime.cwd, self._log)
        else:
            self.process = children.popen(
                [runtime.python, "-m", "awslambdaric", config.handler],
                cwd=runtime.cwd,
                env=environ,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.ready_s: float | None = None
        self.pool: Any = None  # the concurrency.Pool it counts in, set by the one that starts it

    def wait_ready(self) -> Attempt | None:
        """Wait for the runtime's first poll (init done); an init failure comes back as an Attempt."""
        deadline = time.monotonic() + max(READY_TIMEOUT_S, self.config.timeout_s)
        while not self.api.first_poll.wait(0.02):
            if self.api.init_error_event.is_set() or self.process.poll() is not None or time.monotonic() > deadline:
                error = self.api.init_errors[0]["body"] if self.api.init_errors else None
                error = error or {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": f"Runtime exited without providing a reason (exit code {self.process.poll()})",
                }
                self.stop()
                return Attempt(str(uuid.uuid4()), False, json.dumps(error).encode(), error.get("errorType"))
        self.ready_s = time.monotonic() - self.started_at
        return None

    def run(self, body: bytes, trace_id: str, kill_after_s: float | None = None) -> Attempt:
        """One invocation; past the function's timeout, or at a chaos kill, the process is killed."""
        timeout_s = self.config.timeout_s
        pending = self.api.submit(body, timeout_s=timeout_s, trace_id=trace_id)
        request_id = pending.request_id
        started = time.monotonic()
        killed_at: float | None = None
        checked_memory = started
        while True:
            kill_due = self._kill_due(pending, kill_after_s, killed_at)
            if pending.done.wait(self._next_look(kill_due)):
                break
            now = time.monotonic()
            if kill_due is not None and now >= kill_due:
                self.kill()
                killed_at = now
            if now - checked_memory >= MEMORY_CHECK_S:
                checked_memory = now
                if self.over_memory():
                    self.kill()  # no grace: the process sees SIGKILL, as under the OOM killer
            if self.process.poll() is not None:
                self.stop()
                code = self.process.returncode
                how = "signal: killed" if code == -9 else f"exit status {code}"
                message = f"RequestId: {request_id} Error: Runtime exited with error: {how}"
                doc = {"errorType": "Runtime.ExitError", "errorMessage": message}
                return Attempt(request_id, False, json.dumps(doc).encode(), "Runtime.ExitError", killed=True)
            if now - started > timeout_s:
                self.kill()
                self.stop()
                doc = {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds",
                }
                return Attempt(request_id, False, json.dumps(doc).encode(), "Sandbox.Timedout", timed_out=True)
        outcome: Outcome = pending.outcome  # type: ignore[assignment]
        return Attempt(request_id, outcome.ok, outcome.body, outcome.error_type)

    @staticmethod
    def _kill_due(pending: Pending, kill_after_s: float | None, killed_at: float | None) -> float | None:
        """When a chaos kill falls due (monotonic): `kill_after_s` after the runtime picked the
        invocation up; None without one, before the pick-up, or once done."""
        picked = pending.picked_up_at
        if kill_after_s is None or picked is None or killed_at is not None:
            return None
        return picked + kill_after_s

    @staticmethod
    def _next_look(kill_due: float | None) -> float:
        """How long to wait for the answer before looking at the process again: the memory check's
        interval, or less when a chaos kill falls due sooner (a dead process is seen within it)."""
        if kill_due is None:
            return MEMORY_CHECK_S
        return min(MEMORY_CHECK_S, max(0.001, kill_due - time.monotonic()))

    def over_memory(self) -> bool:
        """Whether the environment's process holds more resident memory than the function's memory size
        (Lambda's limit is on the whole sandbox; here the runtime is its one process)."""
        return resident_mib(self.process.pid) > self.config.memory_mb

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        else:
            self.process.wait()
        with contextlib.suppress(Exception):
            self.api.stop()
        with contextlib.suppress(Exception):
            self._log.close()


def resident_mib(pid: int) -> float:
    """A process's resident memory in MiB; 0 once it is gone."""
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return 0.0
