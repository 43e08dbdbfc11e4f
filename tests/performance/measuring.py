"""How the bench measures: a meter wrapped around a chain run's Redis client, AWS SDK and engine (the
production stores count nothing), the bytes a hand-off strictly needs, CPU seconds, resident memory,
and the import time of the handlers.

The meter runs inside the functions' execution environments: the bench copies this module into its
image's task root (as lnn_bench_measuring, beside tests/performance/bench_functions.py), so it
imports nothing from the tests and only what the image ships (numpy, the trainer package)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer import engine
from trainer.stores.codec import MAGIC, encode


@dataclass
class Meter:
    """What one chain run did against Redis and AWS, and how long its steps took."""

    compute_s: float = 0.0
    redis_s: float = 0.0
    round_trips: int = 0
    bytes_sent: int = 0  # encoded tensors written (data and state); keys and control values are not counted
    bytes_received: int = 0
    aws_calls: int = 0
    aws_operations: Counter[str] = field(default_factory=Counter)  # "service:Operation" -> calls
    aws_s: float = 0.0
    data_bytes: int = 0
    data_load_s: float = 0.0
    data_loads: int = 0  # reads of the training data (one per execution environment and run, when warm)
    state_bytes: int = 0
    # A data-parallel worker's reduction through the cache (trainer.stores.reduction_store's own
    # count of payload bytes) and the steps it gathered; its math's thread CPU seconds beside its
    # wall seconds (compute_s), since workers that outnumber the cores wait for one.
    reduce_bytes_sent: int = 0
    reduce_bytes_received: int = 0
    reduce_steps: int = 0
    compute_cpu_s: float = 0.0
    # The state tensors each store call moved, as fingerprints: the log crosses from the execution
    # environments to the bench as JSON, and handoff_bytes only needs to know what changed.
    log: list[tuple[str, dict[str, Fingerprint]]] = field(default_factory=list)

    @property
    def bytes_moved(self) -> int:
        return self.bytes_sent + self.bytes_received

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON (one invocation's line)."""
        out = {k: getattr(self, k) for k in _SUMMED}
        out["aws_operations"] = dict(self.aws_operations)
        out["log"] = [[kind, {n: list(f) for n, f in tensors.items()}] for kind, tensors in self.log]
        return out

    @classmethod
    def total(cls, lines: list[dict[str, Any]]) -> Meter:
        """Several invocations' figures (as_dict) summed, their logs in the order given."""
        meter = cls()
        for line in lines:
            for key in _SUMMED:
                setattr(meter, key, getattr(meter, key) + line[key])
            meter.aws_operations.update(line["aws_operations"])
            meter.log += [(kind, {n: Fingerprint(*f) for n, f in t.items()}) for kind, t in line["log"]]
        return meter


_SUMMED = (
    "compute_s",
    "redis_s",
    "round_trips",
    "bytes_sent",
    "bytes_received",
    "aws_calls",
    "aws_s",
    "data_bytes",
    "data_load_s",
    "data_loads",
    "state_bytes",
    "reduce_bytes_sent",
    "reduce_bytes_received",
    "reduce_steps",
    "compute_cpu_s",
)


class Fingerprint(tuple):
    """A tensor as handoff_bytes needs it: the digest of its encoding (dtype, shape and values) and
    the encoding's size in bytes."""

    def __new__(cls, digest: str, size: int) -> Fingerprint:
        return super().__new__(cls, (digest, size))

    @property
    def size(self) -> int:
        return self[1]


def fingerprints(tensors: dict[str, np.ndarray]) -> dict[str, Fingerprint]:
    out = {}
    for name, value in tensors.items():
        blob = encode(value)
        out[name] = Fingerprint(hashlib.sha256(blob).hexdigest(), len(blob))
    return out


def _blob_bytes(values: Any) -> int:
    """Bytes of the encoded tensors in a command's arguments or reply (not keys, cursors, replies)."""
    if isinstance(values, (bytes, bytearray)):
        return len(values) if values[: len(MAGIC)] == MAGIC else 0
    if isinstance(values, (list, tuple)):
        return sum(_blob_bytes(v) for v in values)
    return 0


class _Patches:
    """setattr with a record, undone in reverse order."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any, bool]] = []

    def __call__(self, owner: Any, name: str, wrapper: Any) -> None:
        had_own = isinstance(owner, type) or name in vars(owner)
        self._undo.append((owner, name, getattr(owner, name), had_own))
        setattr(owner, name, wrapper)

    def restore(self) -> None:
        for owner, name, original, had_own in reversed(self._undo):
            if had_own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)


def _meter_redis(meter: Meter, client: Any, patch: _Patches) -> None:
    """Every command of the client (scripts included) and every pipeline is one round trip; the
    binary values it carries each way are its tensor traffic."""
    import redis.client

    execute_command = client.execute_command

    def counted_command(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        reply = None
        try:
            reply = execute_command(*args, **kwargs)
            return reply
        finally:
            meter.redis_s += time.perf_counter() - t
            meter.round_trips += 1
            meter.bytes_sent += _blob_bytes(args)
            meter.bytes_received += _blob_bytes(reply)

    patch(client, "execute_command", counted_command)
    pipeline_execute = redis.client.Pipeline.execute

    def counted_pipeline(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent = sum(_blob_bytes(command_args) for command_args, _ in self.command_stack)
        t = time.perf_counter()
        reply = None
        try:
            reply = pipeline_execute(self, *args, **kwargs)
            return reply
        finally:
            meter.redis_s += time.perf_counter() - t
            meter.round_trips += 1
            meter.bytes_sent += sent
            meter.bytes_received += _blob_bytes(reply)

    patch(redis.client.Pipeline, "execute", counted_pipeline)


def _meter_aws(meter: Meter, patch: _Patches) -> None:
    import botocore.client

    from trainer.stores.blob_store import S3BlobStore

    api_call = botocore.client.BaseClient._make_api_call

    def counted_api_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return api_call(self, *args, **kwargs)
        finally:
            meter.aws_s += time.perf_counter() - t
            meter.aws_calls += 1
            meter.aws_operations[f"{self.meta.service_model.service_name}:{args[0] if args else '?'}"] += 1

    patch(botocore.client.BaseClient, "_make_api_call", counted_api_call)

    # A data-parallel worker that reads its training examples from the dataset object
    # (trainer.data.direct) loads them from S3, not from the cache: the same data load.
    read_range = S3BlobStore.read_range

    def counted_read_range(self: Any, *args: Any, **kwargs: Any) -> bytes:
        t = time.perf_counter()
        data = read_range(self, *args, **kwargs)
        meter.data_bytes += len(data)
        meter.data_load_s += time.perf_counter() - t
        return data

    patch(S3BlobStore, "read_range", counted_read_range)


def _meter_steps(meter: Meter, patch: _Patches) -> None:
    run_step = engine.run_step

    def timed_step(*args: Any, **kwargs: Any) -> Any:
        t, cpu = time.perf_counter(), time.thread_time()
        try:
            return run_step(*args, **kwargs)
        finally:
            meter.compute_s += time.perf_counter() - t
            meter.compute_cpu_s += time.thread_time() - cpu

    patch(engine, "run_step", timed_step)


def _meter_workers(meter: Meter, patch: _Patches, stamps: Path | None, tag: dict[str, Any]) -> Callable[[], None]:
    """A data-parallel worker's math (its micro-shards' partials, whoever's they are, and its
    chunk's update), its reduction store's traffic, and, with `stamps`, one line per gathered step
    (the worker, the step, the time): the bench reads them while the run goes, to kill a worker
    at a chosen step and to time the steps around it."""
    from trainer.parallel import step
    from trainer.stores import reduction_store

    for name in ("block_nodes", "owner_update"):
        original = getattr(step, name)

        def timed(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            t, cpu = time.perf_counter(), time.thread_time()
            try:
                return _original(*args, **kwargs)
            finally:
                meter.compute_s += time.perf_counter() - t
                meter.compute_cpu_s += time.thread_time() - cpu

        patch(step, name, timed)
    store = reduction_store.ReductionStore
    init, gather, end_step = store.__init__, store.gather, store.end_step
    stores: list[Any] = []
    gathered: dict[int, int] = {}

    def registered(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        stores.append(self)

    def noted_gather(self: Any, step_number: int, *args: Any, **kwargs: Any) -> Any:
        gathered[id(self)] = step_number
        return gather(self, step_number, *args, **kwargs)

    def stamped_end_step(self: Any) -> None:
        end_step(self)
        meter.reduce_steps += 1
        meter.reduce_bytes_sent, meter.reduce_bytes_received = (
            sum(s.traffic.sent for s in stores),
            sum(s.traffic.received for s in stores),
        )
        if stamps is not None:
            line = {"run_id": self.run_id, "pid": os.getpid(), "step": gathered.get(id(self)), "t": time.time(), **tag}
            with open(stamps, "a") as out:
                out.write(json.dumps(line) + "\n")

    patch(store, "__init__", registered)
    patch(store, "gather", noted_gather)
    patch(store, "end_step", stamped_end_step)

    def settle() -> None:  # what moved after the last step (a rejoin's reads, the final reports) counts too
        meter.reduce_bytes_sent = sum(s.traffic.sent for s in stores)
        meter.reduce_bytes_received = sum(s.traffic.received for s in stores)

    return settle


def _meter_store(meter: Meter, store: Any, patch: _Patches) -> None:
    """Split the Redis traffic into the dataset's and the chain state's, and log the state tensors."""

    def wrap_data(name: str) -> None:
        fn = getattr(store, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            before, t = meter.bytes_moved, time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                meter.data_bytes += meter.bytes_moved - before
                if name == "get_data":
                    meter.data_load_s += time.perf_counter() - t
                    meter.data_loads += 1

        patch(store, name, wrapper)

    for name in ("put_data", "get_data"):
        wrap_data(name)

    def wrap_state(name: str, tensors_of: Any) -> None:
        fn = getattr(store, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            before = meter.bytes_moved
            result = fn(*args, **kwargs)
            meter.state_bytes += meter.bytes_moved - before
            tensors = tensors_of(args, kwargs, result)
            if tensors is not None:
                meter.log.append((name, fingerprints(tensors)))
            return result

        patch(store, name, wrapper)

    wrap_state("create_run", lambda a, k, r: a[2] if r else None)
    wrap_state("snapshot", lambda a, k, r: r[2])
    wrap_state("read_at", lambda a, k, r: r)
    wrap_state("commit", lambda a, k, r: a[3] if r == "OK" else None)


@contextlib.contextmanager
def metered(store: Any, stamps: Path | None = None, tag: dict[str, Any] | None = None) -> Iterator[Meter]:
    """Count and time everything a chain run (or a data-parallel worker) does against Redis and
    AWS; restore it all afterwards. `stamps`: where a worker notes each step it gathered, with `tag`."""
    meter = Meter()
    patch = _Patches()
    settle: Callable[[], None] | None = None
    try:
        _meter_redis(meter, store.client, patch)
        _meter_aws(meter, patch)
        _meter_steps(meter, patch)
        _meter_store(meter, store, patch)
        settle = _meter_workers(meter, patch, stamps, tag or {})
        yield meter
    finally:
        if settle is not None:
            settle()
        patch.restore()


def handoff_bytes(log: list[tuple[str, dict[str, Fingerprint]]]) -> dict[str, int]:
    """Bytes the hand-offs moved, and what they strictly needed.

    A hand-off is a write of state (the launch's initial parameters, or an invocation's commit) and
    the reads of the next invocation. Strictly needed: each tensor that the next invocation reads
    and that changed since it was last stored, written once and read once (encoded size, header
    included on both sides). Everything else moved is overhead: dead or unchanged tensors written,
    tensors read twice. The last commit (the finish's) has no next invocation, but its weights
    are what a copy completing the finish writes the model from (exactly-once effects): written
    once, they count as needed once.
    """
    segments: list[tuple[dict[str, Fingerprint], dict[str, Fingerprint]]] = []
    for kind, tensors in log:
        if kind in ("create_run", "commit"):
            segments.append((tensors, {}))
        elif segments:
            segments[-1][1].update(tensors)
    moved = sum(f.size for _, tensors in log for f in tensors.values())
    needed = 0
    stored: dict[str, Fingerprint] = {}
    for index, (written, read_after) in enumerate(segments):
        last = index == len(segments) - 1 and index > 0
        for name, value in written.items():
            changed = stored.get(name) != value  # the digest covers dtype, shape and values
            if name in read_after and changed:
                needed += 2 * value.size
            elif last and changed and name[0] in "Wb":
                needed += value.size
            stored[name] = value
    return {"moved": moved, "needed": needed}


def cpu_s() -> float:
    """CPU seconds of this process (all threads): a measure other load disturbs much less than wall
    time. The chain's rows sum it over their invocations, each measured in its execution environment."""
    return time.process_time()


def rss_bytes(field_name: str = "VmRSS", pid: int | str = "self") -> int:
    """Resident memory of a process from /proc (VmRSS now, VmHWM the peak so far). Read by hand:
    the bench's functions call it inside the image's environment, which has the lock's packages only."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field_name} not in /proc/{pid}/status")


def blas_threads() -> str:
    return os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "library default"


def threads_in_use() -> int:
    """BLAS threads of this process; unset (a test process), OpenBLAS uses every core."""
    named = blas_threads()
    return int(named) if named.isdigit() else os.cpu_count() or 1


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def parse_importtime(stderr: str) -> dict[str, Any]:
    """`-X importtime` output: the total (the cumulative times of the top-level imports) and the
    top-level packages that cost most."""
    top: dict[str, float] = {}
    for match in _IMPORTTIME.finditer(stderr):
        cumulative_us, indent, name = int(match.group(2)), match.group(3), match.group(4)
        if len(indent) <= 1:
            top[name] = top.get(name, 0.0) + cumulative_us / 1e6
    ranked = sorted(top.items(), key=lambda item: -item[1])
    return {"total_s": sum(top.values()), "top": [{"module": m, "s": s} for m, s in ranked[:12]]}


def importtime_by_package(stderr: str) -> dict[str, float]:
    """Self time of every import, summed by top-level package (where the time really goes: a
    package's cumulative time also counts what it happens to import first)."""
    out: dict[str, float] = {}
    for match in _IMPORTTIME.finditer(stderr):
        package = match.group(4).split(".")[0]
        out[package] = out.get(package, 0.0) + int(match.group(1)) / 1e6
    return dict(sorted(out.items(), key=lambda item: -item[1]))
