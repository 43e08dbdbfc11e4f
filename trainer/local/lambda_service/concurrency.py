"""Execution environments kept warm per function, and the concurrency they may use: an invocation
takes a `lease` on an environment (a warm idle one, or a new one) and gives it back when it ends.

As on AWS: a function with reserved concurrency runs up to it; the others share what the account
limit leaves after every reservation. Past the limit a synchronous invoke is throttled
(TooManyRequests) and an event waits. A changed configuration retires the old environments; a
deleted function's end (`forget`)."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trainer.local.lambda_service.chaos import Chaos
from trainer.local.lambda_service.config import FunctionConfig, Runtime
from trainer.local.lambda_service.environment import Attempt, ExecutionEnvironment
from trainer.local.lambda_service.errors import TooManyRequests
from trainer.local.lambda_service.forkserver import ForkServers
from trainer.local.lambda_service.stats import Stats


class InitFailed(Exception):
    """A new environment failed its init (or the service closed as it started): `attempt` is how
    the invocation ends, as Lambda reports an init error."""

    def __init__(self, attempt: Attempt) -> None:
        super().__init__(attempt.error_type)
        self.attempt = attempt


class Pool:
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


class Environments:
    def __init__(
        self,
        lock: threading.Condition,
        stats: Stats,
        chaos: Callable[[], Chaos],
        runtime: Runtime,
        cloud_env: dict[str, str],
        log_dir: Path,
        account_concurrency: int,
        reserved_total: Callable[[], int] | None = None,
    ) -> None:
        self._lock, self._stats, self._chaos = lock, stats, chaos
        self.runtime, self.cloud_env, self.log_dir = runtime, cloud_env, log_dir
        self.forks = ForkServers(log_dir)
        self.account_concurrency = account_concurrency
        # The concurrency every function's reservation takes from the account (the control plane
        # knows it; by default, the reservations of the functions that have run here).
        self.reserved_total = reserved_total or self._reserved_in_pools
        self._pools: dict[str, Pool] = {}
        self._all: set[ExecutionEnvironment] = set()
        self._placed = itertools.count()  # environments placed on the fleet's hosts so far
        self._reapers: list[threading.Thread] = []
        self._closed = False

    @contextlib.contextmanager
    def lease(self, config: FunctionConfig, wait: bool) -> Iterator[ExecutionEnvironment]:
        """An environment for one invocation, given back (kept warm, or retired) when it ends.
        Raises TooManyRequests when at the limit and not waiting, InitFailed when a new one fails."""
        env = self._acquire(config, wait)
        try:
            yield env
        finally:
            self._release(env)

    def __len__(self) -> int:
        with self._lock:
            return len(self._all)

    def listing(self) -> list[dict[str, Any]]:
        """Each environment's process, function and the variables it was started with: a forked one's
        /proc/<pid>/environ shows its fork server's (forkserver.py)."""
        with self._lock:
            envs = sorted(self._all, key=lambda env: env.id)
        return [{"pid": env.process.pid, "function": env.config.name, "environment": env.environ} for env in envs]

    def _has_room(self, pool: Pool) -> bool:
        """Whether one more invocation of the pool's function may run now (the caller holds the lock)."""
        if pool.reserved is not None:
            return pool.busy < pool.reserved
        shared = sum(p.busy for p in self._pools.values() if p.reserved is None)
        return shared < self.account_concurrency - self.reserved_total()

    def _reserved_in_pools(self) -> int:
        return sum(p.reserved for p in self._pools.values() if p.reserved is not None)

    def _acquire(self, config: FunctionConfig, wait: bool) -> ExecutionEnvironment:
        with self._lock:
            pool = self._pools.setdefault(config.name, Pool())
            pool.reserved = config.reserved_concurrency
            while True:
                warm = self._warm(pool, config)
                if warm is not None:
                    return warm
                if self._has_room(pool):
                    pool.count += 1  # the new environment's place, taken before it starts
                    host = self._chaos().host(next(self._placed))
                    break
                if not wait or self._closed:
                    raise TooManyRequests()
                self._lock.wait(timeout=0.5)
        return self._start(config, pool, host)

    def _warm(self, pool: Pool, config: FunctionConfig) -> ExecutionEnvironment | None:
        """An idle environment built from the function's present configuration; the others retire."""
        while pool.idle:
            env = pool.idle.pop()
            if env.key == config.environment_key() and env.alive:
                return env
            self._retire(pool, env)
        return None

    def _start(self, config: FunctionConfig, pool: Pool, host: str | None) -> ExecutionEnvironment:
        try:
            env = ExecutionEnvironment(config, self.runtime, self.cloud_env, self.log_dir, host, self.forks)
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
            self._stats.environments_started += 1
            if failed is not None:
                pool.count -= 1
                self._all.discard(env)
                self._lock.notify_all()
                raise InitFailed(failed)
            self._count_started(env)
            closing = self._closed
        if closing:  # started while the service was closing: it must not outlive it
            env.kill()
            env.stop()
            doc = {"errorType": "ServiceException", "errorMessage": "the Lambda service is shutting down"}
            raise InitFailed(Attempt(str(uuid.uuid4()), False, json.dumps(doc).encode(), "ServiceException"))
        return env

    def _count_started(self, env: ExecutionEnvironment) -> None:
        stats = self._stats
        stats.environment_start_s.append(env.ready_s or 0.0)
        if env.host is not None:
            stats.hosts[env.host] = stats.hosts.get(env.host, 0) + 1
        stats.kernels[env.kernel] = stats.kernels.get(env.kernel, 0) + 1

    def _release(self, env: ExecutionEnvironment) -> None:
        with self._lock:
            pool = env.pool
            if env.alive and not self._closed and not pool.deleted:
                pool.idle.append(env)
            else:
                self._retire(pool, env)
            self._lock.notify_all()

    def _retire(self, pool: Pool, env: ExecutionEnvironment) -> None:
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

    def close(self) -> None:
        """Every environment ends, those starting and running included."""
        with self._lock:
            self._closed = True
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
        self.forks.close()
