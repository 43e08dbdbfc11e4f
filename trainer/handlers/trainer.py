"""TrainerLambda: executes states of the chain and hands the next one on.

At-least-once safety: the step(s) of an invocation are computed in memory and applied by one
atomic commit that succeeds only if the chain's cursor is still where the invocation found it.
A duplicate finds the cursor past its seq and at most re-sends the hand-off (guarded by a
claim so exactly one successor is invoked); a crash before the commit leaves nothing applied,
so the retry recomputes the same steps from the same inputs.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from trainer import checkpoints, engine, model_file
from trainer import services as services_mod
from trainer.errors import ChainError, EventError
from trainer.logs import get_logger
from trainer.runconfig import RunConfig
from trainer.statemachine import Event, check_in_plan, event_at, next_event, parse_event
from trainer.stores.tensor_store import NO_CURSOR

logger = get_logger("lnn-trainer")

# Read-only inputs stay in memory for later invocations of the same run in this execution
# environment; keyed by run and content digest so a stale copy can never be used.
_config_cache: dict[str, RunConfig] = {}
_data_cache: dict[tuple[str, str], engine.TrainData] = {}
_DATA_CACHE_RUNS = 2


@dataclass
class _NoDeadline:
    """Context for callers without a Lambda deadline (local runner, tests)."""

    def get_remaining_time_in_millis(self) -> int:
        return 15 * 60 * 1000


class _HistoryWriter:
    """Writes the epoch history while the steps go on (numpy releases the GIL), one full DynamoDB batch
    (25 items) at a time; finish() writes the rest and waits, re-raising any error, before the commit,
    as the single write after the loop did. The puts are idempotent, so a retry may repeat them."""

    BATCH = 25

    def __init__(self, run_store: Any, run_id: str):
        self.run_store, self.run_id, self.sent = run_store, run_id, 0
        self.executor: ThreadPoolExecutor | None = None
        self.futures: list[Future] = []

    def add(self, epochs: list[dict[str, Any]]) -> None:
        if len(epochs) - self.sent >= self.BATCH:
            self.executor = self.executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="lnn-history")
            batch = epochs[self.sent : self.sent + self.BATCH]
            self.futures.append(self.executor.submit(self.run_store.put_epochs, self.run_id, batch))
            self.sent += self.BATCH

    def finish(self, epochs: list[dict[str, Any]]) -> None:
        try:
            if self.sent < len(epochs):
                self.run_store.put_epochs(self.run_id, epochs[self.sent :])
            for future in self.futures:
                future.result()
        finally:
            if self.executor:
                self.executor.shutdown(wait=True)


def _config(svc: services_mod.Services, run_id: str) -> RunConfig:
    cached = _config_cache.get(run_id)
    if cached is not None:
        return cached
    text = svc.tensor_store.config(run_id)
    if text is None:
        raise ChainError(f"run {run_id!r} has no state in the cache (unknown run, or the cache lost it)")
    config = RunConfig.from_json(text)
    _config_cache[run_id] = config
    return config


def _data(svc: services_mod.Services, config: RunConfig) -> engine.TrainData:
    key = (config.run_id, config.data_digest)
    cached = _data_cache.get(key)
    if cached is None:
        arrays = svc.tensor_store.get_data(config.run_id, ["x_train", "y_train", "x_test", "y_test", "shift", "scale"])
        cached = engine.TrainData(**arrays)
        while len(_data_cache) >= _DATA_CACHE_RUNS:
            _data_cache.pop(next(iter(_data_cache)))
        _data_cache[key] = cached
    return cached


def _hand_off(
    svc: services_mod.Services, run_id: str, committed_seq: int, event: Event | None, delivered_seq: int
) -> bool:
    """Invoke the successor of `committed_seq` unless another copy already did. The claim token
    is the delivered event's seq, so Lambda's retry of this very event may finish the job."""
    if event is None:
        return False
    token = f"event-{delivered_seq}"
    if not svc.tensor_store.claim_handoff(run_id, committed_seq, token, svc.settings.handoff_claim_ttl_s):
        return False
    try:
        svc.invoker.invoke_async(event.to_dict())
    except Exception:
        svc.tensor_store.release_handoff(run_id, committed_seq, token)
        raise
    svc.tensor_store.confirm_handoff(run_id, committed_seq)
    return True


def _checkpoint(svc: services_mod.Services, config: RunConfig, ws: engine.WorkingSet, event: Event) -> None:
    """Parameters and optimizer state as they stand after `event`, the step closing an epoch.
    Written before the commit: a re-run overwrites it with the same bytes."""
    names = engine.param_names(config)
    missing = [n for n in names if n not in ws]
    tensors = {n: ws[n] for n in names if n in ws}
    if missing:
        tensors.update(svc.tensor_store.read(config.run_id, missing))
    checkpoints.save(svc.blob_store, config.run_id, event.epoch, event.seq, tensors)


def _finish(
    svc: services_mod.Services, config: RunConfig, ws: engine.WorkingSet, data: engine.TrainData
) -> dict[str, Any]:
    params = {n: ws[n] for n in engine.inputs_of(config, Event("finish", config.run_id, 0, 0, 0, 0))}
    metrics = {
        "final_cost": float(ws["cost"][0]),
        "train_accuracy": engine.accuracy(config, params, data.x_train, data.y_train),
        "test_accuracy": engine.accuracy(config, params, data.x_test, data.y_test),
    }
    key = f"models/{config.run_id}/model.npz"
    metrics["model_uri"] = svc.blob_store.put(key, model_file.dumps(config, params, data.shift, data.scale))
    run = svc.run_store.get_run(config.run_id)
    metrics["duration_s"] = round(time.time() - float(run["created_at"]), 3)
    metrics["epochs"] = config.epochs
    svc.run_store.mark_succeeded(config.run_id, metrics)
    svc.notifier.publish("SUCCEEDED", config.run_id, metrics)
    return metrics


def handle(payload: Any, context: Any, svc: services_mod.Services) -> dict[str, Any]:
    context = context if hasattr(context, "get_remaining_time_in_millis") else _NoDeadline()
    event = parse_event(payload)
    run_id = event.run_id
    config = _config(svc, run_id)
    plan = config.plan
    check_in_plan(plan, event)
    result: dict[str, Any] = {"run_id": run_id, "steps_executed": 0, "last_seq": None, "next_event": None}

    cursor, cancel, tensors = svc.tensor_store.read_step(run_id, engine.inputs_of(config, event))
    if cancel:
        svc.tensor_store.delete_run(run_id)
        svc.run_store.mark_status(run_id, "CANCELLED")
        logger.info("run cancelled", extra={"run_id": run_id, "seq": event.seq})
        return {**result, "status": "CANCELLED"}
    if cursor == NO_CURSOR:
        raise ChainError(f"run {run_id!r} lost its chain position in the cache")
    if cursor >= event.seq:
        successor = event_at(plan, run_id, cursor + 1) if cursor + 1 < plan.total_steps else None
        sent = _hand_off(svc, run_id, cursor, successor, event.seq)
        logger.info("duplicate event", extra={"run_id": run_id, "seq": event.seq, "cursor": cursor, "resent": sent})
        return {
            **result,
            "status": "DUPLICATE",
            "last_seq": cursor,
            "next_event": successor.to_dict() if sent and successor else None,
        }
    if cursor < event.seq - 1:
        raise ChainError(f"event seq {event.seq} arrived but the run's last applied step is {cursor}")

    data = _data(svc, config)
    ws = engine.WorkingSet()
    ws.load(tensors)
    started = time.monotonic()
    epoch_started = started
    epochs: list[dict[str, Any]] = []
    history = _HistoryWriter(svc.run_store, run_id)
    current, executed, status = event, 0, "RUNNING"
    successor: Event | None = None
    while True:
        missing = [n for n in engine.inputs_of(config, current) if n not in ws]
        if missing:
            ws.load(svc.tensor_store.read(run_id, missing))
        if current.state == "finish":
            metrics = _finish(svc, config, ws, data)
            executed += 1
            status, successor = "SUCCEEDED", None
            result["metrics"] = metrics
            break
        outcome = engine.run_step(config, current, ws, data)
        executed += 1
        if outcome.epoch_cost is not None:
            now = time.monotonic()
            epochs.append(
                {"epoch": current.epoch, "cost": outcome.epoch_cost, "duration_s": round(now - epoch_started, 6)}
            )
            epoch_started = now
            history.add(epochs)
            if config.checkpoint_every and (current.epoch + 1) % config.checkpoint_every == 0:
                _checkpoint(svc, config, ws, current)
        successor = next_event(plan, current)
        budget_left = executed < config.max_steps_per_invocation
        time_left = context.get_remaining_time_in_millis() > config.time_margin_ms
        if config.chain == "per_step" or not budget_left or not time_left or successor is None:
            break
        current = successor

    if epochs:
        history.finish(epochs)
        if config.notify_every:
            for item in epochs:
                if (item["epoch"] + 1) % config.notify_every == 0:
                    svc.notifier.publish("PROGRESS", run_id, item)
    dirty = ws.take_dirty() if status == "RUNNING" else {}
    if not svc.tensor_store.commit(run_id, event.seq - 1, current.seq, dirty):
        logger.info("lost the commit race to a duplicate", extra={"run_id": run_id, "seq": event.seq})
        return {**result, "status": "DUPLICATE", "last_seq": svc.tensor_store.cursor(run_id)}
    if status == "SUCCEEDED":
        svc.tensor_store.delete_run(run_id)
    else:
        svc.run_store.record_progress(run_id, current.seq)
        _hand_off(svc, run_id, current.seq, successor, event.seq)
    logger.info(
        "steps applied",
        extra={
            "run_id": run_id,
            "first_seq": event.seq,
            "last_seq": current.seq,
            "steps": executed,
            "duration_ms": round((time.monotonic() - started) * 1000, 3),
        },
    )
    last_cost = epochs[-1] if epochs else None
    return {
        **result,
        "status": status,
        "steps_executed": executed,
        "last_seq": current.seq,
        "epoch": current.epoch,
        "last_epoch": last_cost,
        "next_event": successor.to_dict() if successor else None,
    }


class StepFailed(RuntimeError):
    """A step's unrecoverable error, named with its run and step for the on-failure destination."""


def handler(event: Any, context: Any) -> dict[str, Any]:
    svc = services_mod.current()
    try:
        return handle(event, context, svc)
    except EventError:
        logger.warning("refused a malformed trainer event")
        raise
    except Exception as exc:
        run_id = event.get("run_id") if isinstance(event, dict) else None
        step = f"{event.get('state')}#{event.get('seq')}" if isinstance(event, dict) else "?"
        logger.exception("step failed", extra={"run_id": run_id, "step": step})
        if isinstance(run_id, str):
            _mark_failed(svc, run_id, step, exc)
        # What reaches the on-failure destination (errorMessage) names the run and the step.
        raise StepFailed(f"run {run_id} step {step}: {type(exc).__name__}: {exc}") from exc


def _mark_failed(svc: services_mod.Services, run_id: str, step: str, exc: Exception) -> None:
    """Best effort: the original error is what the caller must see, not a second one."""
    reason = f"{type(exc).__name__}: {exc}"
    try:
        if not svc.run_store.mark_failed(run_id, reason, step, type(exc).__name__):
            return  # finished or cancelled already: a late duplicate's error changes nothing
        svc.notifier.publish("FAILED", run_id, {"step": step, "error_type": type(exc).__name__, "reason": reason})
    except Exception:
        logger.exception("could not record the failure", extra={"run_id": run_id})
