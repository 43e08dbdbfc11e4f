"""`LambdaService`: the Invoke API over its parts. It checks a request as Lambda does (errors.py),
then runs it: RequestResponse in an environment leased now (concurrency.py), Event through the
queue (events.py) or the held list (held.py)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from trainer.local.lambda_service import recursion
from trainer.local.lambda_service.chaos import Chaos
from trainer.local.lambda_service.concurrency import Environments, InitFailed
from trainer.local.lambda_service.config import (
    ASYNC_PAYLOAD_LIMIT,
    SYNC_PAYLOAD_LIMIT,
    FunctionConfig,
    FunctionNotFound,
    Runtime,
)
from trainer.local.lambda_service.environment import Attempt
from trainer.local.lambda_service.errors import (
    Answer,
    InvalidRequestContent,
    LambdaError,
    RequestTooLarge,
    ResourceNotFound,
    UnknownInvocationType,
)
from trainer.local.lambda_service.events import AsyncEvent, AsyncEvents
from trainer.local.lambda_service.held import HeldEvents
from trainer.local.lambda_service.stats import Stats
from trainer.local.runtime_api import new_trace_id

INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")


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
        self.configs = configs
        self.chaos = chaos or Chaos()
        self.stats = Stats()
        # One lock for every part: a decision (room for one more environment, an event's copies
        # running side by side) reads the state of several.
        self._lock = threading.Condition()
        current_chaos = lambda: self.chaos  # noqa: E731 - set_chaos replaces it
        self.environments = Environments(
            self._lock, self.stats, current_chaos, runtime, cloud_env, log_dir, account_concurrency, reserved_total
        )
        self.events = AsyncEvents(
            self._lock,
            self.stats,
            current_chaos,
            configs,
            self.environments,
            send_to_destination,
            retry_delay_s,
            dispatchers=account_concurrency,
        )
        self.held_events = HeldEvents(self._lock, self.stats, self.events)

    # ---- the Invoke API -------------------------------------------------------------------------
    def invoke(
        self,
        function: str,
        invocation_type: str,
        payload: bytes,
        trace_header: str | None,
        configs: Callable[[str], FunctionConfig] | None = None,
    ) -> Answer:
        try:
            config = self._config(function, configs or self.configs)
            payload = checked_payload(invocation_type, payload)
            if invocation_type == "DryRun":
                return Answer(204, b"")
            lineage = recursion.next_lineage(trace_header)
            if invocation_type == "Event":
                return self._accept_event(config, payload, lineage)
            return self._invoke_sync(config, payload, lineage)
        except LambdaError as error:
            return error.answer()

    @staticmethod
    def _config(function: str, configs: Callable[[str], FunctionConfig]) -> FunctionConfig:
        try:
            return configs(function)
        except FunctionNotFound as exc:
            raise ResourceNotFound(str(exc)) from exc

    def _invoke_sync(self, config: FunctionConfig, payload: bytes, lineage: str) -> Answer:
        with self._lock:
            self.stats.invocations_sync += 1
        try:
            with self.environments.lease(config, wait=False) as env:  # TooManyRequests past the limit
                attempt = env.run(payload, new_trace_id(lineage))
        except InitFailed as failed:
            return function_error_answer(failed.attempt)
        if not attempt.ok:
            with self._lock:
                self.stats.function_errors += 1
                self.stats.timeouts += attempt.timed_out
            return function_error_answer(attempt)
        if len(attempt.body) > SYNC_PAYLOAD_LIMIT:
            doc = {
                "errorType": "Function.ResponseSizeTooLarge",
                "errorMessage": "Response payload size exceeded maximum allowed payload size "
                f"({SYNC_PAYLOAD_LIMIT} bytes).",
            }
            return Answer(200, json.dumps(doc).encode(), invoke_headers(attempt.request_id, "Unhandled"))
        return Answer(200, attempt.body, invoke_headers(attempt.request_id))

    def _accept_event(self, config: FunctionConfig, payload: bytes, lineage: str) -> Answer:
        event = AsyncEvent(str(uuid.uuid4()), config.arn, payload, lineage, received_at=time.monotonic())
        with self._lock:
            self.stats.events_accepted += 1
            if not self.held_events.take(config.name, event):
                self.events.enqueue(event)
        return Answer(202, b"", {"x-amzn-RequestId": event.id})

    # ---- the control plane's part, and the controls ---------------------------------------------
    def forget(self, function_name: str) -> None:
        """DeleteFunction: the function's environments end (trainer.local.lambda_service.concurrency)."""
        self.environments.forget(function_name)

    def hold(self, function_name: str, on: bool) -> None:
        self.held_events.hold(function_name, on)

    def held(self, function_name: str) -> list[dict[str, Any]]:
        return self.held_events.held(function_name)

    def deliver_held(self, request_id: str, copies: int = 1, keep: bool = False) -> dict[str, Any]:
        return self.held_events.deliver(request_id, copies, keep)

    def drop_held(self, request_id: str) -> None:
        self.held_events.drop(request_id)

    def set_chaos(self, chaos: Chaos) -> None:
        """New chaos settings for the next deliveries and environments; warm environments stay."""
        with self._lock:
            self.chaos = chaos

    def reset_stats(self) -> None:
        with self._lock:
            self.stats.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self.stats.to_dict(),
                "queued": len(self.events),
                "held": len(self.held_events),
                "in_flight": self.events.in_flight,
                "environments": len(self.environments),
                "chaos": asdict(self.chaos),
            }

    def idle(self) -> bool:
        return self.events.idle()

    def environments_listing(self) -> list[dict[str, Any]]:
        return self.environments.listing()

    def close(self) -> None:
        self.events.close()
        self.held_events.clear()
        self.environments.close()


def checked_payload(invocation_type: str, payload: bytes) -> bytes:
    """The request's payload ({} when empty), or the error Lambda answers it with."""
    if invocation_type not in INVOCATION_TYPES:
        raise UnknownInvocationType(invocation_type)
    limit = SYNC_PAYLOAD_LIMIT if invocation_type != "Event" else ASYNC_PAYLOAD_LIMIT
    if len(payload) > limit:
        raise RequestTooLarge(limit, "InvokeAsync" if invocation_type == "Event" else "Invoke")
    payload = payload or b"{}"
    try:
        json.loads(payload)
    except ValueError as exc:
        raise InvalidRequestContent(exc) from exc
    return payload


def function_error_answer(attempt: Attempt) -> Answer:
    return Answer(200, attempt.body, invoke_headers(attempt.request_id, "Unhandled"))


def invoke_headers(request_id: str, function_error: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": request_id}
    if function_error:
        headers["X-Amz-Function-Error"] = function_error
    return headers
