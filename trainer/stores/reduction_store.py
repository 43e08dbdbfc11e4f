"""The data-parallel reduction through Redis: partial-gradient nodes to each chunk's owner, and the
owners' updated chunks back to every worker. Blocking stream reads, never a sleep loop.

Per step s of a run (keys under the run's `lnn:{RUN_ID}:` prefix, so a run's clean-up takes them):

- `dp:s:p:j`, a stream: every worker appends its tree nodes' slices of chunk j (one entry per node:
  `node` "level.index", `grad` raw bytes) and, for chunk 0, the nodes' loss sums and hit counts
  (`cost`, two float64: the examples the batch's parameters classify right, a count, exact).
  Owner j reads it with XREAD BLOCK until every expected node is there; a node sent twice (a
  duplicate worker) carries the same bits and is read once.
- `dp:s:w:j`, a string: owner j's updated chunk (raw bytes; chunk 0 ends with the batch's cost,
  the epoch's running cost and its running hits, float64), written once (SET NX); `dp:s:st:j` its
  chunk of the optimizer's state, read only by a worker that rejoins; `dp:latest`, a sorted set, each
  chunk's newest published step (ZADD GT); `dp:epochs` and `dp:hits`, hashes, every finished epoch's
  cost and hits;
  `dp:validation`, a hash, the validation scores of every epoch before the newest (a run that
  holds examples out: chunk 0's update at an epoch's first step scores the epoch before).
- `dp:s:done`, a stream: each owner appends its chunk number; every worker XREAD BLOCKs on it until
  all chunks are out, then reads them in one MGET.

Tensors travel as raw bytes of the run's dtype, their shapes known to both ends from the layout;
nothing is pickled. Owner j deletes step s-2's keys of chunk j once it has every node of step s, so
the cache holds at most three steps, and the newest step every chunk has published (the resume
point of a worker that rejoins: `resume_point`) is always still there: no owner can have every node
of the step after next without every worker having gathered the next.

A resumed run's reduction lives under `dp:rG:` (G its resumes), so a worker of the run before the
resume that is still alive writes where no worker of the resumed run reads.

Stopping, at no round trip of its own: every blocking read also reads `dp:stop` (keys.stop_key),
which a cancel and a worker that failed the run append to, so a waiting worker wakes and stops at
once (`Stopped`); the gather's MGET of a step's chunks also reads the cancel mark and the run's
cursor, so a worker that never waits stops at its next step, and one whose cache lost the run
(a flushed or replaced node: the cursor is gone) says so (`CacheLost`) instead of waiting; a
worker that waits reads them too, after every blocking read that saw nothing (a second at most).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer.keys import CacheKind, cache_key, stop_key
from trainer.stores.tensor_store import NO_CURSOR, CacheLost
from trainer.vocabulary import StopCause

# A reduction tree's node, (level, index), as trainer.parallel.tree names it: the store only keys by it.
Node = tuple[int, int]

BLOCK_MS = 1_000  # one blocking read's bound: the wait goes on, read after read, until its deadline
EXPIRE_S = 24 * 3600  # a safety net for the keys of a run whose workers all died
FIGURES_BYTES = 3 * 8  # chunk 0's tail: the batch's cost, the epoch's running cost and hits, float64


# The finish's claim and its renewal in one step: taken when nobody holds it, renewed (its lease
# from now) when this worker does, refused when another does. Atomic, so a holder whose lease
# lapsed and was taken by another never renews the new holder's lease as its own.
_CLAIM_FINISH = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"""


class Stalled(TimeoutError):
    """A step's nodes or chunks did not all arrive within the wait's bound."""


def generation_key(run_id: str) -> str:
    """The run's current generation (its resumes), written by a resume: a worker of an older one
    that is still alive stops at its next step."""
    return cache_key(run_id, CacheKind.REDUCTION, "generation")


def start_generation(client: Any, run_id: str, generation: int) -> bool:
    """A resume's reset: every reduction key of the generations before cleared, the new one named.
    Once per generation: a resume sent again (its LaunchLambda died after sending some events)
    finds its generation started, and leaves alone what its workers may have reduced since (False)."""
    current = client.get(generation_key(run_id))
    if current is not None and int(current) == generation:
        return False
    keys = list(client.scan_iter(match=f"{cache_key(run_id, CacheKind.REDUCTION)}:*", count=500))
    pipe = client.pipeline(transaction=False)
    if keys:
        pipe.delete(*keys)
    pipe.set(generation_key(run_id), str(generation), ex=EXPIRE_S)
    pipe.execute()
    return True


class Stopped(RuntimeError):
    """The run was cancelled, or failed by one of its workers: every worker stops."""

    def __init__(self, cause: StopCause) -> None:
        super().__init__(f"the run was {cause}")
        self.cause = cause


class Behind(RuntimeError):
    """A step's chunks are gone: every worker gathered them and the run moved on (this is a late
    copy of a worker)."""


@dataclass(frozen=True)
class FinishWatch:
    """The finish as a worker standing by for it sees it (`ReductionStore.watch_finish`)."""

    cancelled: bool
    cursor: int  # the run's chain position: -1 before the finish's commit, NO_CURSOR if the cache lost it
    held_ms: int  # what is left of the finisher's lease; 0: nobody holds the finish


@dataclass
class Traffic:
    """Bytes this worker moved through the cache (payloads, not protocol)."""

    sent: int = 0
    received: int = 0
    per_step: list[tuple[int, int]] = field(default_factory=list)


class ReductionStore:
    def __init__(
        self, client: Any, run_id: str, workers: int, dtype: str, generation: int = 0, watch_cursor: bool = False
    ) -> None:
        # client: the cache's redis.Redis (the tensor store's, RedisTensorStore.client);
        # generation: the run's resumes (its workers' events carry it); watch_cursor: the run has a
        # cursor in the cache while its workers step (a launched run does; a bare reduction has
        # none), so a wait that finds it gone ends (`_read`)
        self.client, self.run_id, self.workers, self.dtype = client, run_id, workers, np.dtype(dtype)
        self.generation, self.watch_cursor = generation, watch_cursor
        self.prefix = cache_key(run_id, CacheKind.REDUCTION) + ":" + (f"r{generation}:" if generation else "")
        self.stop = stop_key(run_id)
        self.stop_seen = "0-0"  # the stop stream's entries read already (those of other generations)
        self.finish_seen = "0-0"  # the finish stream's entries read already
        self.marks = [cache_key(run_id, CacheKind.CANCEL), cache_key(run_id, CacheKind.CURSOR), generation_key(run_id)]
        self.traffic = Traffic()
        self._claim_finish = client.register_script(_CLAIM_FINISH)

    def _key(self, step: int, kind: str) -> str:
        return f"{self.prefix}{step}:{kind}"

    # -- a worker's partials --------------------------------------------------------------------
    def send(self, step: int, nodes: dict[Node, tuple[np.ndarray, np.ndarray]], chunks: list[tuple[int, int]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for j, (a, b) in enumerate(chunks):
            key = self._key(step, f"p:{j}")
            for (level, index), (grad, cost) in nodes.items():
                entry = {"node": f"{level}.{index}", "grad": grad[a:b].tobytes()}
                if j == 0:
                    entry["cost"] = cost.astype(np.float64).tobytes()
                self.traffic.sent += sum(len(v) for v in entry.values() if isinstance(v, bytes))
                pipe.xadd(key, entry)
            pipe.expire(key, EXPIRE_S)
        pipe.execute()

    def collect(
        self,
        step: int,
        chunk: int,
        expected: set[Node],
        deadline: float,
        wait_for: set[Node] | None = None,
        soft: bool = False,
    ) -> dict[Node, tuple[np.ndarray, np.ndarray | None]]:
        """The expected nodes' slices of `chunk` (and their loss sums, for chunk 0), waiting until
        those of `wait_for` (all expected, by default) are there. Past the deadline: Stalled, or,
        `soft`, the nodes that did arrive (the caller computes the rest)."""
        wait_for = expected if wait_for is None else wait_for
        key, last = self._key(step, f"p:{chunk}"), "0-0"
        got: dict[Node, tuple[np.ndarray, np.ndarray | None]] = {}
        what = f"step {step}'s partials of chunk {chunk}"
        while True:
            done = wait_for <= got.keys()
            entries = self._read(key, last, deadline, what, got, wait_for, soft or done)
            for _, batch in entries:
                for entry_id, fields in batch:
                    last = entry_id
                    level, index = (int(v) for v in fields[b"node"].decode().split("."))
                    node = (level, index)
                    if node in got or node not in expected:
                        continue
                    self.traffic.received += len(fields[b"grad"]) + len(fields.get(b"cost", b""))
                    cost = np.frombuffer(fields[b"cost"], dtype=np.float64).copy() if b"cost" in fields else None
                    got[node] = (np.frombuffer(fields[b"grad"], dtype=self.dtype).copy(), cost)
            if done or (soft and not entries and time.monotonic() >= deadline):
                break
        if step > 1 and expected <= got.keys():  # everyone gathered s - 1: s - 2 is no resume point any more
            kinds = ("p", "w", "st")
            old = [self._key(step - 2, f"{kind}:{chunk}") for kind in kinds]
            self.client.delete(*old, *([self._key(step - 2, "done")] if chunk == 0 else []))
        return got

    def published(self, step: int, deadline: float, wait_for: set[int]) -> set[int]:
        """The chunks of `step` published by the deadline, waiting until those of `wait_for` are."""
        key, last = self._key(step, "done"), "0-0"
        seen: set[int] = set()
        while True:
            done = wait_for <= seen
            entries = self._read(key, last, deadline, f"step {step}'s updated chunks", seen, wait_for, True)
            for _, batch in entries:
                for entry_id, fields in batch:
                    last = entry_id
                    seen.add(int(fields[b"chunk"]))
            if done or (not entries and time.monotonic() >= deadline):
                return seen

    # -- the owners' chunks ---------------------------------------------------------------------
    def publish(
        self,
        step: int,
        chunk: int,
        values: np.ndarray,
        state: np.ndarray,
        figures: tuple[float, float, int] | None,
        epoch_done: int | None = None,
        scored: tuple[int, float, float] | None = None,
    ) -> None:
        """Owner `chunk`'s update of `step`: its parameters (chunk 0 with its `figures`: the batch's
        cost, the epoch's running cost and running hits), its optimizer state, when the step closed
        an epoch, that epoch's cost and hits, and (`scored`: epoch, cost, accuracy) the validation
        scores of the epoch before."""
        tail = np.array(figures, dtype=np.float64).tobytes() if figures is not None else b""
        payload = values.tobytes() + tail
        self.traffic.sent += len(payload) + state.nbytes
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self._key(step, f"w:{chunk}"), payload, nx=True, ex=EXPIRE_S)
        pipe.set(self._key(step, f"st:{chunk}"), state.tobytes(), nx=True, ex=EXPIRE_S)
        if epoch_done is not None and figures is not None:
            pipe.hsetnx(self._run_key("epochs"), str(epoch_done), repr(figures[1]))
            pipe.hsetnx(self._run_key("hits"), str(epoch_done), str(int(figures[2])))
            pipe.expire(self._run_key("epochs"), EXPIRE_S)
            pipe.expire(self._run_key("hits"), EXPIRE_S)
        if scored is not None:
            epoch, cost, accuracy = scored
            pipe.hsetnx(self._run_key("validation"), str(epoch), f"{cost!r} {accuracy!r}")
            pipe.expire(self._run_key("validation"), EXPIRE_S)
        pipe.zadd(self._run_key("latest"), {str(chunk): step}, gt=True)
        pipe.expire(self._run_key("latest"), EXPIRE_S)
        pipe.xadd(self._key(step, "done"), {"chunk": str(chunk)})
        pipe.expire(self._key(step, "done"), EXPIRE_S)
        pipe.execute()

    def resume_point(self) -> int:
        """The newest step whose every chunk is published (-1: none yet, start from the launch's
        parameters): where a worker that starts again (Lambda's retry of a killed one) rejoins."""
        latest = dict(self.client.zrange(self._run_key("latest"), 0, -1, withscores=True))
        if len(latest) < self.workers:
            return -1
        return int(min(latest.values()))

    def state(self, step: int, chunk: int) -> np.ndarray:
        blob = self.client.get(self._key(step, f"st:{chunk}"))
        if blob is None:
            raise Behind(f"step {step}'s optimizer state of chunk {chunk} is gone")
        self.traffic.received += len(blob)
        return np.frombuffer(blob, dtype=self.dtype).copy()

    def states(self, step: int) -> list[np.ndarray]:
        """Every owner's optimizer-state chunk of `step`, in order (a checkpoint's)."""
        blobs = self.client.mget([self._key(step, f"st:{j}") for j in range(self.workers)])
        if any(b is None for b in blobs):
            raise Behind(f"step {step}'s optimizer state is gone")
        return [np.frombuffer(b, dtype=self.dtype).copy() for b in blobs]

    def restore(
        self,
        step: int,
        values: list[np.ndarray],
        states: list[np.ndarray],
        costs: list[float],
        scores: list[tuple[float, float]] | None = None,
        hits: list[int] | None = None,
    ) -> None:
        """A resume from a checkpoint: `step` (the last of epoch len(costs) - 1) as if every owner had
        just published it, every epoch's cost up to it, and, of a run that holds examples out, every
        epoch's hits up to it (`hits`) and the validation scores of the epochs before it (`scores`),
        so the workers rejoin right after it."""
        last_hits = hits[-1] if hits else 0
        for j, (chunk, state) in enumerate(zip(values, states, strict=True)):
            self.publish(step, j, chunk, state, (costs[-1], costs[-1], last_hits) if j == 0 else None)
        if hits:
            self.client.hset(self._run_key("hits"), mapping={str(e): str(int(h)) for e, h in enumerate(hits)})
            self.client.expire(self._run_key("hits"), EXPIRE_S)
        if costs:
            self.client.hset(self._run_key("epochs"), mapping={str(e): repr(c) for e, c in enumerate(costs)})
            self.client.expire(self._run_key("epochs"), EXPIRE_S)
        if scores:
            mapping = {str(e): f"{c!r} {a!r}" for e, (c, a) in enumerate(scores)}
            self.client.hset(self._run_key("validation"), mapping=mapping)
            self.client.expire(self._run_key("validation"), EXPIRE_S)

    def epoch_costs(self) -> dict[int, float]:
        return {int(k): float(v) for k, v in self.client.hgetall(self._run_key("epochs")).items()}

    def epoch_hits(self) -> dict[int, int]:
        """Every finished epoch's hits: its batches' examples classified right as they met them."""
        return {int(k): int(v) for k, v in self.client.hgetall(self._run_key("hits")).items()}

    def validation_scores(self) -> dict[int, tuple[float, float]]:
        """Every epoch's validation (cost, accuracy) published so far (all but the newest epoch's)."""
        found = {}
        for epoch, text in self.client.hgetall(self._run_key("validation")).items():
            cost, accuracy = (float(v) for v in text.split())
            found[int(epoch)] = (cost, accuracy)
        return found

    def epoch_ended(self, epoch: int, at: float) -> None:
        """When epoch `epoch` ended (-1: when this generation's steps began), by the clock of the
        first worker to say so: whoever writes the epoch's item reads the same duration."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hsetnx(self._run_key("ended"), str(epoch), repr(at))
        pipe.expire(self._run_key("ended"), EXPIRE_S)
        pipe.execute()

    def epoch_ends(self) -> dict[int, float]:
        return {int(k): float(v) for k, v in self.client.hgetall(self._run_key("ended")).items()}

    def claim_epoch_items(self, epochs: list[int], token: str) -> list[int]:
        """Those of `epochs` whose items the invocation `token` writes while the run goes on: the
        first to claim an epoch's item does, once whatever the duplicates."""
        if not epochs:
            return []
        pipe = self.client.pipeline(transaction=False)
        for epoch in epochs:
            pipe.hsetnx(self._run_key("items"), str(epoch), token)
        pipe.expire(self._run_key("items"), EXPIRE_S)
        *claimed, _ = pipe.execute()
        return [e for e, won in zip(epochs, claimed, strict=True) if won]

    def _run_key(self, kind: str) -> str:
        return f"{self.prefix}{kind}"

    def gather(self, step: int, deadline: float) -> tuple[list[np.ndarray], float, float, int]:
        """Every owner's updated chunk, in order, the batch's cost, the epoch's running cost and its
        running hits."""
        key, last = self._key(step, "done"), "0-0"
        seen: set[int] = set()
        everyone = set(range(self.workers))
        while seen != everyone:
            for _, entries in self._read(key, last, deadline, f"step {step}'s updated chunks", seen, everyone):
                for entry_id, fields in entries:
                    last = entry_id
                    seen.add(int(fields[b"chunk"]))
        *blobs, cancelled, cursor, current = self.client.mget(
            [*(self._key(step, f"w:{j}") for j in range(self.workers)), *self.marks]
        )
        if cancelled is not None:
            raise Stopped(StopCause.CANCELLED)
        if current is not None and int(current) != self.generation:
            raise Behind(f"run {self.run_id} resumed: generation {int(current)} replaced generation {self.generation}")
        if any(b is None for b in blobs):
            if cursor is None:
                raise CacheLost(f"run {self.run_id}: the cache lost the run (its cursor is gone) at step {step}")
            raise Behind(f"step {step}'s chunks are gone: the run's workers are past it")
        self.traffic.received += sum(len(b) for b in blobs)
        chunks = [np.frombuffer(b, dtype=self.dtype).copy() for b in blobs[1:]]
        first = blobs[0]
        batch_cost, running, hits = (float(c) for c in np.frombuffer(first[-FIGURES_BYTES:], dtype=np.float64))
        chunks.insert(0, np.frombuffer(first[:-FIGURES_BYTES], dtype=self.dtype).copy())
        return chunks, batch_cost, running, int(hits)

    # -- the run's end ---------------------------------------------------------------------------
    def report(self, worker: int, correct: int) -> None:
        """After its last gather: this worker's count of its examples the final model classifies
        right (the train accuracy's share), which also tells the finisher that it is done."""
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(self._run_key("final"), {"worker": str(worker), "correct": str(int(correct))})
        pipe.expire(self._run_key("final"), EXPIRE_S)
        pipe.execute()

    def reports(self, deadline: float, soft: bool = False) -> dict[int, int]:
        """Every worker's report, waiting for them; past the deadline, Stalled, or (`soft`) those
        that came."""
        key, last = self._run_key("final"), "0-0"
        got: dict[int, int] = {}
        everyone = set(range(self.workers))
        while set(got) != everyone:
            entries = self._read(key, last, deadline, "the workers' final reports", got, everyone, soft)
            for _, batch in entries:
                for entry_id, fields in batch:
                    last = entry_id
                    got.setdefault(int(fields[b"worker"]), int(fields[b"correct"]))
            if soft and not entries and time.monotonic() >= deadline:
                break
        return got

    def claim_finish(self, worker: int, lease_s: int) -> bool:
        """Whether worker `worker` finishes the run: the first to claim it after its report does,
        whichever worker that is, so a worker lost for good (worker 0 too) never holds the finish
        up; a copy or a retry of that worker takes it again (its holder crashed mid-finish). The
        holder claims again at each stage of its finish, which renews its lease; past the lease
        (the holder lost, or slow), any worker may claim it: a worker standing by for the finish
        (`watch_finish`), or a later copy. A second finisher's commit is refused by the guarded
        commit, so a slow holder taken over costs work, not correctness. One round trip, atomic
        (`_CLAIM_FINISH`)."""
        return bool(self._claim_finish(keys=[self._run_key("finisher")], args=[str(worker), lease_s]))

    def watch_finish(self) -> FinishWatch:
        """In one atomic read, what a worker standing by for the finish looks at: the cancel mark,
        the run's cursor and what is left of the finisher's lease. Behind if a resume replaced this
        generation."""
        pipe = self.client.pipeline(transaction=True)
        pipe.mget(self.marks)
        pipe.pttl(self._run_key("finisher"))
        (cancelled, cursor, current), left_ms = pipe.execute()
        if current is not None and int(current) != self.generation:
            raise Behind(f"run {self.run_id} resumed: generation {int(current)} replaced generation {self.generation}")
        return FinishWatch(cancelled is not None, NO_CURSOR if cursor is None else int(cursor), max(0, int(left_ms)))

    def finish_done(self) -> None:
        """The finisher's last word (its finish completed, or ended otherwise): its claim released
        and the workers standing by for it woken, at once."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._run_key("finisher"))
        pipe.xadd(self._run_key("finish"), {"done": "1"})
        pipe.expire(self._run_key("finish"), EXPIRE_S)
        pipe.execute()

    def await_finish(self, deadline: float) -> None:
        """One blocking read (BLOCK_MS at most) of the finisher's last word, until the deadline:
        the caller looks at the finish again after it. Stopped if the run was cancelled or failed."""
        for _, batch in self._read(self._run_key("finish"), self.finish_seen, deadline, "the finish", [], [1], True):
            for entry_id, _ in batch:
                self.finish_seen = entry_id

    def claim_hand_on(self, worker: int, generation: int, lease_s: int) -> bool:
        """Whether this copy of worker `worker`'s invocation `generation` sends its successor: one
        copy of an invocation does (a lease, so a holder that crashed before sending is retried by
        Lambda and sends it then), so duplicates never multiply a worker's invocations."""
        key = self._run_key(f"handon:{worker}:{generation}")
        return bool(self.client.set(key, "held", nx=True, ex=lease_s))

    def hand_on_sent(self, worker: int, generation: int) -> None:
        self.client.set(self._run_key(f"handon:{worker}:{generation}"), "sent", ex=EXPIRE_S)

    def clear(self) -> None:
        """Every reduction key of the run, of every generation (once every worker has reported, or
        the run stopped, nobody reads them; a resume starts its generation's afresh)."""
        keys = list(self.client.scan_iter(match=f"{cache_key(self.run_id, CacheKind.REDUCTION)}:*", count=500))
        if keys:
            self.client.delete(*keys)

    def fail_run(self) -> None:
        """Wake the run's other workers of this generation: a worker failed the run."""
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(self.stop, {"why": str(StopCause.FAILED), "gen": str(self.generation)})
        pipe.expire(self.stop, EXPIRE_S)
        pipe.execute()

    def seen_before(self, error: str) -> bool:
        """Count this error (its type and text) for the run's generation; True when another
        invocation (a retry, a copy, or another worker standing in) raised the very same one before:
        an error that comes back is the run's, not a lost worker's."""
        key = self._run_key("errors")
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(key, error[:500], 1)
        pipe.expire(key, EXPIRE_S)
        count, _ = pipe.execute()
        return int(count) > 1

    def end_step(self) -> None:
        self.traffic.per_step.append((self.traffic.sent, self.traffic.received))

    def _read(
        self,
        key: str,
        last: str,
        deadline: float,
        what: str,
        have: Iterable[Any],
        want: Iterable[Any],
        soft: bool = False,
    ) -> list[Any]:
        """One read of the stream past `last`: blocking until the deadline at most; past it, one
        look without blocking (`soft`) or Stalled."""
        left_ms = int((deadline - time.monotonic()) * 1000)
        streams = {key: last, self.stop: self.stop_seen}
        if left_ms <= 0 or (soft and set(want) <= set(have)):
            if not soft:
                missing = sorted(set(want) - set(have))
                raise Stalled(f"{what}: {missing} still missing when the wait's bound ran out")
            return self._stopping(self.client.xread(streams) or [])
        read = self.client.xread(streams, block=min(BLOCK_MS, left_ms)) or []
        if not read and self.watch_cursor:
            self._still_in_cache()
        return self._stopping(read)

    def _still_in_cache(self) -> None:
        """After a blocking read that saw nothing: the run's cancel mark and cursor, as the gather
        reads them. A cache that lost the run (its node replaced: empty) holds no stream entry for
        anyone to write, nor the stop a failing worker could not write to it: without this look,
        every waiting worker would wait out its whole bound (WAIT_S) before it failed."""
        cancelled, cursor, _ = self.client.mget(self.marks)
        if cancelled is not None:
            raise Stopped(StopCause.CANCELLED)
        if cursor is None:
            raise CacheLost(f"run {self.run_id}: the cache lost the run (its cursor is gone) while a worker waited")

    def _stopping(self, read: list[Any]) -> list[Any]:
        """The read's entries of the waited-for stream; Stopped if the stop stream says this
        generation's run was cancelled or failed (its entries about other generations are passed)."""
        out = []
        for name, batch in read:
            if (name.decode() if isinstance(name, bytes) else name) != self.stop:
                out.append((name, batch))
                continue
            for entry_id, fields in batch:
                self.stop_seen = entry_id
                cause = StopCause(fields[b"why"].decode())
                if cause is StopCause.CANCELLED or int(fields.get(b"gen", b"-1")) == self.generation:
                    raise Stopped(cause)
        return out
