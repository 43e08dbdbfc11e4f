"""A data-parallel worker's invocation (the TrainerLambda, for events of state `dp_worker`).

Its life: triage (the run's config, cancelled, or finished already) → load its own micro-shards
of the training set → every step of the run (trainer.parallel.worker, reducing through the cache;
after each, the epoch items and, for a sweep's trial at a rung, the scheduler's decision)
→ report its share of the train accuracy → the first worker to claim the finish only (whichever
it is: a lost worker 0 holds nothing up): wait for every report (past a bound, count the missing
shares itself), then commit the finish at the chain's finish position and complete it exactly as
the chain does (trainer.effects: epoch items, model, SUCCEEDED, one message), or, when another copy
committed it, complete that.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from trainer import aws, checkpoints, effects, engine, failures, once, warm
from trainer import services as services_mod
from trainer.data import direct, normalize
from trainer.errors import ChainError, EventError, ObjectChanged
from trainer.logs import get_logger
from trainer.parallel import launching, shards, worker
from trainer.parallel.flat import Layout
from trainer.parallel.step import Held
from trainer.request import RUN_ID_PATTERN
from trainer.runconfig import RunConfig
from trainer.stores.items import public
from trainer.stores.reduction_store import Behind, ReductionStore, Stalled, Stopped
from trainer.stores.tensor_store import NO_CURSOR, UNAVAILABLE, CacheLost, CommitResult, RedisTensorStore
from trainer.vocabulary import Outcome, StopCause

logger = get_logger("lnn-trainer")

# The bound of one wait for the other workers: past it the worker fails (Lambda retries it).
WAIT_S = 60.0
# Past this (or three steps' time, if longer) without a worker's partials, chunk or final report,
# the others compute them themselves: a lost worker stalls the run about this long, once.
TAKEOVER_S = 2.0
EVENT_KEYS = {"state", "run_id", "worker", "gen"}
OPTIONAL_KEYS = {"resumes"}  # absent: 0, the launch's
MAX_GENERATION = 10_000_000
HEARTBEAT_S = 10.0  # a worker records the step it reached at most this often (and at its last step)
ITEMS_EVERY_S = 1.0  # a worker writes the items of epochs that ended at most this often (and at its last step)
HAND_ON_LEASE_S = 30  # a copy that claimed the hand-on and crashed before sending it: its retry takes it over
# The finisher's claim, renewed at each stage of its finish: past it (the finisher lost), a worker
# standing by for the finish, or a later copy of any worker, finishes the run.
FINISH_LEASE_S = 10
# The finish's completion meeting an AWS error a later attempt need not meet: attempted again, up to
# this often, after pauses doubling from the first (at most the last), while the invocation has time.
COMPLETION_ATTEMPTS = 12
COMPLETION_PAUSE_S = (0.05, 2.0)
_DIGITS = re.compile(r"\A[0-9]{1,2}\Z")
_UNREAD = object()  # the training examples' place, not yet read from the cache


@dataclass(frozen=True)
class WorkerEvent:
    run_id: str
    worker: int
    generation: int  # its invocations' hand-ons since the launch or the resume
    resumes: int = 0  # the run's resumes when it was sent: an older event is of the run before its resume


class Standing(Enum):
    """Where an invocation that ends early finds the run in the cache (`standing_of`)."""

    ON = "on"  # nothing committed: the run's steps go on
    FINISHED = "finished"  # the finish is committed: a duplicate, a retry after it, or a late copy
    CANCELLED = "cancelled"  # the user cancelled the run
    LOST = "lost"  # the cursor gone, and no cancel mark: a node flushed or replaced under the run


def standing_of(cancelled: bool, cursor: int) -> Standing:
    """Where the run stands by its cancel mark and its cursor (the chain position: -1 while the
    workers step, the finish's once it is committed, NO_CURSOR when the cache holds no run). A
    cancel comes first: it clears the run's state, cursor and all."""
    if cancelled:
        return Standing.CANCELLED
    if cursor == NO_CURSOR:
        return Standing.LOST
    return Standing.ON if cursor == -1 else Standing.FINISHED


class WorkerFailed(RuntimeError):
    """A worker's error, named with its run and worker; raised so that Lambda's retry (or the
    on-failure destination) sees it, whether it failed the run or only lost this worker."""


def is_worker_event(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("state") == launching.WORKER_STATE


def parse(payload: Any) -> WorkerEvent:
    if not EVENT_KEYS <= set(payload) <= EVENT_KEYS | OPTIONAL_KEYS:
        raise EventError(
            f"a worker event has exactly the keys {sorted(EVENT_KEYS)} and may have {sorted(OPTIONAL_KEYS)}, "
            f"got {sorted(map(str, payload))}"
        )
    run_id, number = payload["run_id"], payload["worker"]
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise EventError("worker event: run_id is not a run id")
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < shards.MAX_WORKERS:
        raise EventError(f"worker event: worker must be an integer 0..{shards.MAX_WORKERS - 1}")
    generation = payload["gen"]
    if isinstance(generation, bool) or not isinstance(generation, int) or not 0 <= generation <= MAX_GENERATION:
        raise EventError(f"worker event: gen must be an integer 0..{MAX_GENERATION}")
    resumes = payload.get("resumes", 0)
    if isinstance(resumes, bool) or not isinstance(resumes, int) or not 0 <= resumes <= MAX_GENERATION:
        raise EventError(f"worker event: resumes must be an integer 0..{MAX_GENERATION}")
    return WorkerEvent(run_id, number, generation, resumes)


def run(payload: Any, context: Any, svc: services_mod.Services) -> dict[str, Any]:
    return WorkerInvocation(parse(payload), context, svc).handle()


class WorkerInvocation:
    def __init__(self, event: WorkerEvent, context: Any, svc: services_mod.Services):
        self.event, self.svc = event, svc
        self.context = context if hasattr(context, "get_remaining_time_in_millis") else once.NoDeadline()
        self.run_id, self.worker = event.run_id, event.worker
        self.token = secrets.token_hex(8)
        self._shards: dict[int, Held] = {}
        self._validation: tuple[np.ndarray, np.ndarray] | None = None
        self._place: direct.Place | None | object = _UNREAD

    def handle(self) -> dict[str, Any]:
        # From the table, not the cache: a resume replaced the run's workers with the next generation.
        resumes = self.svc.run_store.generation(self.run_id)
        if resumes is None:
            raise EventError(f"run {self.run_id!r} is no run of this deployment")
        if self.event.resumes > resumes:
            raise EventError(f"run {self.run_id!r} has not resumed {self.event.resumes} times")
        if self.event.resumes < resumes:
            logger.info("worker of the run before its resume", extra={"run_id": self.run_id, "worker": self.worker})
            return self.result(Outcome.DUPLICATE)
        try:
            config = self.config()
            if config is None:
                return self.result(Outcome.CANCELLED)
            if config.workers < 2 or self.worker >= config.workers:
                raise EventError(f"run {self.run_id!r} has no data-parallel worker {self.worker}")
            cursor, cancelled, snapshot = self.svc.tensor_store.snapshot(self.run_id, engine.weight_names(config))
        except UNAVAILABLE as exc:  # a cache that does not answer: the run's failure (`standing`)
            raise self.fail_run(exc, None) from exc
        standing = self.triaged(standing_of(cancelled, cursor), None)
        if standing is Standing.CANCELLED:
            return self.result(Outcome.CANCELLED)
        if standing is Standing.FINISHED:  # a duplicate or a retry after the finish's commit
            return self.complete_committed(config, cursor)
        started = time.monotonic()
        tensors = self.svc.tensor_store
        if not isinstance(tensors, RedisTensorStore):  # the workers reduce through the cache's streams
            raise ChainError(f"run {self.run_id!r}: data-parallel workers need the Redis tensor store")
        store = ReductionStore(
            tensors.client, self.run_id, config.workers, config.dtype, self.event.resumes, watch_cursor=True
        )
        try:
            store.epoch_ended(-1, time.time())  # this generation's start, once: its first epoch's duration
            held = self.held(config)
            takeover = worker.Takeover(TAKEOVER_S, lambda k: self.micro_shard(config, k))
            job = job_of(config)
            outcome = worker.train(
                job,
                self.worker,
                held,
                snapshot,
                store,
                WAIT_S,
                self.budget(config),
                takeover,
                self.gathered(config, job, store),
                self.scorer(config) if config.validates else None,
            )
        except Exception as exc:
            return self.ended_by(exc, store)
        if not outcome.finished:
            return self.hand_on(outcome, store)
        store.report(self.worker, self.correct(config, outcome.params, held))
        logger.info(
            "worker steps done",
            extra={
                "run_id": self.run_id,
                "worker": self.worker,
                "steps": outcome.steps,
                "rejoined_at": outcome.rejoined_at,
                "duration_ms": round((time.monotonic() - started) * 1000, 3),
                "bytes_sent": store.traffic.sent,
                "bytes_received": store.traffic.received,
            },
        )
        if not store.claim_finish(self.worker, FINISH_LEASE_S):
            return self.stand_by(config, outcome, store)
        return self.finish_run(config, outcome, store)

    # -- the run's finish ------------------------------------------------------------------------
    def finish_run(self, config: RunConfig, outcome: worker.Result, store: ReductionStore) -> dict[str, Any]:
        """The finisher's part, its claim renewed at each stage (a finisher that goes silent is
        taken over by a worker standing by): every report (past the bound, a lost worker's share
        counted here), the finish committed and completed, then the workers standing by woken."""
        try:
            counts = store.reports(time.monotonic() + TAKEOVER_S, soft=True)
        except Stopped as exc:
            return self.ended_by(exc, store)
        for lost in sorted(set(range(config.workers)) - counts.keys()):  # its share, computed here
            store.claim_finish(self.worker, FINISH_LEASE_S)
            try:
                held = self.held(config, lost)
            except ObjectChanged as exc:  # as a step's load meets it: the run's failure
                raise self.fail_run(exc, store) from exc
            counts[lost] = self.correct(config, outcome.params, held)
        store.claim_finish(self.worker, FINISH_LEASE_S)
        answer = self.finish(config, outcome, sum(counts.values()), store)
        store.finish_done()
        store.clear()  # after the commit: a copy starting now finds the run finished, not a step to redo
        return answer

    def stand_by(self, config: RunConfig, outcome: worker.Result, store: ReductionStore) -> dict[str, Any]:
        """A worker that did not win the finish's claim stays until the finish is done: after every
        worker has reported, no live worker is left to take over a finisher lost for good (killed
        after its claim, its event's retries exhausted or none), which would leave the run RUNNING
        until the STALLED sweep. While the finisher's lease holds, it blocks on the finisher's last
        word (no sleep loop); once the lease lapses with nothing committed, the first to claim the
        finish finishes the run itself (every worker holds the same final parameters, and the
        shares of the train accuracy are in the reports); with the finish committed, it completes
        it as any copy behind does (at once when it is done). Out of time, it leaves the finish to
        the finisher and to the copies of its event."""
        while True:
            left_ms = self.context.get_remaining_time_in_millis() - config.time_margin_ms
            try:
                watch = store.watch_finish()
                standing = self.triaged(standing_of(watch.cancelled, watch.cursor), store)
                if standing is Standing.CANCELLED:
                    return self.result(Outcome.CANCELLED)
                if left_ms <= 0:
                    logger.info("worker out of time standing by", extra={"run_id": self.run_id, "worker": self.worker})
                    return self.result(Outcome.APPLIED, steps_executed=outcome.steps)
                if watch.held_ms:  # the finisher is at work
                    store.await_finish(time.monotonic() + min(watch.held_ms, left_ms) / 1000)
                    continue
            except (Stopped, Behind, *UNAVAILABLE) as exc:
                return self.ended_by(exc, store)
            if standing is Standing.FINISHED:
                return self.complete_committed(config, watch.cursor)
            if store.claim_finish(self.worker, FINISH_LEASE_S):
                logger.warning("finisher lost; this worker finishes", extra={"run_id": self.run_id})
                return self.finish_run(config, outcome, store)

    def config(self) -> RunConfig | None:
        """The run's configuration, kept by a warm environment or read from the cache. A worker of
        the run's generation that finds neither meets a cache that lost the run (a node replaced
        under a hand-on, say), or a cancelled run whose state is cleared (None): the triage says
        which."""
        try:
            return warm.run_config(self.svc, self.run_id)
        except ChainError:
            if self.standing(None) is Standing.CANCELLED:
                return None
            raise  # the cache holds the run's position, but not its configuration

    # -- the run's state in the cache, as an early exit finds it ----------------------------------
    def standing(self, store: ReductionStore | None, error: Exception | None = None) -> Standing:
        """Where the run stands, its cancel mark and cursor read here, for every way this invocation
        ends early that has not just read them: its configuration not found, the finish's commit,
        a step loop that stopped (`ended_by`). `error`: what ended this invocation, if anything did.

        A cache that does not answer (past the client's own retries) is the run's failure, raised
        here as a chain step's would be: every worker meets it alike, and Lambda's retries of each
        would all fall within a node's replacement and leave the run RUNNING with no worker. One
        that answers: `triaged`."""
        try:
            cancelled = self.svc.tensor_store.cancel_requested(self.run_id)
            cursor = self.svc.tensor_store.cursor(self.run_id)
        except UNAVAILABLE as silent:
            raise self.fail_run(silent, store) from (error or silent)
        return self.triaged(standing_of(cancelled, cursor), store, error)

    def triaged(self, found: Standing, store: ReductionStore | None, error: Exception | None = None) -> Standing:
        """`found` (standing_of what this invocation read), unless the cache lost the run: the cursor
        gone, or `error` saying so, and no cancel mark. That is the run's failure, raised here, as a
        cache that does not answer is (`standing`)."""
        if found is Standing.CANCELLED:
            return found
        if found is Standing.LOST or isinstance(error, CacheLost):
            lost = error or CacheLost(f"run {self.run_id!r} lost its state in the cache")
            raise self.fail_run(lost, store, lost=True) from error
        return found

    # -- a worker's steps that ended early ------------------------------------------------------
    def ended_by(self, exc: Exception, store: ReductionStore) -> dict[str, Any]:
        """The run was cancelled or failed by another worker: stop (a cancel's reduction keys
        cleared). The cache lost the run, or does not answer even the triage (`standing`), the
        dataset object was replaced since the launch (`ObjectChanged`), or an error came back
        (`seen_before`): this worker fails the run. Anything else loses only this
        worker (a wait's bound, a cache that failed a step and answers again, an AWS error the
        SDK's retries did not outlast, however often, a crash once): raised for Lambda's retry,
        while the others stand in for it."""
        if isinstance(exc, Stopped) and exc.cause is StopCause.FAILED:
            logger.info("worker stopped: the run failed", extra={"run_id": self.run_id, "worker": self.worker})
            return self.result(Outcome.DUPLICATE)
        standing = self.standing(store, exc)
        if standing is Standing.CANCELLED:
            store.clear()  # what this worker wrote after the cancel's clean-up goes too
            logger.info("worker stopped: the run was cancelled", extra={"run_id": self.run_id, "worker": self.worker})
            return self.result(Outcome.CANCELLED)
        if isinstance(exc, Behind) or standing is Standing.FINISHED:
            # A late copy: the other copy of this worker carried the run past it, or to its finish
            # (whose clean-up took the data and the reduction from under this copy).
            logger.info("worker copy behind", extra={"run_id": self.run_id, "worker": self.worker, "reason": str(exc)})
            return self.result(Outcome.DUPLICATE)
        if isinstance(exc, ObjectChanged):
            # The dataset object was replaced (or deleted) since the launch: no retry, and no
            # worker standing in, reads the bytes the run was launched on.
            raise self.fail_run(exc, store)
        if not (isinstance(exc, (Stalled, *UNAVAILABLE)) or aws.transient(exc)) and store.seen_before(
            f"{type(exc).__name__}: {exc}"
        ):
            raise self.fail_run(exc, store)
        logger.exception("worker lost", extra={"run_id": self.run_id, "worker": self.worker})
        raise WorkerFailed(f"run {self.run_id} worker {self.worker}: {type(exc).__name__}: {exc}") from exc

    def fail_run(self, exc: Exception, store: ReductionStore | None, lost: bool = False) -> WorkerFailed:
        """The run's failure (trainer.failures), fenced by the generation this worker belongs to,
        the other workers woken to stop once it is made. Returns the error to raise. `lost`: the
        cache lost the run, as the caller found it (the triage's read, or the error itself): the
        cursor is not read again, which a cache that does not answer would make wait out the
        client's retries a second time."""
        logger.error("worker failed the run", extra={"run_id": self.run_id, "worker": self.worker})
        why = failures.reason(exc, lost or isinstance(exc, CacheLost))
        step = f"{launching.WORKER_STATE}#{self.worker}"

        def wake() -> None:
            try:
                if store is not None:
                    store.fail_run()
            except UNAVAILABLE:
                pass  # the others meet the cache's silence themselves, and the failure in the table

        try:
            run = failures.fail_run(
                self.svc, self.run_id, exc, why, step, self.event.resumes, self.token, self.context, then=wake
            )
            if run is None:
                return WorkerFailed(f"run {self.run_id} worker {self.worker}: {why} (the run ended otherwise)")
        except Exception:
            # Best effort: the original error is what the caller must see, not a second one.
            logger.exception("could not record the failure", extra={"run_id": self.run_id})
        return WorkerFailed(f"run {self.run_id} worker {self.worker} failed the run: {why}")

    def gathered(self, config: RunConfig, job: worker.Job, store: ReductionStore) -> Callable[[worker.Gathered], None]:
        """After each step: the heartbeat, worker 0's checkpoints, and the items of the epochs
        whose figures are known (an epoch's cost at its last step; with held-out examples, its
        validation scores at the next epoch's first step; the last epoch's, the finisher's),
        written at most every ITEMS_EVERY_S: a run of many short epochs does not pay a table
        write at each of its steps."""
        last_beat, last_items = [-HEARTBEAT_S], [-ITEMS_EVERY_S]
        total = job.epochs * job.batches
        ended: list[int] = []

        def after(step: worker.Gathered) -> None:
            now = time.monotonic()
            if now - last_beat[0] >= HEARTBEAT_S or step.step == total - 1:
                last_beat[0] = now
                self.heartbeat(step.step)
            if step.closes_epoch:
                store.epoch_ended(step.epoch, time.time())
            if self.worker == 0 and config.checkpoint_every and step.closes_epoch:
                self.checkpoint(config, job, step)
            if not config.validates and step.closes_epoch:
                ended.append(step.epoch)
            elif config.validates and step.epoch > 0 and step.step == step.epoch * job.batches:
                ended.append(step.epoch - 1)
            # A rung's epoch is written (and judged) at once: a trial told to stop stops at its next step.
            judged = any(config.closes_rung(e) for e in ended)
            if ended and (now - last_items[0] >= ITEMS_EVERY_S or step.step == total - 1 or judged):
                last_items[0] = now
                self.write_epoch_items(config, ended, store)
                ended.clear()

        return after

    def write_epoch_items(self, config: RunConfig, epochs: list[int], store: ReductionStore) -> None:
        """The items of `epochs` in the run's history as soon as their figures are known, so that
        `lnn status` and the history show a data-parallel run's progress as they show a chain's:
        each by the first worker to claim it, once whatever the duplicates, and only for an epoch
        that ended in this generation (a resumed run's earlier epochs have theirs). Best effort:
        the finish writes any item still missing, with the same figures; the PROGRESS messages are
        the finish's. A sweep's trial that closed a rung's epoch is judged there (`at_rung`)."""
        try:
            ends = store.epoch_ends()
            ended = [e for e in epochs if e in ends]
            mine = store.claim_epoch_items(ended, self.token)
            judged = [e for e in ended if config.closes_rung(e)]
            if not mine and not judged:
                return
            costs = store.epoch_costs()
            scores = store.validation_scores() if config.validates else {}
            hits = store.epoch_hits() if config.validates else {}
            items = {e: epoch_item(config, e, costs, ends, scores, hits) for e in sorted({*mine, *judged})}
            if mine:
                self.svc.run_store.put_epochs(self.run_id, [items[e] for e in mine])
        except Exception:
            logger.exception("epoch items not written", extra={"run_id": self.run_id, "epochs": epochs})
            return
        if judged:
            self.at_rung(config, [items[e] for e in judged], store)

    def at_rung(self, config: RunConfig, judged: list[dict[str, Any]], store: ReductionStore) -> None:
        """The scheduler's decision on the trial at a rung, asked by every worker that gathered the
        step its scores came with, not only the item's writer: the decision is taken once (a
        conditional put) and the others follow it, so a lost writer leaves no rung unjudged. STOP:
        the trial STOPPED with the rung's figures and its slot handed on (once, whoever of them gets
        there first), then its workers stopped as a cancel stops them (the stop mark, which also
        refuses the finish's commit, and the stop stream: each stops at its next step) and its
        state in the cache removed. An error here leaves the decision to another worker, or to
        the finish, which asks again (and then, as a chain's finish does, ends SUCCEEDED)."""
        try:
            rung = effects.judged_to_stop(self.svc, config, judged)
            if rung is None:
                return
            # STOPPED and the slot handed on first: a worker lost right after leaves workers that run
            # on to a finish the STOPPED run refuses, never a trial that holds its slot. A run that
            # ended otherwise meanwhile (a cancel) was stopped, and its slot handed on, by that end.
            if not effects.stop_trial(self.svc, config, rung, self.token, self.context):
                return
            self.svc.tensor_store.request_cancel(self.run_id, workers=True)
            self.svc.tensor_store.delete_run(self.run_id)
        except Exception:
            logger.exception("rung not judged", extra={"run_id": self.run_id, "rungs": [i["epoch"] for i in judged]})
            return
        logger.info("trial stopped at its rung", extra={"run_id": self.run_id, "worker": self.worker})

    def heartbeat(self, step: int) -> None:
        """The step this worker gathered, in the run's item (`lnn status` shows it), which also
        moves the run's heartbeat: a data-parallel run whose workers step is not STALLED. Best
        effort: a worker does not stop for its heartbeat."""
        try:
            self.svc.run_store.record_worker_step(self.run_id, self.worker, step, self.event.resumes)
        except Exception:
            logger.exception("heartbeat not recorded", extra={"run_id": self.run_id, "worker": self.worker})

    def checkpoint(self, config: RunConfig, job: worker.Job, closed: worker.Gathered) -> None:
        """Worker 0 writes the epoch checkpoints the chain would (every `checkpoint_every` epochs),
        in the chain's names (W1, b1, vW1, ...) and `cost`, with every epoch's cost so far
        (`epoch_costs`), of a run that holds examples out every epoch's hits so far (`epoch_hits`) and
        the validation scores of the epochs before (`epoch_scores`), and the data-parallel step as its
        seq: what a resume restores the reduction from. Its bytes depend on the state only, so a copy
        or a retry writes the same checkpoint."""
        if (closed.epoch + 1) % config.checkpoint_every:
            return
        layout = Layout.of(job.sizes)
        tensors = layout.unflatten(closed.flat)
        for key, flat in worker.full_state(job, closed.exchange.states(closed.step)).items():
            tensors |= layout.unflatten(flat, prefix=key)
        recorded = closed.exchange.epoch_costs()
        costs = np.array([recorded[e] for e in range(closed.epoch + 1)], dtype=np.float64)
        tensors |= {"cost": costs[-1:].copy(), "epoch_costs": costs}
        if config.validates:  # the scores of the epochs before this one (this one's come at the next step)
            scored = closed.exchange.validation_scores()
            scores = [scored[e] for e in range(closed.epoch)]
            tensors["epoch_scores"] = np.array(scores, dtype=np.float64).reshape(closed.epoch, 2)
            counted = closed.exchange.epoch_hits()
            # A run resumed from a checkpoint written before hits were counted has none for the
            # epochs before it: its checkpoints carry no hits, as that one did not.
            if all(e in counted for e in range(closed.epoch + 1)):
                tensors["epoch_hits"] = np.array([counted[e] for e in range(closed.epoch + 1)], dtype=np.int64)
        digest = checkpoints.save(self.svc.blob_store, self.run_id, closed.epoch, closed.step, tensors)
        self.svc.run_store.record_checkpoint(self.run_id, closed.epoch, digest)

    def scorer(self, config: RunConfig) -> worker.Validation:
        """The validation scores of parameters, as the chain's epoch items have them
        (engine.evaluate on the whole held-out set): one worker scores all of it, so the scores of
        the same parameters have the same bits whatever the number of workers."""

        def score(params: dict[str, np.ndarray]) -> tuple[float, float]:
            return engine.evaluate(config, params, *self.validation_set(config))

        return score

    def validation_set(self, config: RunConfig) -> tuple[np.ndarray, np.ndarray]:
        """The run's held-out examples, read from the cache when first needed (by chunk 0's owner,
        a worker standing in for it, or the finisher) and kept while the invocation lasts."""
        if self._validation is None:
            arrays = self.svc.tensor_store.get_data(self.run_id, ["x_val", "y_val", "shift", "scale"])
            x = arrays["x_val"]
            if x.dtype.kind in "ui":  # raw integers, examples first, as the chain's TrainData takes them
                x = normalize.apply({"shift": arrays["shift"], "scale": arrays["scale"]}, x, config.dtype)
            self._validation = (np.asfortranarray(x), arrays["y_val"])
        return self._validation

    def budget(self, config: RunConfig) -> Callable[[int], bool]:
        """Steps go on while the invocation has time and step budget left, as the fused chain's."""

        def may_continue(steps: int) -> bool:
            return (
                steps < config.max_steps_per_invocation
                and self.context.get_remaining_time_in_millis() > config.time_margin_ms
            )

        return may_continue

    def hand_on(self, outcome: worker.Result, store: ReductionStore) -> dict[str, Any]:
        """Past its budget: the same worker's next event, whose invocation rejoins where this one
        stopped (the other workers wait for it within their bound). Of several copies of this
        invocation, the one that claims the hand-on sends it."""
        generation = self.event.generation
        sent = store.claim_hand_on(self.worker, generation, HAND_ON_LEASE_S)
        if sent:
            successor = launching.worker_event(self.run_id, self.worker, generation + 1, self.event.resumes)
            self.svc.invoker.invoke_async(successor)
            store.hand_on_sent(self.worker, generation)
        logger.info(
            "worker handed on" if sent else "worker stopped; another copy hands on",
            extra={"run_id": self.run_id, "worker": self.worker, "steps": outcome.steps, "after": outcome.rejoined_at},
        )
        return self.result(Outcome.APPLIED, steps_executed=outcome.steps, handed_on=sent)

    def held(self, config: RunConfig, which: int | None = None) -> Held:
        """Worker `which`'s (this one's, by default) micro-shards of the training set, read from the
        cache and normalised as the chain's data is (elementwise, so a slice's values are the whole
        set's there)."""
        mine = shards.micro_shards_of(config.workers, self.worker if which is None else which)
        return self.load(config, mine)

    def micro_shard(self, config: RunConfig, k: int) -> Held:
        """Micro-shard k alone: what this worker reads to stand in for a lost one (kept while the
        invocation lasts)."""
        cached = self._shards.get(k)
        if cached is None:
            cached = self._shards[k] = self.load(config, range(k, k + 1))
        return cached

    def load(self, config: RunConfig, block: range) -> Held:
        """The block's examples: from the cache, or, when the launch left them in the dataset
        object, with one ranged GET pinned to the object the launch read (the same raw bytes the
        cache path holds, normalised alike: the same bits)."""
        place = self.place()
        xs_named = [] if place is not None else [launching.x_name(k) for k in block]
        names = [*xs_named, *(launching.y_name(k) for k in block)]
        arrays = self.svc.tensor_store.get_data(self.run_id, [*names, "shift", "scale"])
        first, stop = shards.examples_of(config.examples, block)
        xs = [self.rows(place, first, stop)] if place is not None else [arrays[n] for n in xs_named]
        y = np.concatenate([arrays[launching.y_name(k)] for k in block], axis=1)
        stats = {"shift": arrays["shift"], "scale": arrays["scale"]}
        if xs[0].dtype.kind in "ui":  # raw integers, examples first: normalised here as TrainData does
            x = normalize.apply(stats, xs[0] if len(xs) == 1 else np.concatenate(xs, axis=0), config.dtype)
        else:
            x = np.asfortranarray(np.concatenate(xs, axis=1))
        return Held(x, np.ascontiguousarray(y), first)

    def rows(self, place: direct.Place, first: int, stop: int) -> np.ndarray:
        """Examples first..stop-1, raw, examples first: one ranged GET of the object the launch
        read (ObjectChanged when it is no longer that object)."""
        start, end = place.byte_range(first, stop)
        return place.rows_of(
            self.svc.blob_store.read_range(place.bucket, place.key, start, end, place.etag), first, stop
        )

    def place(self) -> direct.Place | None:
        """Where the run's training examples lie in the dataset object, when its workers read them
        from there (read from the cache once per invocation); None when the cache holds them. A
        record that is malformed, names an object a dataset may not be (outside the configured
        bucket and prefix), or rows other than the run's, fails the run: no retry reads it better."""
        from trainer.data.loader import place_problem

        if self._place is _UNREAD:
            found = self.svc.tensor_store.has_data(self.run_id, launching.SOURCE)
            entry = self.svc.tensor_store.get_data(self.run_id, [launching.SOURCE]) if found else None
            try:
                place = None if entry is None else launching.place_of(entry[launching.SOURCE])
            except ValueError as exc:
                raise self.fail_run(ValueError(f"cache record {launching.SOURCE!r}: {exc}"), None) from exc
            if place is not None:
                config, settings = warm.run_config(self.svc, self.run_id), self.svc.settings
                problem = place_problem(place, settings.model_bucket, settings.dataset_prefix, config)
                if problem is not None:
                    raise self.fail_run(ValueError(f"cache record {launching.SOURCE!r}: {problem}"), None)
            self._place = place
        return self._place  # type: ignore[return-value]

    @staticmethod
    def correct(config: RunConfig, params: dict[str, np.ndarray], held: Held) -> int:
        """How many of the held examples the model classifies right (a share of the train accuracy),
        predicted one micro-shard at a time, so every example's prediction is computed on the same
        block of examples whatever the number of workers."""
        cut = shards.bounds(config.examples, shards.MICRO_SHARDS)
        total = 0
        for lo, hi in itertools.pairwise(cut):
            if lo < held.first or hi > held.first + held.x.shape[1] or lo == hi:
                continue
            x = np.asfortranarray(held.x[:, lo - held.first : hi - held.first])
            labels = held.y[:, lo - held.first : hi - held.first].astype(np.int64)
            total += int(np.sum(engine.predict(config.activations, params, x) == labels))
        return total

    def finish(self, config: RunConfig, outcome: worker.Result, correct: int, store: ReductionStore) -> dict[str, Any]:
        arrays = self.svc.tensor_store.get_data(self.run_id, ["x_test", "y_test", "shift", "scale"])
        x_test = arrays["x_test"]
        if x_test.dtype.kind in "ui":  # raw integers, examples first, as the chain's TrainData takes them
            x_test = normalize.apply({"shift": arrays["shift"], "scale": arrays["scale"]}, x_test, config.dtype)
        run = self.svc.run_store.get_run(self.run_id)
        now = time.time()
        metrics = {
            "final_cost": outcome.costs[-1],
            "train_accuracy": correct / config.examples,
            "test_accuracy": engine.accuracy(config, outcome.params, x_test, arrays["y_test"]),
            "duration_s": round(now - float(run["created_at"]), 3),
            "finished_at": now,
            "epochs": config.epochs,
        }
        if config.validates:  # the figure the chain's summary carries
            metrics["validation_accuracy"] = engine.accuracy(config, outcome.params, *self.validation_set(config))
        epochs = self.epoch_items(config, outcome, store)
        seq = config.plan.total_steps - 1  # the chain's finish position: the run's record counts to it
        outbox = effects.Outbox(seq=seq, epochs=epochs, checkpoint_epoch=None, metrics=metrics, successor=None)
        weights = {n: outcome.params[n] for n in engine.weight_names(config)}
        answer = self.svc.tensor_store.commit(self.run_id, -1, seq, weights, outbox.to_json())
        if answer is CommitResult.OK:
            self.complete(config, outbox, lambda names: {n: weights[n] for n in names})
            return self.result(Outcome.SUCCEEDED, steps_executed=outcome.steps, last_seq=seq)
        if answer is CommitResult.LOST:  # the node went under the finish (the triage fails the run), or a cancel
            lost = CacheLost(f"run {self.run_id!r} lost its state in the cache at its finish")
            if self.standing(None, lost) is Standing.CANCELLED:
                return self.result(Outcome.CANCELLED)
        if answer is CommitResult.CANCELLED:
            return self.result(Outcome.CANCELLED)
        return self.complete_committed(config, self.svc.tensor_store.cursor(self.run_id))

    def epoch_items(self, config: RunConfig, outcome: worker.Result, store: ReductionStore) -> list[dict[str, Any]]:
        """Every epoch's item, for the finish's outbox (its PROGRESS messages, and the history it
        writes again): those written while the run went on, as they are; the others (the last
        epoch's when examples are held out, and any a worker claimed and did not write) from the
        same figures, the last epoch's validation scores computed here."""
        items = {int(e["epoch"]): public(e) for e in self.svc.run_store.epochs(self.run_id)}
        missing = [e for e in range(config.epochs) if e not in items]
        if missing:
            ends, costs = store.epoch_ends(), dict(enumerate(outcome.costs))
            scores = dict(enumerate(self.scores(config, outcome, store))) if config.validates else {}
            items |= {e: epoch_item(config, e, costs, ends, scores, outcome.hits) for e in missing}
        return [items[e] for e in range(config.epochs)]

    def scores(self, config: RunConfig, outcome: worker.Result, store: ReductionStore) -> list[tuple[float, float]]:
        """Every epoch's validation scores: those the workers published, and the last epoch's,
        scored here from the final parameters."""
        published = store.validation_scores()
        last = self.scorer(config)(outcome.params)
        return [published[e] for e in range(config.epochs - 1)] + [last]

    def complete_committed(self, config: RunConfig, position: int) -> dict[str, Any]:
        """Another copy committed the finish: complete what it may have left undone, as a chain copy
        behind the chain does."""
        text = self.svc.tensor_store.outbox(self.run_id, position)
        if text is not None:
            outbox = effects.Outbox.from_json(text)

            def tensors(names: list[str]) -> dict[str, Any]:
                return self.svc.tensor_store.read_at(self.run_id, position, names)

            self.complete(config, outbox, tensors)
        return self.result(Outcome.DUPLICATE, last_seq=position)

    def complete(self, config: RunConfig, outbox: effects.Outbox, tensors: effects.TensorSource) -> None:
        """The committed finish's effects, as the chain completes a position (trainer.effects). The
        chain completes a run's epochs one event at a time, each under its own event's retries; the
        finish of a data-parallel run completes all of them at once (every epoch's item, a PROGRESS
        message every `notify_every` epochs, the model, SUCCEEDED). Lambda's three attempts of one
        event would give up where AWS throttles a fraction of those calls, and leave the run RUNNING
        with its finish committed. So an error a later attempt need not meet (`aws.transient`) is
        outlasted here, attempt after attempt while the invocation has time, each attempt doing
        only what the ones before left undone.

        A completion that still fails (the last attempt's error, or one that is not transient, at
        once) ends as a chain step's does: the run FAILED with that error as its reason (not left
        RUNNING with its finish committed), the error raised for Lambda's retry, whose completion
        moves the run on to SUCCEEDED if it gets through. Another copy holding the completion
        (`CompletionBusy`) is no failure: raised for the retry alone."""
        pause, attempts = COMPLETION_PAUSE_S[0], 0
        while True:
            try:
                effects.complete(self.svc, config, outbox, tensors, self.token, self.context)
                return
            except once.CompletionBusy:
                raise
            except Exception as exc:
                attempts += 1
                left_ms = self.context.get_remaining_time_in_millis() - config.time_margin_ms
                if not aws.transient(exc) or attempts >= COMPLETION_ATTEMPTS or left_ms < pause * 1000:
                    raise self.fail_run(exc, None) from exc
                logger.warning(
                    "the finish's completion met a transient error; again",
                    extra={"run_id": self.run_id, "worker": self.worker, "attempt": attempts, "error": str(exc)},
                )
            time.sleep(pause)
            pause = min(2 * pause, COMPLETION_PAUSE_S[1])

    def result(self, status: Outcome, **values: Any) -> dict[str, Any]:
        return {"run_id": self.run_id, "worker": self.worker, "status": str(status), **values}


def epoch_item(
    config: RunConfig,
    epoch: int,
    costs: dict[int, float],
    ends: dict[int, float],
    scores: dict[int, tuple[float, float]],
    hits: dict[int, int],
) -> dict[str, Any]:
    """Epoch `epoch`'s item as the chain's has it, from figures every worker reads alike, so
    whoever writes it writes the same item: its cost, its duration between the ends the cache
    recorded (from this generation's start for its first epoch), and, with held-out examples, the
    training accuracy of its batches as they met them (its hits, summed in the reduction's tree, of
    its examples) and its validation scores. (A run resumed from a checkpoint written before the
    hits were kept has no accuracy for the epochs before it: None, unknown.)"""
    began, ended = ends.get(epoch - 1, ends.get(-1)), ends.get(epoch)
    duration = None if began is None or ended is None else round(ended - began, 6)
    item: dict[str, Any] = {"epoch": epoch, "cost": costs[epoch], "duration_s": duration}
    if config.validates:
        cost, accuracy = scores[epoch]
        right = hits.get(epoch)
        item["accuracy"] = None if right is None else right / config.examples
        item |= {"validation_cost": cost, "validation_accuracy": accuracy}
    return item


def job_of(config: RunConfig) -> worker.Job:
    return worker.Job(
        sizes=config.sizes,
        activations=config.activations,
        optimizer=config.optimizer,
        learning_rate=config.learning_rate,
        l2=config.l2,
        batch_size=None if config.full_batch else config.batch_size,
        examples=config.examples,
        epochs=config.epochs,
        seed=config.seed,
        workers=config.workers,
    )
