"""TrainerLambda: executes states of the chain and hands the next one on.

The life of one invocation (`Invocation.handle`): triage the event against the chain's position
(cancelled, behind, ahead, or next), run the steps in memory from one consistent snapshot, commit
them with their outbox in one atomic write guarded by the cursor, then complete the committed
position: its effects and its one hand-off (trainer.effects). Nothing is visible before the
commit, so of several copies of one event only the one that commits leaves a trace; a copy that
finds itself behind completes what the current position may have left undone, and nothing else.

A snapshot is one chain position: the first read takes the cursor and the inputs atomically, and
every later read of a fused invocation re-checks the cursor in the same atomic step (read_at), so
a copy whose position was committed by another stops at its next read instead of computing on a
mix of two positions.

The function also takes a sweep scheduler's event, "start trial k of sweep S" (`start_trial`): the
trial that freed a slot sends it, and the start runs here in an invocation of its own.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from trainer import effects, engine, failures, once, warm
from trainer import services as services_mod
from trainer.entrypoint import lambda_handler
from trainer.errors import EventError
from trainer.handlers import worker as worker_handler
from trainer.logs import get_logger
from trainer.runconfig import RunConfig
from trainer.statemachine import Event, State, check_in_plan, next_event, parse_event
from trainer.stores.tensor_store import NO_CURSOR, CacheLost, CommitResult, Superseded
from trainer.sweep import scheduler
from trainer.vocabulary import Claim, Outcome

logger = get_logger("lnn-trainer")


class StepFailed(RuntimeError):
    """A step's unrecoverable error, named with its run and step for the on-failure destination."""


class Triage(Enum):
    CANCELLED = "cancelled"  # the user cancelled the run
    BEHIND = "behind"  # the chain is at or past this event: a duplicate, a retry, or a late copy
    AHEAD = "ahead"  # the chain is before this event's predecessor: a stale event after a resume
    NEXT = "next"  # the chain is exactly before this event: run it


@dataclass
class Steps:
    """What an invocation computed in memory, not yet visible anywhere."""

    last: Event
    executed: int
    outbox: effects.Outbox
    ws: engine.WorkingSet = field(default_factory=engine.WorkingSet)


@lambda_handler("lnn-trainer")
def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point: adapters built from the environment once per execution environment."""
    return run(event, context, services_mod.current())


def run(payload: Any, context: Any, svc: services_mod.Services) -> dict[str, Any]:
    """One invocation with the given adapters: a step of a run's chain, a data-parallel run's
    worker, or a sweep scheduler's event that starts a trial in a slot another trial freed."""
    if worker_handler.is_worker_event(payload):  # a data-parallel run's worker, not a chain step
        return worker_handler.run(payload, context, svc)
    if scheduler.is_start_event(payload):
        return start_trial(payload, context, svc)
    try:
        event = parse_event(payload)
    except EventError:
        logger.warning("refused a malformed trainer event")
        raise
    invocation = Invocation(event, context, svc)
    try:
        return invocation.handle()
    except EventError:
        # Not the plan's event (forged, or malformed past its shape): an error for its sender, and
        # nothing of the run's: its status, its messages and its chain stay as they are.
        logger.warning("refused an event that is not the run's plan", extra={"run_id": event.run_id})
        raise
    except Superseded as exc:
        return invocation.moved_on(exc)
    except once.CompletionBusy as exc:
        logger.info("completion held by another copy", extra={"run_id": event.run_id, "seq": event.seq})
        raise StepFailed(f"run {event.run_id} step {invocation.step}: {exc}; Lambda's retry comes back for it") from exc
    except Exception as exc:
        # Raised either way, so that Lambda's retry may finish what this copy could not; recorded
        # as the run's failure only by the copy that holds the run's position.
        if invocation.holds_position():
            invocation.record_failure(exc)
        raise StepFailed(f"run {event.run_id} step {invocation.step}: {type(exc).__name__}: {exc}") from exc


def start_trial(payload: Any, context: Any, svc: services_mod.Services) -> dict[str, Any]:
    """A trial's start in an invocation of its own: its data read and its state written here, with
    this invocation's time and memory, not inside the completion of the trial that freed the slot."""
    deadline = context if hasattr(context, "get_remaining_time_in_millis") else once.NoDeadline()
    try:
        return scheduler.start_from_event(svc, payload, secrets.token_hex(8), deadline)
    except EventError:
        logger.warning("refused a scheduler event", extra={"sweep_id": str(payload.get("sweep_id"))[:80]})
        raise


class Invocation:
    def __init__(self, event: Event, context: Any, svc: services_mod.Services):
        self.event, self.svc = event, svc
        self.context = context if hasattr(context, "get_remaining_time_in_millis") else once.NoDeadline()
        self.token = secrets.token_hex(8)  # this copy's own: concurrent copies never share a claim
        self.run_id, self.step = event.run_id, f"{event.state}#{event.seq}"
        self.completing: int | None = None  # the committed position this copy is completing
        self.started = time.monotonic()
        self._config: RunConfig | None = None
        self.snapshot: dict[str, Any] = {}
        self.cursor = NO_CURSOR
        self.generation: int | None = None  # the run's resumes when this copy started

    # -- the life of an invocation ------------------------------------------------------------
    def handle(self) -> dict[str, Any]:
        # First, and from the table, not the cache: a failure of this copy is the run's only while
        # the run is still the chain this copy started on (a resume replaces the chain).
        self.generation = self.svc.run_store.generation(self.run_id)
        self._config = warm.run_config(self.svc, self.run_id)
        check_in_plan(self.config.plan, self.event)
        triage = self.triage()
        if triage is Triage.CANCELLED:
            return self.stop_cancelled()
        if triage is Triage.BEHIND:
            return self.complete_current()
        if triage is Triage.AHEAD:
            return self.ignore_stale()
        try:
            steps = self.run_steps()
        except Superseded as exc:
            return self.superseded(exc)
        result = self.commit(steps)
        if result is CommitResult.LOST:
            raise CacheLost(f"run {self.run_id!r} lost its chain position in the cache before step {self.event.seq}")
        if result is not CommitResult.OK:
            return self.lost_race()
        self.complete(steps)
        return self.report(steps)

    @property
    def config(self) -> RunConfig:
        """The run's config: `handle` reads it first of all, before any step needs it."""
        if self._config is None:
            raise RuntimeError(f"run {self.run_id!r}: the config is read first, by handle")
        return self._config

    # -- decisions ------------------------------------------------------------------------------
    def triage(self) -> Triage:
        inputs = engine.inputs_of(self.config, self.event)
        self.cursor, cancelled, self.snapshot = self.svc.tensor_store.snapshot(self.run_id, inputs)
        if cancelled:
            return Triage.CANCELLED
        if self.cursor == NO_CURSOR:
            raise CacheLost(f"run {self.run_id!r} lost its chain position in the cache")
        if self.cursor >= self.event.seq:
            return Triage.BEHIND
        if self.cursor < self.event.seq - 1:
            return Triage.AHEAD
        return Triage.NEXT

    def holds_position(self) -> bool:
        """Whether this copy's failure is the run's: it was completing the current position, or
        nobody has committed its event yet (or the chain's position is gone). A copy whose
        position was taken by another failed on nothing the run depends on."""
        try:
            cursor = self.svc.tensor_store.cursor(self.run_id)
        except Exception:
            return True  # the cache itself is failing: that is the run's problem
        if cursor == NO_CURSOR:
            return True  # the cache lost the run: nobody else will say so
        if self.completing is not None:
            return cursor == self.completing
        return cursor in (NO_CURSOR, self.event.seq - 1)

    # -- the steps, in memory -------------------------------------------------------------------
    def run_steps(self) -> Steps:
        config, position = self.config, self.event.seq - 1
        data = warm.training_data(self.svc, config)
        ws = engine.WorkingSet()
        ws.load(self.snapshot)
        epochs: list[dict[str, Any]] = []
        current, executed, epoch_started = self.event, 0, time.monotonic()
        metrics, checkpoint_epoch, successor = None, None, None
        while True:
            missing = [n for n in engine.inputs_of(config, current) if n not in ws]
            ws.load(self.svc.tensor_store.read_at(self.run_id, position, missing))
            executed += 1
            if current.state == State.FINISH:
                metrics, successor = effects.finish_metrics(self.svc, config, ws, data), None
                break
            outcome = engine.run_step(config, current, ws, data)
            successor = next_event(config.plan, current)
            if outcome.epoch_cost is not None:
                now = time.monotonic()
                item: dict[str, float | None] = {
                    "epoch": current.epoch,
                    "cost": outcome.epoch_cost,
                    "duration_s": round(now - epoch_started, 6),
                }
                if config.validates:
                    item |= self.validation_scores(ws, data, position, outcome)
                epochs.append(item)
                epoch_started = now
                if config.checkpoint_every and (current.epoch + 1) % config.checkpoint_every == 0:
                    checkpoint_epoch = current.epoch
                    break  # the committed state is then exactly the checkpoint
                if config.closes_rung(current.epoch):
                    break  # the scheduler judges the trial on exactly this state, before anything more
            if successor is None or not self.may_continue(executed, successor):
                break
            current = successor
        outbox = effects.Outbox(
            seq=current.seq,
            epochs=epochs,
            checkpoint_epoch=checkpoint_epoch,
            metrics=metrics,
            successor=successor.to_dict() if successor else None,
        )
        return Steps(last=current, executed=executed, outbox=outbox, ws=ws)

    def validation_scores(
        self, ws: engine.WorkingSet, data: engine.TrainData, position: int, outcome: engine.StepOutcome
    ) -> dict[str, float | None]:
        """The epoch's scores on the held-out examples (not the test set), by the weights it ended
        with; and its training accuracy, as its batches met the examples."""
        names = engine.weight_names(self.config)
        ws.load(self.svc.tensor_store.read_at(self.run_id, position, [n for n in names if n not in ws]))
        cost, accuracy = engine.evaluate(self.config, {n: ws[n] for n in names}, *data.validation())
        return {"accuracy": outcome.epoch_accuracy, "validation_cost": cost, "validation_accuracy": accuracy}

    def may_continue(self, executed: int, successor: Event | None) -> bool:
        config = self.config
        return (
            config.chain != "per_step"
            and successor is not None
            and executed < config.max_steps_per_invocation
            and self.context.get_remaining_time_in_millis() > config.time_margin_ms
        )

    # -- the commit point ---------------------------------------------------------------------
    def commit(self, steps: Steps) -> CommitResult:
        dirty = steps.ws.take_dirty()
        if steps.outbox.metrics is not None:
            # Of a finish, only the weights: whichever copy completes it writes the model from them.
            kept = set(engine.weight_names(self.config))
            dirty = {name: value for name, value in dirty.items() if name in kept}
        result = self.svc.tensor_store.commit(
            self.run_id, self.event.seq - 1, steps.last.seq, dirty, steps.outbox.to_json()
        )
        if result is CommitResult.OK:
            self.completing = steps.last.seq
        return result

    # -- after the commit -----------------------------------------------------------------------
    def complete(self, steps: Steps) -> Claim:
        def tensors(names: list[str]) -> dict[str, Any]:
            held = {n: steps.ws[n] for n in names if n in steps.ws}
            missing = [n for n in names if n not in held]
            return {**held, **self.svc.tensor_store.read_at(self.run_id, steps.last.seq, missing)}

        return effects.complete(self.svc, self.config, steps.outbox, tensors, self.token, self.context)

    def complete_current(self) -> dict[str, Any]:
        """A copy behind the chain: finish the current position's completion if its committer
        could not (it crashed, or this is its retry); otherwise nothing."""
        position = self.cursor
        text = self.svc.tensor_store.outbox(self.run_id, position)
        answer = None
        if text is not None:
            outbox = effects.Outbox.from_json(text)
            self.completing = position

            def tensors(names: list[str]) -> dict[str, Any]:
                return self.svc.tensor_store.read_at(self.run_id, position, names)

            answer = effects.complete(self.svc, self.config, outbox, tensors, self.token, self.context)
        completed = answer is Claim.ACQUIRED
        logger.info(
            "duplicate event",
            extra={"run_id": self.run_id, "seq": self.event.seq, "cursor": position, "completed": completed},
        )
        return self.result(Outcome.DUPLICATE, last_seq=position, completed=completed)

    def stop_cancelled(self) -> dict[str, Any]:
        logger.info("run cancelled", extra={"run_id": self.run_id, "seq": self.event.seq})
        return self.result(Outcome.CANCELLED)

    def ignore_stale(self) -> dict[str, Any]:
        logger.info("stale event", extra={"run_id": self.run_id, "seq": self.event.seq, "cursor": self.cursor})
        return self.result(Outcome.DUPLICATE, last_seq=self.cursor)

    def lost_race(self) -> dict[str, Any]:
        logger.info("lost the commit race to another copy", extra={"run_id": self.run_id, "seq": self.event.seq})
        return self.follow_committer()

    def superseded(self, exc: Superseded) -> dict[str, Any]:
        """Another copy committed this position while this one was reading: stop computing."""
        logger.info("superseded copy stopped", extra={"run_id": self.run_id, "seq": self.event.seq, "reason": str(exc)})
        return self.follow_committer()

    def moved_on(self, exc: Superseded) -> dict[str, Any]:
        """The position this copy was completing moved on: another copy completed it."""
        logger.info("completion taken over", extra={"run_id": self.run_id, "seq": self.event.seq, "reason": str(exc)})
        return self.result(Outcome.DUPLICATE)

    def follow_committer(self) -> dict[str, Any]:
        """Another copy committed this event's position: this copy is now behind the chain, and
        sees the committer's completion through as any copy behind does. Returning at once would
        leave the hand-off to the committer and its own retries alone; if they all die (a killed
        environment, every retry too) the chain would stop with a live copy of its event gone."""
        self.cursor, cancelled, _ = self.svc.tensor_store.snapshot(self.run_id, [])
        if cancelled:
            return self.stop_cancelled()
        return self.complete_current()

    def record_failure(self, exc: Exception) -> None:
        """The run's failure (trainer.failures), by this copy that holds the run's position.
        (A node lost under a chain fails copies of two steps; a completion that had passed the
        loss puts the run back to RUNNING between them. That is one failure, said once.)"""
        logger.exception("step failed", extra={"run_id": self.run_id, "step": self.step})
        lost = isinstance(exc, CacheLost) or failures.cache_lost(self.svc.tensor_store, self.run_id)
        why = failures.reason(exc, lost)
        try:
            failures.fail_run(self.svc, self.run_id, exc, why, self.step, self.generation, self.token, self.context)
        except Exception:
            # Best effort: the original error is what the caller must see, not a second one.
            logger.exception("could not record the failure", extra={"run_id": self.run_id})

    # -- results --------------------------------------------------------------------------------
    def report(self, steps: Steps) -> dict[str, Any]:
        logger.info(
            "steps applied",
            extra={
                "run_id": self.run_id,
                "first_seq": self.event.seq,
                "last_seq": steps.last.seq,
                "steps": steps.executed,
                "duration_ms": round((time.monotonic() - self.started) * 1000, 3),
            },
        )
        outbox = steps.outbox
        status = Outcome.SUCCEEDED if outbox.metrics is not None else Outcome.APPLIED
        extra: dict[str, Any] = {"metrics": outbox.metrics} if outbox.metrics is not None else {}
        return self.result(
            status,
            steps_executed=steps.executed,
            last_seq=steps.last.seq,
            epoch=steps.last.epoch,
            last_epoch=outbox.epochs[-1] if outbox.epochs else None,
            next_event=outbox.successor,
            **extra,
        )

    def result(self, status: Outcome, **values: Any) -> dict[str, Any]:
        base = {"run_id": self.run_id, "status": str(status), "steps_executed": 0, "last_seq": None, "next_event": None}
        return {**base, **values}
