"""What the service knows of a function before it runs it: its configuration as the control plane
holds it, the image's runtime, and Lambda's limits."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # 6 MB request and response, RequestResponse
ASYNC_PAYLOAD_LIMIT = 1024 * 1024  # 1 MB, Event (raised from 256 KB in 2025)
RECURSION_LIMIT = 16  # Lambda stops a recursive chain after about 16 invocations
DEFAULT_MAX_RETRY_ATTEMPTS = 2
DEFAULT_MAX_EVENT_AGE_S = 21600

# Variables that would make the interpreter or the loader run other code than the function's:
# the local service runs functions as its owner, so a function's configuration never sets them.
DROPPED_VARIABLES = ("PYTHON", "LD_")


class FunctionNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Runtime:
    """How an execution environment's process starts: an interpreter that can import awslambdaric and
    the handler's package, the environment the image sets (ENV lines) and its working directory."""

    python: str
    environ: dict[str, str]
    cwd: str


@dataclass(frozen=True)
class FunctionConfig:
    """A function's configuration as the control plane holds it."""

    name: str
    arn: str
    handler: str
    environment: tuple[tuple[str, str], ...]
    timeout_s: int
    memory_mb: int
    max_retry_attempts: int = DEFAULT_MAX_RETRY_ATTEMPTS
    max_event_age_s: int = DEFAULT_MAX_EVENT_AGE_S
    on_failure: str | None = None
    recursive_loop: str = "Terminate"
    reserved_concurrency: int | None = None

    def environment_key(self) -> tuple[Any, ...]:
        """What an execution environment is built from: a change retires the warm ones. The event
        invoke config, the recursion config and the reserved concurrency are not in it: Lambda
        applies them to the next invocation without a cold start."""
        return (self.handler, self.environment, self.timeout_s, self.memory_mb)


def function_variables(environment: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """A function's own variables, less those (DROPPED_VARIABLES) that choose what code runs."""
    return {k: v for k, v in environment if not k.upper().startswith(DROPPED_VARIABLES)}


def venv_runtime(repo_root: Path, python: str | None = None) -> Runtime:
    """The project's own interpreter with the package importable from the working copy."""
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(repo_root),
        "PYTHONUNBUFFERED": "1",
        "PYTHONNOUSERSITE": "1",
        "LAMBDA_TASK_ROOT": str(repo_root),
    }
    return Runtime(python=python or sys.executable, environ=environ, cwd=str(repo_root))
