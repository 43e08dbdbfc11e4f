"""Asynchronous invocation (InvocationType Event), as Lambda runs it: the event is queued (202 at
once), attempted in an environment, retried after a function error up to MaximumRetryAttempts,
dropped once older than MaximumEventAgeInSeconds or when it would be hop 17 of a recursive chain,
and then sent to the on-failure destination. Chaos (duplicates, delays, kills) acts here."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from trainer.local.lambda_service import recursion
from trainer.local.lambda_service.chaos import Chaos
from trainer.local.lambda_service.concurrency import Environments, InitFailed
from trainer.local.lambda_service.config import FunctionConfig, FunctionNotFound
from trainer.local.lambda_service.destinations import Condition, failure_record
from trainer.local.lambda_service.environment import Attempt
from trainer.local.lambda_service.stats import Stats
from trainer.local.runtime_api import new_trace_id


class AttemptEnd(str, Enum):
    """How one attempt at an asynchronous event ended, for the service (and a held delivery's answer)."""

    OK = "ok"
    RETRY = "retry"  # a function error with attempts left: Lambda tries again after a delay
    FAILED = "failed"  # given up: sent to the on-failure destination
    DISCARDED = "discarded"  # the function was deleted since


@dataclass
class AsyncEvent:
    id: str
    function: str
    payload: bytes
    lineage: str
    received_at: float
    copy: int = 0
    attempts: int = 0

    def copy_of(self, copy: int) -> AsyncEvent:
        """Another delivery of the same event (a duplicate), with attempts of its own."""
        return replace(self, copy=copy, attempts=0)


@dataclass(order=True)
class _Queued:
    due: float
    order: int
    event: AsyncEvent = field(compare=False)


class AsyncEvents:
    def __init__(
        self,
        lock: threading.Condition,
        stats: Stats,
        chaos: Callable[[], Chaos],
        configs: Callable[[str], FunctionConfig],
        environments: Environments,
        send_to_destination: Callable[[str, dict[str, Any]], None],
        retry_delay_s: float,
        dispatchers: int,
    ) -> None:
        self._lock, self._stats, self._chaos = lock, stats, chaos
        self.configs, self.environments = configs, environments
        self.send_to_destination, self.retry_delay_s = send_to_destination, retry_delay_s
        self._queue: list[_Queued] = []
        self._order = itertools.count()
        self._running_copies: dict[str, int] = {}
        self.in_flight = 0  # deliveries under way (queued ones and held ones delivered on request)
        self._closed = False
        for i in range(dispatchers):
            threading.Thread(target=self._dispatch, name=f"lambda-async-{i}", daemon=True).start()

    # ---- the queue -----------------------------------------------------------------------------
    def enqueue(self, event: AsyncEvent) -> None:
        """An accepted event, as chaos delivers it: its copies, each due after its delay."""
        chaos, now = self._chaos(), time.monotonic()
        with self._lock:
            self._stats.duplicate_copies += chaos.copies - 1
            for copy in range(chaos.copies):
                self.push(event.copy_of(copy), now + chaos.delay_s(event.payload, copy))

    def push(self, event: AsyncEvent, due: float) -> None:
        with self._lock:
            heapq.heappush(self._queue, _Queued(due, next(self._order), event))
            self._lock.notify_all()

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)

    def idle(self) -> bool:
        with self._lock:
            return not self._queue and not self.in_flight

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._queue.clear()
            self._lock.notify_all()

    def _next_due(self) -> AsyncEvent | None:
        """The next event once it is due; None once the service closes."""
        with self._lock:
            while not self._closed and (not self._queue or self._queue[0].due > time.monotonic()):
                wait = (self._queue[0].due - time.monotonic()) if self._queue else None
                self._lock.wait(timeout=wait)
            if self._closed:
                return None
            self.in_flight += 1
            return heapq.heappop(self._queue).event

    def _dispatch(self) -> None:
        while (event := self._next_due()) is not None:
            try:
                self.deliver(event)
            except Exception as exc:  # the service must outlive any one delivery
                print(f"lambda service: delivery of {event.id} failed: {type(exc).__name__}: {exc}", flush=True)
            finally:
                with self._lock:
                    self.in_flight -= 1
                    self._lock.notify_all()

    def deliver(self, event: AsyncEvent) -> None:
        """One attempt; after a function error with attempts left, the event is queued again."""
        if self.attempt(event)[0] is AttemptEnd.RETRY:
            self.push(event, time.monotonic() + self.retry_delay_s)

    # ---- one attempt ---------------------------------------------------------------------------
    def attempt(self, event: AsyncEvent) -> tuple[AttemptEnd, Attempt | None]:
        """One attempt at an event: how it ended, and the attempt itself when one ran."""
        try:
            config = self.configs(event.function)
        except FunctionNotFound:
            return AttemptEnd.DISCARDED, None  # deleted since: Lambda discards its queued events
        refused = self._refusal(config, event)
        if refused is not None:
            self._give_up(config, event, refused, None)
            return AttemptEnd.FAILED, None
        event.attempts += 1
        attempt = self._run(config, event)
        if attempt.ok:
            return AttemptEnd.OK, attempt
        with self._lock:
            self._stats.function_errors += 1
            self._stats.timeouts += attempt.timed_out
        if event.attempts <= config.max_retry_attempts:
            return AttemptEnd.RETRY, attempt
        self._give_up(config, event, Condition.RETRIES_EXHAUSTED, attempt)
        return AttemptEnd.FAILED, attempt

    def _refusal(self, config: FunctionConfig, event: AsyncEvent) -> Condition | None:
        """Why Lambda gives the event up without running it, if it does."""
        with self._lock:
            if recursion.stopped(config, event.lineage):
                self._stats.recursion_stops += 1
                return Condition.RECURSIVE_INVOCATION
            if time.monotonic() - event.received_at > config.max_event_age_s:
                self._stats.dropped_age += 1
                return Condition.EVENT_AGE_EXCEEDED
        return None

    def _run(self, config: FunctionConfig, event: AsyncEvent) -> Attempt:
        """The attempt in an environment (a chaos kill perhaps in its middle)."""
        kill_after = self._chaos().kill_after_s(event.payload, event.copy, event.attempts)
        try:
            with self.environments.lease(config, wait=True) as env, self._running(event):
                attempt = env.run(event.payload, new_trace_id(event.lineage), kill_after)
        except InitFailed as failed:
            with self._running(event):
                return failed.attempt
        if kill_after is not None and attempt.killed:
            with self._lock:
                self._stats.kills += 1
        return attempt

    @contextlib.contextmanager
    def _running(self, event: AsyncEvent) -> Iterator[None]:
        """Counts the attempt, and whether another copy of the same event runs beside it."""
        with self._lock:
            stats = self._stats
            stats.deliveries += 1
            stats.retries += event.attempts > 1
            running = self._running_copies.get(event.id, 0) + 1
            self._running_copies[event.id] = running
            stats.overlapping_deliveries += running > 1
            stats.max_concurrent_copies = max(stats.max_concurrent_copies, running)
        try:
            yield
        finally:
            with self._lock:
                self._running_copies[event.id] -= 1
                if not self._running_copies[event.id]:
                    del self._running_copies[event.id]

    def _give_up(
        self, config: FunctionConfig, event: AsyncEvent, condition: Condition, attempt: Attempt | None
    ) -> None:
        """The event goes to the function's on-failure destination, if it has one."""
        if not config.on_failure:
            return
        record = failure_record(config, event.id, event.payload, event.attempts, condition, attempt)
        self.send_to_destination(config.on_failure, record)
        with self._lock:
            self._stats.destination_records += 1
