"""The local Lambda service: Invoke executed for real, as AWS Lambda executes it.

Each execution environment is a process running the image's entry point, `python -m awslambdaric
<handler>`, against its own Runtime API server (trainer.local.runtime_api). What the function's
configuration says (as the control plane holds it: `FunctionConfig`) decides how it runs: the
environment variables, the timeout (the runtime's deadline, and the moment the environment is
killed), the memory size (reported to the runtime, and enforced: an environment whose resident
memory passes it is killed mid-invocation, as the kernel's OOM killer ends one on AWS), the handler
(ImageConfig.Command), the event invoke config (retries, maximum event age, on-failure
destination), the recursion config and the reserved concurrency.

- Warm environments are reused; a new one starts when all are busy, up to the function's reserved
  concurrency, or else up to what the account limit leaves after every reservation, shared by all
  the functions without one (a sync invoke past it is throttled, an event waits). A changed
  configuration retires the old environments; DeleteFunction ends them (`forget`).
- RequestResponse answers with the handler's result, or a function error (X-Amz-Function-Error).
- Event answers 202 at once; the event is queued and retried after a function error up to
  MaximumRetryAttempts, dropped once older than MaximumEventAgeInSeconds, and then sent to the
  on-failure destination in AWS's destination record format.
- Recursive loop detection follows AWS's mechanism: the service hands each invocation an X-Ray
  trace header (Lambda-Runtime-Trace-Id) with a `Lineage=<id>:<count>` field; awslambdaric sets it
  as _X_AMZN_TRACE_ID and botocore sends it back as X-Amzn-Trace-Id on the function's own AWS
  calls, so an asynchronous invoke made from a function carries its hop count. The invocation
  that would be hop 17 of a chain is stopped (sent to the on-failure destination) unless the
  invoked function's recursion config is Allow.
- Chaos mode (seeded) delivers each asynchronous event D times to different environments at nearly
  the same moment, kills an environment in the middle of an invocation with probability p (the
  attempt fails as a crashed runtime does and Lambda's retries follow), and delays copies by a
  random amount, which reorders them. `stats()` counts what happened.
- A mixed fleet (Chaos.hosts): each new execution environment runs as if on one of several kinds
  of host, with that host's BLAS kernel and instruction sets (trainer.local.fleet), beneath the
  function's own environment.
- Held delivery (for tests that step a chain): a function's accepted events wait in a list instead
  of the queue; each is then delivered on request (with Lambda's retries) or dropped (a lost
  hand-off). What runs is the same: the invoke path, the environments, the retries.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import heapq
import itertools
import json
import os
import random
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import psutil

from trainer.local import children, fleet
from trainer.local.runtime_api import Outcome, RuntimeAPI, new_trace_id

SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # 6 MB request and response, RequestResponse
ASYNC_PAYLOAD_LIMIT = 1024 * 1024  # 1 MB, Event (raised from 256 KB in 2025)
RECURSION_LIMIT = 16  # Lambda stops a recursive chain after about 16 invocations
DEFAULT_MAX_RETRY_ATTEMPTS = 2
DEFAULT_MAX_EVENT_AGE_S = 21600
READY_TIMEOUT_S = 120.0
MEMORY_CHECK_S = 0.02  # how often a running invocation's resident memory is compared with the memory size
_LINEAGE = re.compile(r"Lineage=([0-9a-fA-F]+):(\d+)")


class FunctionNotFound(LookupError):
    pass


class AttemptEnd(str, Enum):
    """How one attempt at an asynchronous event ended, for the service (and a held delivery's answer)."""

    OK = "ok"
    RETRY = "retry"  # a function error with attempts left: Lambda tries again after a delay
    FAILED = "failed"  # given up: sent to the on-failure destination
    DISCARDED = "discarded"  # the function was deleted since


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
        """What an execution environment is built from: a change retires the warm ones."""
        return (self.handler, self.environment, self.timeout_s, self.memory_mb)


@dataclass
class Chaos:
    seed: int = 0
    duplicates: int = 1  # D: deliveries of each asynchronous event
    kill_probability: float = 0.0  # p: an attempt's environment is killed mid-invocation
    kill_window_s: float = 0.05  # the kill lands this long (at most) after the runtime picked the event up
    max_delay_s: float = 0.0  # each copy is held back up to this long (reorders copies)
    hosts: tuple[str, ...] = ()  # a mixed fleet: new environments go to these kinds of host in turn

    def __post_init__(self) -> None:
        self.hosts = fleet.check_hosts(self.hosts)

    def rng(self, *parts: object) -> random.Random:
        """A generator per (event, copy, attempt): the same choices whatever the threads' order."""
        return random.Random(":".join(str(p) for p in (self.seed, *parts)))


@dataclass
class Stats:
    invocations_sync: int = 0
    events_accepted: int = 0
    deliveries: int = 0  # attempts started (async), copies and retries included
    duplicate_copies: int = 0  # extra copies chaos mode made
    overlapping_deliveries: int = 0  # attempts started while another copy of the same event ran
    max_concurrent_copies: int = 0
    kills: int = 0
    retries: int = 0
    timeouts: int = 0
    function_errors: int = 0
    destination_records: int = 0
    dropped_age: int = 0
    recursion_stops: int = 0
    environments_started: int = 0
    hosts: dict[str, int] = field(default_factory=dict)  # environments started per kind of host (mixed fleet)
    kernels: dict[str, int] = field(default_factory=dict)  # ... per OpenBLAS kernel they got
    environment_start_s: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        starts = out.pop("environment_start_s")
        out["environment_start_s"] = {
            "count": len(starts),
            "mean": round(sum(starts) / len(starts), 4) if starts else None,
            "min": round(min(starts), 4) if starts else None,
            "max": round(max(starts), 4) if starts else None,
        }
        return out


@dataclass
class Answer:
    """An HTTP answer of the Invoke API."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def error_answer(status: int, error_type: str, message: str) -> Answer:
    body = json.dumps({"Type": "User", "message": message}).encode()
    return Answer(status, body, {"x-amzn-ErrorType": error_type, "Content-Type": "application/json"})


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


# Variables that would make the interpreter or the loader run other code than the function's:
# the local service runs functions as its owner, so a function's configuration never sets them.
DROPPED_VARIABLES = ("PYTHON", "LD_")


def function_variables(environment: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """A function's own variables, less those (DROPPED_VARIABLES) that choose what code runs."""
    return {k: v for k, v in environment if not k.upper().startswith(DROPPED_VARIABLES)}


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
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{config.name}-{self.id}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.started_at = time.monotonic()
        self.process = children.popen(
            [runtime.python, "-m", "awslambdaric", config.handler],
            cwd=runtime.cwd,
            env=environ,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ready_s: float | None = None
        self.pool: _Pool  # set by the service that starts it

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
        while not pending.done.wait(0.005):
            now = time.monotonic()
            picked = pending.picked_up_at
            if kill_after_s is not None and picked is not None and killed_at is None and now - picked >= kill_after_s:
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


class _Pool:
    """The execution environments of one function."""

    def __init__(self) -> None:
        self.idle: list[ExecutionEnvironment] = []
        self.count = 0  # running + idle + starting
        self.deleted = False  # the function is gone: its environments are not kept warm
        self.reserved: int | None = None  # the function's reserved concurrency, as last configured

    @property
    def busy(self) -> int:
        """Environments running an invocation or starting for one: the concurrency it uses."""
        return self.count - len(self.idle)


@dataclass(order=True)
class _Queued:
    due: float
    order: int
    event: _AsyncEvent = field(compare=False)


@dataclass
class _AsyncEvent:
    id: str
    function: str
    payload: bytes
    lineage: str
    received_at: float
    copy: int = 0
    attempts: int = 0


class LambdaService:
    def __init__(
        self,
        runtime: Runtime,
        configs: Callable[[str], FunctionConfig],
        cloud_env: dict[str, str],
        send_to_destination: Callable[[str, dict[str, Any]], None],
        log_dir: Path,
        account_concurrency: int = 8,
        retry_delay_s: float = 1.0,
        chaos: Chaos | None = None,
        reserved_total: Callable[[], int] | None = None,
    ) -> None:
        self.runtime = runtime
        self.configs = configs
        self.cloud_env = cloud_env
        self.send_to_destination = send_to_destination
        self.log_dir = log_dir
        self.account_concurrency = account_concurrency
        # The concurrency every function's reservation takes from the account (the control plane
        # knows it; by default, the reservations of the functions that have run here).
        self.reserved_total = reserved_total or self._reserved_in_pools
        self.retry_delay_s = retry_delay_s
        self.chaos = chaos or Chaos()
        self.stats = Stats()
        self._lock = threading.Condition()
        self._pools: dict[str, _Pool] = {}
        self._all: set[ExecutionEnvironment] = set()
        self._running_copies: dict[str, int] = {}
        self._queue: list[_Queued] = []
        self._holding: set[str] = set()  # functions whose events are held
        self._held: dict[str, _AsyncEvent] = {}  # request id -> event, in arrival order
        self._order = itertools.count()
        self._placed = itertools.count()  # environments placed on the fleet's hosts so far
        self._in_flight = 0
        self._closed = False
        self._reapers: list[threading.Thread] = []
        self._dispatchers = [
            threading.Thread(target=self._dispatch, name=f"lambda-async-{i}", daemon=True)
            for i in range(account_concurrency)
        ]
        for thread in self._dispatchers:
            thread.start()

    # ---- the Invoke API -------------------------------------------------------------------
    def invoke(
        self,
        function: str,
        invocation_type: str,
        payload: bytes,
        trace_header: str | None,
        configs: Callable[[str], FunctionConfig] | None = None,
    ) -> Answer:
        try:
            config = (configs or self.configs)(function)
        except FunctionNotFound as exc:
            return error_answer(404, "ResourceNotFoundException", f"Function not found: {exc}")
        if invocation_type not in ("RequestResponse", "Event", "DryRun"):
            return error_answer(
                400,
                "InvalidParameterValueException",
                f"1 validation error detected: Value '{invocation_type}' at 'invocationType' failed to satisfy "
                "constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
            )
        limit = SYNC_PAYLOAD_LIMIT if invocation_type != "Event" else ASYNC_PAYLOAD_LIMIT
        if len(payload) > limit:
            operation = "InvokeAsync" if invocation_type == "Event" else "Invoke"
            return error_answer(
                413,
                "RequestTooLargeException",
                f"Request must be smaller than {limit} bytes for the {operation} operation",
            )
        payload = payload or b"{}"
        try:
            json.loads(payload)
        except ValueError as exc:
            return error_answer(400, "InvalidRequestContentException", f"Could not parse request body into json: {exc}")
        if invocation_type == "DryRun":
            return Answer(204, b"")
        lineage = self._next_lineage(config, trace_header)
        if invocation_type == "Event":
            return self._accept_event(config, payload, lineage)
        return self._invoke_sync(config, payload, lineage)

    def _next_lineage(self, config: FunctionConfig, trace_header: str | None) -> str:
        """The chain's id and this invocation's hop count (1 for an invocation from outside Lambda)."""
        match = _LINEAGE.search(trace_header or "")
        if match:
            return f"{match.group(1)}:{int(match.group(2)) + 1}"
        return f"{uuid.uuid4().hex[:8]}:1"

    def _invoke_sync(self, config: FunctionConfig, payload: bytes, lineage: str) -> Answer:
        with self._lock:
            self.stats.invocations_sync += 1
        env = self._acquire(config, wait=False)
        if env is None:
            return error_answer(429, "TooManyRequestsException", "Rate Exceeded.")
        if isinstance(env, Attempt):
            return self._function_error_answer(env)
        try:
            attempt = env.run(payload, new_trace_id(lineage))
        finally:
            self._release(config, env)
        if not attempt.ok:
            with self._lock:
                self.stats.function_errors += 1
                self.stats.timeouts += attempt.timed_out
            return self._function_error_answer(attempt)
        if len(attempt.body) > SYNC_PAYLOAD_LIMIT:
            doc = {
                "errorType": "Function.ResponseSizeTooLarge",
                "errorMessage": "Response payload size exceeded maximum allowed payload size "
                f"({SYNC_PAYLOAD_LIMIT} bytes).",
            }
            return Answer(200, json.dumps(doc).encode(), self._headers(attempt.request_id, "Unhandled"))
        return Answer(200, attempt.body, self._headers(attempt.request_id))

    def _function_error_answer(self, attempt: Attempt) -> Answer:
        return Answer(200, attempt.body, self._headers(attempt.request_id, "Unhandled"))

    @staticmethod
    def _headers(request_id: str, function_error: str | None = None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "X-Amz-Executed-Version": "$LATEST",
            "x-amzn-RequestId": request_id,
        }
        if function_error:
            headers["X-Amz-Function-Error"] = function_error
        return headers

    # ---- asynchronous invocation --------------------------------------------------------------
    def _accept_event(self, config: FunctionConfig, payload: bytes, lineage: str) -> Answer:
        request_id = str(uuid.uuid4())
        now = time.monotonic()
        copies = max(1, self.chaos.duplicates)
        with self._lock:
            self.stats.events_accepted += 1
            if config.name in self._holding:
                self._held[request_id] = _AsyncEvent(request_id, config.arn, payload, lineage, received_at=now)
                self._lock.notify_all()
                return Answer(202, b"", {"x-amzn-RequestId": request_id})
            self.stats.duplicate_copies += copies - 1
            for copy in range(copies):
                rng = self.chaos.rng(self._digest(payload), copy, "delay")
                delay = rng.uniform(0, self.chaos.max_delay_s) if self.chaos.max_delay_s else 0.0
                event = _AsyncEvent(request_id, config.arn, payload, lineage, received_at=now, copy=copy)
                heapq.heappush(self._queue, _Queued(now + delay, next(self._order), event))
            self._lock.notify_all()
        return Answer(202, b"", {"x-amzn-RequestId": request_id})

    @staticmethod
    def _digest(payload: bytes) -> str:
        return hashlib.sha256(payload).hexdigest()[:16]

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                while not self._closed and (not self._queue or self._queue[0].due > time.monotonic()):
                    wait = (self._queue[0].due - time.monotonic()) if self._queue else None
                    self._lock.wait(timeout=wait)
                if self._closed:
                    return
                event = heapq.heappop(self._queue).event
                self._in_flight += 1
            try:
                self._deliver(event)
            except Exception as exc:  # the service must outlive any one delivery
                print(f"lambda service: delivery of {event.id} failed: {type(exc).__name__}: {exc}", flush=True)
            finally:
                with self._lock:
                    self._in_flight -= 1
                    self._lock.notify_all()

    def _deliver(self, event: _AsyncEvent) -> None:
        if self._attempt(event)[0] is AttemptEnd.RETRY:
            with self._lock:
                heapq.heappush(self._queue, _Queued(time.monotonic() + self.retry_delay_s, next(self._order), event))
                self._lock.notify_all()

    def _attempt(self, event: _AsyncEvent) -> tuple[AttemptEnd, Attempt | None]:
        """One attempt at an event: how it ended, and the attempt itself when one ran."""
        try:
            config = self.configs(event.function)
        except FunctionNotFound:
            return AttemptEnd.DISCARDED, None  # deleted since: Lambda discards its queued events
        hops = int(event.lineage.rsplit(":", 1)[1])
        if hops > RECURSION_LIMIT and config.recursive_loop != "Allow":
            with self._lock:
                self.stats.recursion_stops += 1
            self._fail(config, event, "RecursiveInvocationException", None, None)
            return AttemptEnd.FAILED, None
        if time.monotonic() - event.received_at > config.max_event_age_s:
            with self._lock:
                self.stats.dropped_age += 1
            self._fail(config, event, "EventAgeExceeded", None, None)
            return AttemptEnd.FAILED, None
        event.attempts += 1
        env = self._acquire(config, wait=True)
        with self._lock:
            self.stats.deliveries += 1
            self.stats.retries += event.attempts > 1
            running = self._running_copies.get(event.id, 0) + 1
            self._running_copies[event.id] = running
            self.stats.overlapping_deliveries += running > 1
            self.stats.max_concurrent_copies = max(self.stats.max_concurrent_copies, running)
        try:
            if isinstance(env, Attempt):
                attempt = env
            else:
                rng = self.chaos.rng(self._digest(event.payload), event.copy, event.attempts)
                kill_after = None
                if self.chaos.kill_probability and rng.random() < self.chaos.kill_probability:
                    kill_after = rng.uniform(0, self.chaos.kill_window_s)
                try:
                    attempt = env.run(event.payload, new_trace_id(event.lineage), kill_after)
                finally:
                    self._release(config, env)
                if kill_after is not None and attempt.killed:
                    with self._lock:
                        self.stats.kills += 1
        finally:
            with self._lock:
                self._running_copies[event.id] -= 1
                if not self._running_copies[event.id]:
                    del self._running_copies[event.id]
        if attempt.ok:
            return AttemptEnd.OK, attempt
        with self._lock:
            self.stats.function_errors += 1
            self.stats.timeouts += attempt.timed_out
        if event.attempts <= config.max_retry_attempts:
            return AttemptEnd.RETRY, attempt
        self._fail(config, event, "RetriesExhausted", attempt, attempt.error_document())
        return AttemptEnd.FAILED, attempt

    def _fail(
        self, config: FunctionConfig, event: _AsyncEvent, condition: str, attempt: Attempt | None, error: Any
    ) -> None:
        """AWS's destination record for an event that Lambda gives up on."""
        if not config.on_failure:
            return
        try:
            request_payload: Any = json.loads(event.payload)
        except ValueError:
            request_payload = event.payload.decode("utf-8", "replace")
        record: dict[str, Any] = {
            "version": "1.0",
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {
                "requestId": event.id,
                "functionArn": f"{config.arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": event.attempts,
            },
            "requestPayload": request_payload,
        }
        if attempt is not None:
            record["responseContext"] = {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            }
            record["responsePayload"] = error
        self.send_to_destination(config.on_failure, record)
        with self._lock:
            self.stats.destination_records += 1

    # ---- execution environments ---------------------------------------------------------------
    def _has_room(self, pool: _Pool) -> bool:
        """Whether one more invocation of the pool's function may run now (the caller holds the
        lock). As on AWS: a function with reserved concurrency runs up to it; the others share what
        the account limit leaves after every reservation, counted across all of them."""
        if pool.reserved is not None:
            return pool.busy < pool.reserved
        shared = sum(p.busy for p in self._pools.values() if p.reserved is None)
        return shared < self.account_concurrency - self.reserved_total()

    def _reserved_in_pools(self) -> int:
        return sum(p.reserved for p in self._pools.values() if p.reserved is not None)

    def _acquire(self, config: FunctionConfig, wait: bool) -> ExecutionEnvironment | Attempt | None:
        """A warm idle environment, or a new one; None when at the concurrency limit and not waiting;
        an Attempt when a new environment failed its init."""
        with self._lock:
            pool = self._pools.setdefault(config.name, _Pool())
            pool.reserved = config.reserved_concurrency
            while True:
                while pool.idle:
                    env = pool.idle.pop()
                    if env.key == config.environment_key() and env.alive:
                        return env
                    self._retire(pool, env)
                if self._has_room(pool):
                    pool.count += 1
                    host = fleet.placement(self.chaos.hosts, self.chaos.seed, next(self._placed))
                    break
                if not wait or self._closed:
                    return None
                self._lock.wait(timeout=0.5)
        try:
            env = ExecutionEnvironment(config, self.runtime, self.cloud_env, self.log_dir, host)
        except BaseException:
            with self._lock:
                pool.count -= 1
                self._lock.notify_all()
            raise
        env.pool = pool
        with self._lock:
            # Known from its first moment, so that close() kills it even while it starts.
            self._all.add(env)
        failed = env.wait_ready()
        with self._lock:
            self.stats.environments_started += 1
            if failed is not None:
                pool.count -= 1
                self._all.discard(env)
                self._lock.notify_all()
                return failed
            self.stats.environment_start_s.append(env.ready_s or 0.0)
            if env.host is not None:
                self.stats.hosts[env.host] = self.stats.hosts.get(env.host, 0) + 1
            self.stats.kernels[env.kernel] = self.stats.kernels.get(env.kernel, 0) + 1
            closing = self._closed
        if closing:  # started while the service was closing: it must not outlive it
            env.kill()
            env.stop()
            doc = {"errorType": "ServiceException", "errorMessage": "the Lambda service is shutting down"}
            return Attempt(str(uuid.uuid4()), False, json.dumps(doc).encode(), "ServiceException")
        return env

    def _release(self, config: FunctionConfig, env: ExecutionEnvironment) -> None:
        with self._lock:
            pool = env.pool
            if env.alive and not self._closed and not pool.deleted:
                pool.idle.append(env)
            else:
                self._retire(pool, env)
            self._lock.notify_all()

    def _retire(self, pool: _Pool, env: ExecutionEnvironment) -> None:
        pool.count -= 1
        self._all.discard(env)
        env.kill()  # at once; the reaping thread is waited for by close()
        reaper = threading.Thread(target=env.stop, daemon=True)
        self._reapers.append(reaper)
        reaper.start()

    def forget(self, function_name: str) -> None:
        """DeleteFunction: the function's idle environments stop now, busy ones when their
        invocation ends; a function created again under the name starts afresh."""
        with self._lock:
            pool = self._pools.pop(function_name, None)
            if pool is None:
                return
            pool.deleted = True
            while pool.idle:
                self._retire(pool, pool.idle.pop())
            self._lock.notify_all()

    # ---- held delivery -------------------------------------------------------------------------
    def hold(self, function_name: str, on: bool) -> None:
        """Hold the function's events from now on (or stop holding: the held ones are queued)."""
        with self._lock:
            if on:
                self._holding.add(function_name)
                return
            self._holding.discard(function_name)
            now = time.monotonic()
            for event in self._held_of(function_name):
                heapq.heappush(self._queue, _Queued(now, next(self._order), self._held.pop(event.id)))
            self._lock.notify_all()

    def held(self, function_name: str) -> list[dict[str, Any]]:
        with self._lock:
            events = self._held_of(function_name)
        return [
            {"request_id": e.id, "payload": json.loads(e.payload), "hop": int(e.lineage.rsplit(":", 1)[1])}
            for e in events
        ]

    def _held_of(self, function_name: str) -> list[_AsyncEvent]:
        """The function's held events, oldest first (the caller holds the lock)."""
        return [e for e in self._held.values() if e.function.rsplit(":", 1)[1] == function_name]

    def deliver_held(self, request_id: str, copies: int = 1, keep: bool = False) -> dict[str, Any]:
        """Deliver a held event now, `copies` times side by side (a duplicate delivery), each copy
        retried as Lambda retries it; answers how each copy ended. With `keep` the event stays held,
        to be delivered again later (a late duplicate)."""
        with self._lock:
            event = self._held[request_id] if keep else self._held.pop(request_id)
            self._in_flight += copies
            self.stats.duplicate_copies += copies - 1
        events = [
            _AsyncEvent(event.id, event.function, event.payload, event.lineage, event.received_at, copy=copy)
            for copy in range(copies)
        ]
        ends: list[dict[str, Any]] = [{} for _ in events]

        def run(index: int) -> None:
            copy = events[index]
            try:
                while (end := self._attempt(copy))[0] is AttemptEnd.RETRY:
                    time.sleep(self.retry_delay_s)
                outcome, attempt = end
                ends[index] = {
                    "outcome": outcome.value,
                    "attempts": copy.attempts,
                    "response": attempt.error_document() if attempt is not None else None,
                }
            finally:
                with self._lock:
                    self._in_flight -= 1
                    self._lock.notify_all()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(1, len(events))]
        for thread in threads:
            thread.start()
        run(0)
        for thread in threads:
            thread.join()
        return {"request_id": event.id, "copies": ends}

    def drop_held(self, request_id: str) -> None:
        """The event is lost (as a hand-off can be): it never runs."""
        with self._lock:
            del self._held[request_id]

    # ---- control ------------------------------------------------------------------------------
    def set_chaos(self, chaos: Chaos) -> None:
        with self._lock:
            self.chaos = chaos

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = Stats()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out = self.stats.to_dict()
            out["queued"] = len(self._queue)
            out["held"] = len(self._held)
            out["in_flight"] = self._in_flight
            out["environments"] = len(self._all)
            out["chaos"] = asdict(self.chaos)
            return out

    def idle(self) -> bool:
        with self._lock:
            return not self._queue and not self._in_flight

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._queue.clear()
            self._held.clear()
            envs = list(self._all)
            self._all.clear()
            self._lock.notify_all()
        for env in envs:
            env.kill()
        stoppers = [threading.Thread(target=env.stop) for env in envs]
        for thread in stoppers:
            thread.start()
        for thread in stoppers + self._reapers:
            thread.join(timeout=15)


def venv_runtime(repo_root: Path, python: str | None = None) -> Runtime:
    """The project's own interpreter with the package importable from the working copy."""
    import sys

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
