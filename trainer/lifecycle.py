"""Resume and cancel: what a user does to a run that failed, stalled, or is no longer wanted."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from trainer import checkpoints, effects, runstart
from trainer import request as request_mod
from trainer import services as services_mod
from trainer.errors import RequestError
from trainer.runconfig import RunConfig
from trainer.statemachine import event_at
from trainer.stores.tensor_store import NO_CURSOR
from trainer.sweep import scheduler
from trainer.vocabulary import Notice, RunStatus

# Twice the longest a fused invocation can run (the 900 s Lambda limit) between two heartbeats.
DEFAULT_STALL_AFTER_S = 1800.0


def effective_status(
    run: dict[str, Any], stall_after_s: float = DEFAULT_STALL_AFTER_S, now: float | None = None
) -> RunStatus:
    """RUNNING with no step for `stall_after_s` seconds is STALLED."""
    now = time.time() if now is None else now
    if run.get("status") == RunStatus.RUNNING and now - float(run.get("last_step_at", now)) > stall_after_s:
        return RunStatus.STALLED
    return RunStatus(run.get("status"))


def _checked_run(svc: services_mod.Services, run_id: Any) -> dict[str, Any]:
    if problem := request_mod.id_problem(run_id, request_mod.RUN_ID_LONGEST):
        raise RequestError([f"run_id: {problem}"])
    return svc.run_store.get_run(run_id)


def resume(svc: services_mod.Services, run_id: Any, stall_after_s: float = DEFAULT_STALL_AFTER_S) -> dict[str, Any]:
    """Restart a FAILED or STALLED run from its last applied step (the cache), or from its newest
    epoch checkpoint when the cache lost the run."""
    run = _checked_run(svc, run_id)
    status = effective_status(run, stall_after_s)
    if status not in (RunStatus.FAILED, RunStatus.STALLED):
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
    svc.run_store.resumed(run_id)
    svc.run_store.record_progress(run_id, cursor)
    # A position committed but not completed (the run failed after its commit) is completed first:
    # the event at the cursor finds itself behind and does exactly that, then hands on.
    start = cursor if store.outbox(run_id, cursor) is not None and not store.done(run_id, cursor) else cursor + 1
    svc.invoker.invoke_async(event_at(plan, run_id, start).to_dict())
    return {"run_id": run_id, "status": RunStatus.RUNNING, "resumed_from_seq": start, "source": source}


def _restore_data(svc: services_mod.Services, config: RunConfig, request: dict[str, Any]) -> None:
    # The run's own config and request name its source, normalisation and dtype (a trial's are its
    # sweep's base: none of them can be searched); a trial's split is where its sweep stored it.
    split = scheduler.split_key(config.sweep_id) if config.in_sweep else None
    dataset = runstart.load_data(svc, config.dataset, request.get("normalize", "auto"), config.dtype, split)
    if dataset.digest() != config.data_digest:
        raise RequestError([f"dataset: {config.dataset!r} changed since the run was launched; cannot resume"])
    svc.tensor_store.put_data(config.run_id, dataset.arrays())


def cancel(svc: services_mod.Services, run_id: Any, by_sweep: bool = False) -> dict[str, Any]:
    """Mark the run CANCELLED, remove its cache state and say so once. The cancel mark comes first:
    from then on no commit is accepted, so no step still in flight can bring state back. A sweep's
    trial says nothing itself: cancelled alone, it hands its slot on to the next trial (and its
    sweep counts it); cancelled with its sweep (`by_sweep`), the sweep's one message covers it."""
    run = _checked_run(svc, run_id)
    if run["status"] in (RunStatus.SUCCEEDED, RunStatus.CANCELLED, RunStatus.STOPPED):
        raise RequestError([f"run_id: run {run_id!r} is {run['status']} already"])
    svc.tensor_store.request_cancel(run_id)
    removed = svc.tensor_store.delete_run(run_id)
    svc.run_store.mark_status(run_id, RunStatus.CANCELLED)
    config = RunConfig.from_json(run["config"])
    token = secrets.token_hex(8)
    if config.in_sweep and not by_sweep:
        scheduler.trial_ended(svc, config, RunStatus.CANCELLED, token, effects.NoDeadline())
    elif not config.in_sweep:
        body = {"epochs_done": _epochs_done(svc, run)}
        effects.publish_once(svc, Notice.CANCELLED, run_id, "run", body, token, effects.NoDeadline())
    return {"run_id": run_id, "status": RunStatus.CANCELLED, "keys_removed": removed}


def _epochs_done(svc: services_mod.Services, run: dict[str, Any]) -> int:
    config = RunConfig.from_json(run["config"])
    return max(0, int(run.get("last_seq", -1)) + 1) // config.plan.steps_per_epoch
