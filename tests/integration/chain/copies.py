"""Concurrent copies: the trainer run by several execution environments (separate processes, each
with adapters of its own), with every event delivered to two of them at nearly the same moment,
random SIGKILLs in the middle of invocations followed by Lambda's retry, late copies and
reordered deliveries. Seeded, so a failing schedule can be replayed.

A worker process is an execution environment: it builds its adapters from its environment, as a
Lambda cold start does, and hands events on through its invoker to the dispatcher, which plays
the Lambda service's asynchronous queue.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import multiprocessing
import os
import random
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

LAMBDA_RETRIES = 2  # an asynchronous event is retried twice after a function error


class PipeInvoker:
    """The worker's hand-off: the event goes to the dispatcher, as an async invoke goes to Lambda."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def invoke_async(self, event: dict[str, Any]) -> None:
        self.conn.send(("invoke", event))


class Deadline:
    def __init__(self, budget_ms: int):
        self.end = time.monotonic() + budget_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.end - time.monotonic()) * 1000))


def worker_main(conn: Connection, env: dict[str, str]) -> None:
    """An execution environment: cold start, then one invocation at a time until told to stop."""
    os.environ.update(env)
    from trainer import services
    from trainer.handlers import trainer as trainer_handler
    from trainer.settings import Settings

    svc = services.build(Settings.from_env(), invoker=PipeInvoker(conn))
    conn.send(("ready", os.getpid()))
    while True:
        message = conn.recv()
        if message is None:
            return
        delivery, event, budget_ms = message
        try:
            result = trainer_handler.run(event, Deadline(budget_ms), svc)
            conn.send(("done", delivery, result["status"]))
        except Exception as exc:
            conn.send(("error", delivery, f"{type(exc).__name__}: {exc}"))


@dataclass
class Chaos:
    seed: int
    copies: int = 2  # deliveries of every event, to different environments, at nearly the same moment
    kill_probability: float = 0.04
    late_probability: float = 0.05  # one more copy, a while later
    reorder_ms: float = 3.0  # copies start within this window, in random order
    # Lambda's retry comes after the completion lease of a killed holder has run out (a minute
    # against 30 s on AWS; 1.2 s against the workers' 1 s here).
    retry_delay_s: float = 1.2
    budget_ms: tuple[int, int] = (900_000, 900_000)  # each delivery's deadline, drawn in this range


@dataclass
class Figures:
    deliveries: int = 0
    overlapping: int = 0  # deliveries that started while another copy of the same event was running
    kills: int = 0
    retries: int = 0
    late: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Worker:
    process: multiprocessing.Process
    conn: Connection
    ready: bool = False
    busy: tuple[int, dict[str, Any], int] | None = None  # (delivery, event, attempt)
    kill_at: float | None = None


class Dispatcher:
    """Plays Lambda's async invocation queue across a pool of execution environments."""

    def __init__(self, env: dict[str, str], chaos: Chaos, workers: int = 4):
        self.env, self.chaos, self.size = env, chaos, workers
        self.rng = random.Random(chaos.seed)
        self.ctx = multiprocessing.get_context("spawn")
        self.workers: list[_Worker] = []
        self.queue: list[tuple[float, int, dict[str, Any], int]] = []
        self.counter = itertools.count()
        self.figures = Figures()
        self.running: dict[int, int] = {}  # event seq -> copies running now

    def __enter__(self) -> Dispatcher:
        for _ in range(self.size):
            self._spawn()
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self.workers:
            if worker.process.is_alive():
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
        for worker in self.workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()

    def _spawn(self) -> None:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(target=worker_main, args=(child, self.env), daemon=True)
        process.start()
        child.close()
        self.workers.append(_Worker(process, parent))

    def submit(self, event: dict[str, Any]) -> None:
        """An asynchronous invoke: `copies` deliveries close together, sometimes one more later."""
        now = time.monotonic()
        for _ in range(self.chaos.copies):
            self._push(now + self.rng.uniform(0, self.chaos.reorder_ms / 1000), event, 0)
        if self.rng.random() < self.chaos.late_probability:
            self.figures.late += 1
            self._push(now + self.rng.uniform(0.05, 0.5), event, 0)

    def _push(self, due: float, event: dict[str, Any], attempt: int) -> None:
        heapq.heappush(self.queue, (due, next(self.counter), event, attempt))

    def run(self, timeout_s: float = 600) -> Figures:
        """Deliver until nothing is queued or running."""
        deadline = time.monotonic() + timeout_s
        while self.queue or any(w.busy for w in self.workers):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the chain did not end within {timeout_s} s: {self.figures}")
            self._dispatch_due()
            self._kill_due()
            conns = [w.conn for w in self.workers]
            for conn in wait(conns, timeout=0.005):
                self._receive(next(w for w in self.workers if w.conn is conn))
        return self.figures

    def _dispatch_due(self) -> None:
        now = time.monotonic()
        while self.queue and self.queue[0][0] <= now:
            idle = [w for w in self.workers if w.ready and w.busy is None]
            if not idle:
                return
            _, delivery, event, attempt = heapq.heappop(self.queue)
            worker = self.rng.choice(idle)
            budget = self.rng.randint(*self.chaos.budget_ms)
            worker.busy = (delivery, event, attempt)
            if self.rng.random() < self.chaos.kill_probability:
                worker.kill_at = now + self.rng.uniform(0, 0.03)
            seq = event["seq"]
            if self.running.get(seq):
                self.figures.overlapping += 1
            self.running[seq] = self.running.get(seq, 0) + 1
            self.figures.deliveries += 1
            worker.conn.send((delivery, event, budget))

    def _kill_due(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers):
            if worker.busy and worker.kill_at is not None and now >= worker.kill_at:
                os.kill(worker.process.pid, signal.SIGKILL)
                worker.process.join()
                # What it handed on before it died was accepted, as a 202 from Lambda is.
                while worker.conn.poll() and self._receive(worker):
                    pass
                if worker.busy:
                    self.figures.kills += 1
                    self._ended(worker, failed=True)
                self.workers.remove(worker)
                self._spawn()

    def _receive(self, worker: _Worker) -> bool:
        try:
            kind, *rest = worker.conn.recv()
        except (EOFError, OSError):
            return False
        if kind == "ready":
            worker.ready = True
        elif kind == "invoke":
            self.submit(rest[0])
        elif kind == "done":
            self._ended(worker, failed=False)
        elif kind == "error":
            self.figures.errors.append(rest[1])
            self._ended(worker, failed=True)
        return True

    def _ended(self, worker: _Worker, failed: bool) -> None:
        _, event, attempt = worker.busy
        worker.busy, worker.kill_at = None, None
        self.running[event["seq"]] -= 1
        if failed and attempt < LAMBDA_RETRIES:
            self.figures.retries += 1
            self._push(time.monotonic() + self.chaos.retry_delay_s, event, attempt + 1)
