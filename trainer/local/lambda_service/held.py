"""Held delivery, for tests that step a chain: a function's accepted events wait in a list instead
of the queue; each is then delivered on request (with Lambda's retries), alone or as several copies
side by side, or dropped (a lost hand-off). What runs is the same: the invoke path, the
environments, the retries."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from trainer.local.lambda_service import recursion
from trainer.local.lambda_service.events import AsyncEvent, AsyncEvents, AttemptEnd
from trainer.local.lambda_service.stats import Stats


class HeldEvents:
    def __init__(self, lock: threading.Condition, stats: Stats, events: AsyncEvents) -> None:
        self._lock, self._stats, self._events = lock, stats, events
        self._holding: set[str] = set()  # functions whose events are held
        self._held: dict[str, AsyncEvent] = {}  # request id -> event, in arrival order

    def take(self, function_name: str, event: AsyncEvent) -> bool:
        """Keep the event if its function's events are held; False: it goes to the queue."""
        with self._lock:
            if function_name not in self._holding:
                return False
            self._held[event.id] = event
            self._lock.notify_all()
            return True

    def hold(self, function_name: str, on: bool) -> None:
        """Hold the function's events from now on (or stop holding: the held ones are queued)."""
        with self._lock:
            if on:
                self._holding.add(function_name)
                return
            self._holding.discard(function_name)
            now = time.monotonic()
            for event in self._held_of(function_name):
                self._events.push(self._held.pop(event.id), now)

    def held(self, function_name: str) -> list[dict[str, Any]]:
        with self._lock:
            events = self._held_of(function_name)
        return [{"request_id": e.id, "payload": json.loads(e.payload), "hop": recursion.hop(e.lineage)} for e in events]

    def _held_of(self, function_name: str) -> list[AsyncEvent]:
        """The function's held events, oldest first (the caller holds the lock)."""
        return [e for e in self._held.values() if e.function.rsplit(":", 1)[1] == function_name]

    def deliver(self, request_id: str, copies: int = 1, keep: bool = False) -> dict[str, Any]:
        """Deliver a held event now, `copies` times side by side (a duplicate delivery), each copy
        retried as Lambda retries it; answers how each copy ended. With `keep` the event stays held,
        to be delivered again later (a late duplicate). KeyError: no such held event."""
        with self._lock:
            event = self._held[request_id] if keep else self._held.pop(request_id)
            self._events.in_flight += copies
            self._stats.duplicate_copies += copies - 1
        events = [event.copy_of(copy) for copy in range(copies)]
        ends: list[dict[str, Any]] = [{} for _ in events]

        def run(index: int) -> None:
            try:
                ends[index] = self._until_done(events[index])
            finally:
                with self._lock:
                    self._events.in_flight -= 1
                    self._lock.notify_all()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(1, len(events))]
        for thread in threads:
            thread.start()
        run(0)
        for thread in threads:
            thread.join()
        return {"request_id": event.id, "copies": ends}

    def _until_done(self, copy: AsyncEvent) -> dict[str, Any]:
        """One copy's attempts, with Lambda's retries, until it succeeds or is given up on."""
        while (end := self._events.attempt(copy))[0] is AttemptEnd.RETRY:
            time.sleep(self._events.retry_delay_s)
        outcome, attempt = end
        return {
            "outcome": outcome.value,
            "attempts": copy.attempts,
            "response": attempt.error_document() if attempt is not None else None,
        }

    def drop(self, request_id: str) -> None:
        """The event is lost (as a hand-off can be): it never runs. KeyError: no such held event."""
        with self._lock:
            del self._held[request_id]

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def clear(self) -> None:
        with self._lock:
            self._held.clear()
