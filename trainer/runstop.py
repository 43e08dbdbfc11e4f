"""A run's stop, at the run's own level: the one conditional move to CANCELLED, the cancel mark, the
cache state's removal and the CANCELLED message. It knows nothing of sweeps: a user's cancel
(trainer.lifecycle) and a sweep's scheduler (trainer.sweep.scheduler) both stop runs through it, and
each decides for itself what a trial's stop means for its sweep.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from trainer import once
from trainer import request as request_mod
from trainer.errors import RequestError
from trainer.runconfig import RunConfig
from trainer.stores.records import RunItem
from trainer.vocabulary import Notice, RunStatus

if TYPE_CHECKING:
    from trainer.services import Services


def checked_run(svc: Services, run_id: Any) -> RunItem:
    """The run's item, for a run id that passed the id's check (RunNotFound if there is none)."""
    if problem := request_mod.id_problem(run_id, request_mod.RUN_ID_LONGEST):
        raise RequestError([f"run_id: {problem}"])
    return svc.run_store.get_run(run_id)


def cancel(svc: Services, run: RunItem, message: bool) -> int:
    """RUNNING or FAILED -> CANCELLED in one conditional move (a finish or a stop that got there
    first wins, and the cancel is refused with RequestError), then the cancel mark (from then on no
    commit and no resume's rebuild is accepted, so nothing in flight brings state back), the cache
    state's removal, and, with `message`, the one CANCELLED message. A cancel sent again after its
    caller died completes the same clean-up and message, and is refused as CANCELLED already.
    The cache keys removed."""
    run_id = run["run_id"]
    if svc.run_store.mark_cancelled(run_id) is None:
        now = svc.run_store.get_run(run_id)
        if now["status"] == RunStatus.CANCELLED and message:
            stop_chain(svc, now, message)
        raise RequestError([f"run_id: run {run_id!r} is {now['status']} already"])
    return stop_chain(svc, run, message)


def stop_chain(svc: Services, run: RunItem, message: bool) -> int:
    run_id = run["run_id"]
    svc.tensor_store.request_cancel(run_id, workers=RunConfig.from_json(run["config"]).workers > 1)
    removed = svc.tensor_store.delete_run(run_id)
    if message:
        body = {"epochs_done": epochs_done(run)}
        once.publish_once(svc, Notice.CANCELLED, run_id, "run", body, secrets.token_hex(8), once.NoDeadline())
    return removed


def epochs_done(run: RunItem) -> int:
    config = RunConfig.from_json(run["config"])
    return max(0, int(run.get("last_seq", -1)) + 1) // config.plan.steps_per_epoch
