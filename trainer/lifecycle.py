"""Resume and cancel: what a user does to a run that failed, stalled, or is no longer wanted."""

from __future__ import annotations

import json
import time
from typing import Any

from trainer import checkpoints
from trainer import services as services_mod
from trainer.data.loader import load_raw, prepare
from trainer.errors import RequestError
from trainer.request import RUN_ID_PATTERN
from trainer.runconfig import RunConfig
from trainer.statemachine import event_at
from trainer.stores.tensor_store import NO_CURSOR

# Twice the longest a fused invocation can run (the 900 s Lambda limit) between two heartbeats.
DEFAULT_STALL_AFTER_S = 1800.0


def effective_status(
    run: dict[str, Any], stall_after_s: float = DEFAULT_STALL_AFTER_S, now: float | None = None
) -> str:
    """RUNNING with no step for `stall_after_s` seconds is STALLED."""
    now = time.time() if now is None else now
    if run.get("status") == "RUNNING" and now - float(run.get("last_step_at", now)) > stall_after_s:
        return "STALLED"
    return str(run.get("status"))


def _checked_run(svc: services_mod.Services, run_id: Any) -> dict[str, Any]:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise RequestError(["run_id: must be 1-64 letters, digits, '-' or '_', starting with a letter or digit"])
    return svc.run_store.get_run(run_id)


def resume(svc: services_mod.Services, run_id: Any, stall_after_s: float = DEFAULT_STALL_AFTER_S) -> dict[str, Any]:
    """Restart a FAILED or STALLED run from its last applied step (the cache), or from its newest
    epoch checkpoint when the cache lost the run."""
    run = _checked_run(svc, run_id)
    status = effective_status(run, stall_after_s)
    if status not in ("FAILED", "STALLED"):
        raise RequestError([f"run_id: run {run_id!r} is {status}; only FAILED or STALLED runs can resume"])
    config = RunConfig.from_json(run["config"])
    plan = config.plan
    store = svc.tensor_store
    cursor = store.cursor(run_id)
    if cursor != NO_CURSOR and store.config(run_id) is not None and store.has_data(run_id):
        source = "cache"
    else:
        found = checkpoints.latest(svc.blob_store, run_id)
        if found is None:
            raise RequestError([f"run_id: run {run_id!r} has no state in the cache and no checkpoint to resume from"])
        cursor, epoch, tensors = found
        _restore_data(svc, config, json.loads(run["request"]))
        store.delete_run(run_id, keep_cursor=False)
        store.create_run(run_id, config.to_json(), tensors, cursor=cursor)
        source = f"checkpoint (epoch {epoch})"
    if cursor + 1 >= plan.total_steps:
        raise RequestError([f"run_id: run {run_id!r} has applied every step already"])
    svc.run_store.mark_status(run_id, "RUNNING")
    svc.run_store.record_progress(run_id, cursor)
    event = event_at(plan, run_id, cursor + 1)
    svc.invoker.invoke_async(event.to_dict())
    return {"run_id": run_id, "status": "RUNNING", "resumed_from_seq": cursor + 1, "source": source}


def _restore_data(svc: services_mod.Services, config: RunConfig, request: dict[str, Any]) -> None:
    raw = load_raw(config.dataset, svc.blob_store.read, allowed_bucket=svc.settings.model_bucket)
    dataset = prepare(raw, request.get("normalize", "auto"), config.dtype)
    if dataset.digest() != config.data_digest:
        raise RequestError([f"dataset: {config.dataset!r} changed since the run was launched; cannot resume"])
    svc.tensor_store.put_data(config.run_id, dataset.arrays())


def cancel(svc: services_mod.Services, run_id: Any) -> dict[str, Any]:
    """Mark the run CANCELLED and remove its cache state; a step still in flight sees the cancel
    mark when it next reads the cache and stops there."""
    run = _checked_run(svc, run_id)
    if run["status"] in ("SUCCEEDED", "CANCELLED"):
        raise RequestError([f"run_id: run {run_id!r} is {run['status']} already"])
    svc.tensor_store.request_cancel(run_id)
    removed = svc.tensor_store.delete_run(run_id)
    svc.run_store.mark_status(run_id, "CANCELLED")
    return {"run_id": run_id, "status": "CANCELLED", "keys_removed": removed}
