"""Sweeps: many trials of one network, run side by side, judged on held-out examples, ranked.

The life of a sweep:
    launch   -> every trial checked, the validation split stored, the sweep and its trials
                recorded, the first `max_concurrency` trials started (LaunchLambda)
    a trial at a rung (early stopping)   -> goes on, or STOPPED (`at_rung`)
    a trial ends (SUCCEEDED, STOPPED, FAILED, CANCELLED) -> its slot goes to the next trial
                (`trial_ended`): the successor is decided once and the scheduler's event
                "start trial k of sweep S" is sent to the TrainerLambda
    that event   -> trial k started in an invocation of its own (`start_from_event`): its data
                read and its state written with that invocation's time and memory
    the last trial ends  -> the best model copied, the sweep ENDED, one summary

A trial's end runs inside its completion (trainer.effects), which a crashed copy's retry does
again, and which duplicates may do concurrently. So every decision is written once and followed
by whoever comes later: the slot's successor and the counts in one conditional transaction, each
rung decision in one conditional put, a trial's start made idempotent (its state, its record and
its first event are each created at most once, and a first event sent twice is a duplicate the
trainer already ignores). A start event sent twice starts its trial once; one the scheduler did
not send (no such trial, or one not given a slot) is refused and changes nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer import keys, once, runstart, runstop, schema
from trainer import request as request_mod
from trainer.data.loader import Dataset, DatasetError
from trainer.errors import EventError, RequestError, RunNotFound
from trainer.logs import get_logger
from trainer.parallel import launching
from trainer.runconfig import RunConfig
from trainer.statemachine import effective_status
from trainer.stores.records import SweepItem
from trainer.stores.sweep_store import NO_SUCCESSOR, request_of
from trainer.sweep import asha, space
from trainer.sweep.checks import same_sweep, trial_run_id, validate
from trainer.vocabulary import Notice, RungDecision, RunStatus, SweepStatus

if TYPE_CHECKING:
    from trainer.ports import RunStore
    from trainer.services import Services

logger = get_logger("lnn-sweep")

START_THREADS = 16
NOT_STARTED = "NOT_STARTED"  # a cancelled sweep's trial that never started


# -- launch -----------------------------------------------------------------------------------------
def launch(payload: Any, svc: Services) -> dict[str, Any]:
    """LaunchLambda's {"action": "sweep", ...}. Sent again with the same sweep_id, it starts nothing
    twice and answers the same."""
    checked = validate(payload, svc)
    sweep = checked.sweep
    sweep_id = sweep.sweep_id or time.strftime("sw-%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
    values = {
        "request": json.dumps(schema.to_json(sweep), sort_keys=True),
        "trials": len(checked.trials),
        "max_concurrency": sweep.max_concurrency,
        "metric": sweep.metric,
        "data_digest": checked.dataset.digest(),
        "split_key": keys.split_key(sweep_id),
        "training_examples": checked.dataset.examples,
        "validation_examples": len(checked.indices),
    }
    # The sweep's item first, conditionally: of two launches with one sweep_id only the first
    # writes anything; the same sweep sent again completes what a crashed launch left out.
    if not svc.run_store.create_sweep(sweep_id, values) and not same_sweep(svc.run_store.get_sweep(sweep_id), sweep):
        raise RequestError([f"sweep_id: a different sweep {sweep_id!r} already exists"], "sweep request")
    buffer = io.BytesIO()
    np.savez(buffer, validation=checked.indices)
    svc.blob_store.put(keys.split_key(sweep_id), buffer.getvalue())
    trials = [
        {
            "trial": t["trial"],
            "run_id": trial_run_id(sweep_id, t["trial"]),
            "params": json.dumps(t["params"]),
            "request": json.dumps(t["request"], sort_keys=True),
        }
        for t in checked.trials
    ]
    svc.run_store.put_trials(sweep_id, trials)
    first = svc.run_store.claim_start(sweep_id, min(sweep.max_concurrency, len(trials)))
    stored = svc.run_store.get_sweep(sweep_id)
    # The starts are I/O (the cache, the table, the Lambda API): side by side, they take about as
    # long as one, so the first trials begin together as the sweep's wall time assumes.
    with ThreadPoolExecutor(max_workers=min(len(first), START_THREADS) or 1) as pool:
        starts = [pool.submit(_start_or_skip, svc, stored, n, checked.dataset, trials[n]["request"]) for n in first]
        for started in starts:
            started.result()
    logger.info("sweep launched", extra={"sweep_id": sweep_id, "trials": len(trials)})
    return {
        "sweep_id": sweep_id,
        "status": stored["status"],
        "trials": len(trials),
        "max_concurrency": sweep.max_concurrency,
        "started": [trial_run_id(sweep_id, n) for n in first],
        "training_examples": checked.dataset.examples,
        "validation_examples": len(checked.indices),
    }


def trial_dataset(svc: Services, sweep: SweepItem) -> Dataset:
    """The sweep's training data with its stored validation split, as every trial has it."""
    base = request_of(sweep)["base"]
    normalize, dtype = base.get("normalize", "auto"), base.get("dtype", "float64")
    dataset = runstart.load_data(svc, base["dataset"], normalize, dtype, sweep["split_key"])
    if dataset.digest() != sweep["data_digest"]:
        raise DatasetError(f"dataset {base['dataset']!r} changed since the sweep was launched")
    return dataset


def start_trial(
    svc: Services, sweep: SweepItem, number: int, dataset: Dataset | None = None, request_json: str | None = None
) -> None:
    """Start trial `number` once: however often this is called, one state, one record, one chain
    (or one set of workers, for a data-parallel trial)."""
    sweep_id = sweep["sweep_id"]
    run_id = trial_run_id(sweep_id, number)
    if svc.run_store.exists(run_id):
        run = svc.run_store.get_run(run_id)
        if RunConfig.from_json(run["config"]).sweep_id != sweep_id:
            raise RequestError([f"run {run_id!r} exists and is not trial {number} of sweep {sweep_id!r}"])
        if run["status"] == RunStatus.RUNNING and int(run["last_seq"]) < 0:
            # An earlier start may have died before this; a repeat is a duplicate (of a chain's first
            # event, or of every worker's, which the workers read as copies of one another).
            _first_events(svc, RunConfig.from_json(run["config"]))
            svc.run_store.handed_off(run_id)
        _cancel_if_swept_away(svc, sweep_id, run_id)
        return
    if sweep["status"] != SweepStatus.RUNNING:
        return
    trial = json.loads(request_json or svc.run_store.get_trial(sweep_id, number)["request"])
    request, problems = request_mod.parse(trial)
    if request is None:  # checked at launch; only a changed item could fail here
        raise RequestError(problems)
    dataset = dataset or trial_dataset(svc, sweep)
    stopping = _early_stopping(sweep, request)
    config = runstart.config_for(request, dataset, run_id, sweep_id=sweep_id, trial=number, **stopping)
    (launching.put_state if config.workers > 1 else runstart.put_state)(svc, request, dataset, config)
    try:
        runstart.record(svc, request, config)
    except Exception as exc:
        if not svc.run_store.exists(run_id):
            raise
        logger.info("trial recorded already", extra={"run_id": run_id, "error": type(exc).__name__})
    _first_events(svc, config)
    svc.run_store.handed_off(run_id)  # from here on only the trial's own steps may fail it
    _cancel_if_swept_away(svc, sweep_id, run_id)


def _first_events(svc: Services, config: RunConfig) -> None:
    """A trial starts as a run of its request starts: one chain, or one event per worker
    (`"workers": N`), whose finish completes as the chain's does and so ends the trial."""
    if config.workers > 1:
        launching.first_hops(svc, config)
    else:
        runstart.first_hop(svc, config.run_id)


def _cancel_if_swept_away(svc: Services, sweep_id: str, run_id: str) -> None:
    """A trial that started while its sweep was being cancelled: the cancel may have listed the
    trials before this one existed, so the trial cancels itself."""
    if svc.run_store.get_sweep(sweep_id)["status"] != SweepStatus.CANCELLED:
        return
    with contextlib.suppress(RequestError):  # cancelled (or ended) already
        runstop.cancel(svc, svc.run_store.get_run(run_id), message=False)


def _start_or_skip(
    svc: Services, sweep: SweepItem, number: int, dataset: Dataset | None = None, request_json: str | None = None
) -> None:
    """Start trial `number`; one that can never start (its data changed, its run id is taken) is
    recorded as FAILED with the reason, and its slot goes straight on to the next trial."""
    sweep_id = sweep["sweep_id"]
    while number != NO_SUCCESSOR:
        try:
            start_trial(svc, sweep, number, dataset, request_json)
            return
        except (DatasetError, RequestError) as exc:
            logger.warning("trial cannot start", extra={"sweep_id": sweep_id, "trial": number, "error": str(exc)})
            svc.run_store.note_trial_error(sweep_id, number, f"{type(exc).__name__}: {exc}")
            number, request_json = svc.run_store.assign_successor(sweep_id, number, RunStatus.FAILED), None


def _early_stopping(sweep: SweepItem, request: request_mod.TrainingRequest) -> dict[str, Any]:
    """The trial's rungs and the reduction factor it is judged by there, for its RunConfig (none
    without early stopping): both fixed when it starts, so no rung has to read the sweep again."""
    stopping = request_of(sweep).get("early_stopping")
    if not stopping:
        return {}
    factor = stopping["asha"]["reduction_factor"]
    return {"rungs": asha.rungs(stopping["asha"]["min_epochs"], factor, request.epochs), "reduction_factor": factor}


# -- during and after a trial (from its completion) ---------------------------------------------
def at_rung(svc: Services, config: RunConfig, item: dict[str, Any]) -> RungDecision:
    """The scheduler's decision on a trial that closed a rung's epoch: taken once, then followed."""
    factor = config.reduction_factor or _stored_factor(svc, config.sweep_id)
    rung, value = item["epoch"] + 1, float(item["validation_accuracy"])
    others = [
        float(entry["value"])
        for entry in svc.run_store.rung_entries(config.sweep_id, rung)
        if entry["trial"] != config.trial
    ]
    decision = svc.run_store.record_rung(config.sweep_id, rung, config.trial, value, asha.decide(value, others, factor))
    logger.info("rung", extra={"run_id": config.run_id, "rung": rung, "value": value, "decision": str(decision)})
    return decision


def _stored_factor(svc: Services, sweep_id: str) -> int:
    """The reduction factor of a trial whose config predates RunConfig.reduction_factor: its sweep's."""
    return request_of(svc.run_store.get_sweep(sweep_id))["early_stopping"]["asha"]["reduction_factor"]


def trial_ended(svc: Services, config: RunConfig, state: RunStatus, token: str, deadline: once.Deadline) -> None:
    """The trial's slot is free: its successor decided once, and a scheduler event sent to start it
    (the start, which reads the successor's data and writes its state, is that event's own
    invocation, not this completion's); the sweep's end when this was the last."""
    successor = svc.run_store.assign_successor(config.sweep_id, config.trial, state)
    if successor != NO_SUCCESSOR:
        svc.invoker.invoke_async(start_event(config.sweep_id, successor))
    end_if_done(svc, config.sweep_id, token, deadline)


# -- the scheduler's event: "start trial k of sweep S" ---------------------------------------------
START_TRIAL = "start_trial"
START_EVENT_KEYS = ("action", "sweep_id", "trial", "run_id")


def start_event(sweep_id: str, trial: int) -> dict[str, Any]:
    """The event that starts trial `trial` in the slot another trial freed. Sent by whoever holds
    the ended trial's claim, so it may come twice; a start is idempotent."""
    return {"action": START_TRIAL, "sweep_id": sweep_id, "trial": trial, "run_id": trial_run_id(sweep_id, trial)}


def is_start_event(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("action") == START_TRIAL


def start_from_event(svc: Services, payload: Any, token: str, deadline: once.Deadline) -> dict[str, Any]:
    """Start the trial a scheduler event names, if the sweep gave it a slot and it has not ended;
    EventError for an event the scheduler did not send (malformed, or naming a trial with no slot),
    and nothing changes. A late copy of an event whose trial has ended does nothing."""
    sweep_id, number = _start_target(payload)
    try:
        sweep = svc.run_store.get_sweep(sweep_id)
        trial = svc.run_store.get_trial(sweep_id, number)
    except RunNotFound as exc:
        raise EventError(f"invalid scheduler event: {exc}") from exc
    if number >= int(sweep["next_trial"]):
        raise EventError(f"invalid scheduler event: trial {number} of sweep {sweep_id!r} has not been given a slot")
    answer = {"sweep_id": sweep_id, "trial": number, "run_id": trial_run_id(sweep_id, number)}
    if "successor" in trial:  # it ended (or could never start) and handed its slot on already
        return {**answer, "outcome": "ENDED"}
    _start_or_skip(svc, sweep, number)
    end_if_done(svc, sweep_id, token, deadline)  # when this trial and the rest could not start
    return {**answer, "outcome": "STARTED"}


def _start_target(payload: Any) -> tuple[str, int]:
    """(sweep_id, trial) of a well-formed start event, or EventError naming every problem."""
    problems = [f"{k}: missing" for k in START_EVENT_KEYS if k not in payload]
    problems += [f"{k}: unknown field" for k in payload if k not in START_EVENT_KEYS]
    sweep_id, number = payload.get("sweep_id"), payload.get("trial")
    if "sweep_id" in payload and (problem := request_mod.id_problem(sweep_id, space.SWEEP_ID_LONGEST)):
        problems.append(f"sweep_id: {problem}")
    if "trial" in payload and (isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 10**6):
        problems.append("trial: must be a trial's number")
    if not problems and payload.get("run_id") != trial_run_id(sweep_id, number):
        problems.append(f"run_id: must be trial {number}'s run id, {trial_run_id(sweep_id, number)!r}")
    if problems:
        raise EventError("invalid scheduler event: " + "; ".join(problems))
    return sweep_id, number


def end_if_done(svc: Services, sweep_id: str, token: str, deadline: once.Deadline) -> dict[str, Any] | None:
    """When every trial has ended: the best model copied, the sweep ENDED, its one summary sent."""
    sweep = svc.run_store.get_sweep(sweep_id)
    if int(sweep["ended"]) < int(sweep["trials"]) or sweep["status"] == SweepStatus.CANCELLED:
        return None
    rows = leaderboard(svc, sweep_id)
    best = next((r for r in rows if r["state"] == RunStatus.SUCCEEDED), None)
    summary: dict[str, Any] = {
        "sweep_id": sweep_id,
        "trials": len(rows),
        "by_state": _by_state(rows),
        "compute_s": round(sum(r["compute_s"] for r in rows), 3),
        "epochs_run": sum(r["epochs_run"] for r in rows),
    }
    if best is not None:
        model = svc.blob_store.get(keys.model_key(best["run_id"]))
        summary |= {
            "best_trial": best["trial"],
            "best_run_id": best["run_id"],
            "best_params": best["params"],
            "best_validation_accuracy": best["validation_accuracy"],
            "best_test_accuracy": best["test_accuracy"],
            "best_model_uri": svc.blob_store.put(keys.best_model_key(sweep_id), model),
        }
    if sweep["status"] == SweepStatus.RUNNING:
        svc.run_store.update_sweep(sweep_id, SweepStatus.ENDED, {"summary": json.dumps(summary, sort_keys=True)})
    # What was stored is what is said: of two copies ending the sweep at once, one summary wins.
    stored = svc.run_store.get_sweep(sweep_id)
    if stored["status"] != SweepStatus.ENDED:
        return None  # cancelled meanwhile: its own message says so
    summary = json.loads(stored["summary"])
    once.publish_once(svc, Notice.SWEEP_ENDED, sweep_id, "sweep", summary, token, deadline)
    return summary


def _by_state(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["state"])] = counts.get(str(row["state"]), 0) + 1
    return counts


@dataclass(frozen=True)
class Stores:
    """The run store alone: what reading a sweep needs (the CLI reads one without the other adapters)."""

    run_store: RunStore


if TYPE_CHECKING:
    Reader = Stores | Services  # reading a sweep needs only the run store


# -- reading a sweep ----------------------------------------------------------------------------
def leaderboard(svc: Reader, sweep_id: str) -> list[dict[str, Any]]:
    """Every trial, best first by validation accuracy (trials not started last): rank, trial,
    parameters, validation accuracy, epochs run, state, time; test accuracy for the report only."""
    rows = []
    for item in svc.run_store.sweep_trials(sweep_id):
        row = {
            "trial": item["trial"],
            "run_id": item["run_id"],
            "params": json.loads(item["params"]),
            "state": "PENDING",
            "validation_accuracy": None,
            "test_accuracy": None,
            "epochs_run": 0,
            "compute_s": 0.0,
            "time_s": None,
        }
        if item.get("start_error"):
            row |= {"state": RunStatus.FAILED, "failure_reason": item["start_error"]}
        try:
            run = svc.run_store.get_run(item["run_id"])
        except RunNotFound:
            rows.append(row)
            continue
        epochs = sorted(svc.run_store.epochs(item["run_id"]), key=lambda e: e["epoch"])
        row["state"] = effective_status(run)
        row["epochs_run"] = len(epochs)
        row["compute_s"] = round(sum(float(e.get("duration_s") or 0.0) for e in epochs), 3)
        row["curve"] = [e.get("validation_accuracy") for e in epochs]
        last = epochs[-1].get("validation_accuracy") if epochs else None
        row["validation_accuracy"] = run.get("validation_accuracy", last)
        row["test_accuracy"] = run.get("test_accuracy")
        row["time_s"] = round(float(run.get("updated_at", 0)) - float(run.get("created_at", 0)), 3)
        rows.append(row)
    rows.sort(key=lambda r: (r["validation_accuracy"] is None, -(r["validation_accuracy"] or 0.0), r["trial"]))
    ranked = [r for r in rows if r["state"] != "PENDING"]
    waiting = [r for r in rows if r["state"] == "PENDING"]
    for rank, row in enumerate(ranked, 1):
        row["rank"] = rank
    for row in waiting:  # a trial that never started has no place in the ranking
        row["rank"] = None
    return ranked + waiting


def status(svc: Reader, sweep_id: str) -> dict[str, Any]:
    sweep = svc.run_store.get_sweep(sweep_id)
    rows = leaderboard(svc, sweep_id)
    out = {k: sweep.get(k) for k in ("sweep_id", "status", "trials", "max_concurrency", "metric", "ended")}
    if sweep.get("status") == SweepStatus.CANCELLED:
        for row in rows:  # they will not start now: say so, instead of "pending"
            if row["state"] == "PENDING":
                row["state"] = NOT_STARTED
    out["by_state"] = _by_state(rows)
    out["leaderboard"] = rows
    if sweep.get("summary"):
        out["summary"] = json.loads(sweep["summary"])
    return out


# -- cancel -----------------------------------------------------------------------------------------
def cancel(svc: Services, sweep_id: Any) -> dict[str, Any]:
    """Stop a sweep: no trial starts any more, the running ones are cancelled, one message says so.
    The sweep is marked first, so a trial starting concurrently sees the mark and cancels itself."""
    if problem := request_mod.id_problem(sweep_id, space.SWEEP_ID_LONGEST):
        raise RequestError([f"sweep_id: {problem}"])
    try:
        sweep = svc.run_store.get_sweep(sweep_id)
    except RunNotFound as exc:
        raise RequestError([f"sweep_id: {exc}"]) from exc
    if sweep["status"] == SweepStatus.ENDED or (
        sweep["status"] == SweepStatus.RUNNING
        and not svc.run_store.update_sweep(sweep_id, SweepStatus.CANCELLED, {})
        and svc.run_store.get_sweep(sweep_id)["status"] == SweepStatus.ENDED
    ):
        raise RequestError([f"sweep_id: sweep {sweep_id!r} has ended already"])
    # Sent again (a retry, or after a crash half way), the cancel goes over the trials again.
    cancelled = []
    for item in svc.run_store.sweep_trials(sweep_id):
        try:
            run = svc.run_store.get_run(item["run_id"])
            if run["status"] in (RunStatus.RUNNING, RunStatus.FAILED):
                runstop.cancel(svc, run, message=False)
                cancelled.append(item["run_id"])
        except (RunNotFound, RequestError):
            continue  # never started, or it ended meanwhile
    body = {"sweep_id": sweep_id, "trials_cancelled": cancelled}
    token = secrets.token_hex(8)
    once.publish_once(svc, Notice.SWEEP_CANCELLED, sweep_id, "sweep", body, token, once.NoDeadline())
    return {"sweep_id": sweep_id, "status": SweepStatus.CANCELLED, "trials_cancelled": cancelled}
