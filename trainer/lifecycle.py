"""Resume and cancel: what a user does to a run that failed, stalled, or is no longer wanted."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer import checkpoints, keys, once, runstart, runstop
from trainer import services as services_mod
from trainer.errors import RequestError
from trainer.parallel import launching, worker
from trainer.parallel import step as step_rules
from trainer.parallel.flat import Layout
from trainer.runconfig import RunConfig
from trainer.statemachine import DEFAULT_STALL_AFTER_S, effective_status, event_at
from trainer.stores import reduction_store
from trainer.stores.records import RunItem
from trainer.stores.run_store import CHECKPOINTS, HANDOFF, Handoff, checkpoint_name
from trainer.stores.tensor_store import NO_CURSOR, RedisTensorStore
from trainer.sweep import scheduler
from trainer.vocabulary import RunStatus


def stall_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 365 * 24 * 3600:
        return f"stall_after_s: must be a number of seconds from 0 to {365 * 24 * 3600}, got {value!r}"
    return None


@dataclass
class Rebuild:
    """What a resume puts back in the cache, read and checked before anything is written."""

    source: str
    cursor: int
    tensors: dict[str, np.ndarray] | None = None  # the checkpoint's, when the cache lost the run
    data: dict[str, np.ndarray] | None = None  # the dataset from its source, when the cache lost it


def resume(svc: services_mod.Services, run_id: Any, stall_after_s: float = DEFAULT_STALL_AFTER_S) -> dict[str, Any]:
    """Restart a FAILED or STALLED run from its last applied step (the cache), or from its newest
    epoch checkpoint when the cache lost the run. Everything is read and checked first (nothing
    changes on a refusal); then one conditional move FAILED/STALLED -> RUNNING decides between
    racing resumes and cancels; then the cache is rebuilt and the first event sent. A resume whose
    LaunchLambda died after its move can be sent again: it finds its own hand-off pending and
    completes it (every step of it is idempotent)."""
    if problem := stall_problem(stall_after_s):
        raise RequestError([problem])
    run = runstop.checked_run(svc, run_id)
    config = RunConfig.from_json(run["config"])
    pending = run["status"] == RunStatus.RUNNING and run.get(HANDOFF) == Handoff.RESUME
    status = effective_status(run, stall_after_s)
    if not pending and status not in (RunStatus.FAILED, RunStatus.STALLED):
        raise RequestError([f"run_id: run {run_id!r} is {status}; only FAILED or STALLED runs can resume"])
    if config.workers > 1:  # its state is its workers' (trainer/parallel), not a chain position
        return _resume_workers(svc, config, run, pending, stall_after_s)
    rebuild = _rebuild_of(svc, config, run)
    if rebuild.cursor + 1 >= config.plan.total_steps:
        raise _every_step_applied(run_id)
    _move(svc, run_id, pending, stall_after_s)
    start = _restore(svc, config, rebuild)
    svc.invoker.invoke_async(event_at(config.plan, run_id, start).to_dict())
    _end_handoff(svc, run_id)  # its chain stops at a cancel mark that landed after the move
    return _resumed(run_id, start, rebuild.source)


def _every_step_applied(run_id: str) -> RequestError:
    return RequestError([f"run_id: run {run_id!r} has applied every step already"])


def _move(svc: services_mod.Services, run_id: str, pending: bool, stall_after_s: float) -> RunItem | None:
    """The one conditional move FAILED/STALLED -> RUNNING that decides between racing resumes and
    cancels: the run as moved, or None for a resume sent again whose move was made already (its
    hand-off pending). A move lost to another refuses the resume, with nothing changed."""
    if pending:
        return None
    moved = svc.run_store.resumed(run_id, time.time() - stall_after_s)
    if moved is None:
        now = svc.run_store.get_run(run_id)["status"]
        raise RequestError([f"run_id: run {run_id!r} changed meanwhile (it is {now}); resume refused"])
    return moved


def _put_back(svc: services_mod.Services, config: RunConfig, rebuild: Rebuild) -> None:
    """The rebuild in the cache, the data first (no event finds a position without its data). The
    state goes in only where there is none (another resume of this run, or its retry, may have put
    it there already) and never for a cancelled run."""
    if rebuild.data is not None:
        svc.tensor_store.put_data(config.run_id, rebuild.data)
    if rebuild.tensors is not None:
        svc.tensor_store.create_run(config.run_id, config.to_json(), rebuild.tensors, cursor=rebuild.cursor)


def _end_handoff(svc: services_mod.Services, run_id: str) -> None:
    """The first events are out: the resume's hand-off ends. A cancel that landed after the move
    ended it already; whatever the rebuild wrote after the cancel's clean-up goes too."""
    if not svc.run_store.handed_off(run_id) and svc.run_store.get_run(run_id)["status"] == RunStatus.CANCELLED:
        svc.tensor_store.delete_run(run_id)


def _resumed(run_id: str, seq: int, source: str) -> dict[str, Any]:
    return {"run_id": run_id, "status": RunStatus.RUNNING, "resumed_from_seq": seq, "source": source}


def _resume_workers(
    svc: services_mod.Services, config: RunConfig, run: RunItem, pending: bool, stall_after_s: float
) -> dict[str, Any]:
    """A data-parallel run starts again from its seeded start, with every worker of a new
    generation: the micro-shards back in the cache from the source (checked against the run's data
    digest) when the cache lost them, the initial parameters when the cache lost those, the
    reduction of the generation before cleared (a worker of it still alive writes under its own
    generation's keys, which nobody reads any more), and one event per worker carrying the run's
    resumes. The arithmetic is the launch's, so the run ends bit-identical to its calm twin."""
    store, run_id = svc.tensor_store, config.run_id
    cursor = store.cursor(run_id)
    if cursor not in (NO_CURSOR, -1):  # the finish is committed: its completion needs no resume
        raise _every_step_applied(run_id)
    start = Rebuild("seeded start", -1)  # the cache's part: the workers start from the seeded start
    if not launching.has_data(store, run_id):
        start.data = launching.data_arrays(_dataset_from_source(svc, config, json.loads(run["request"])))
    if cursor != -1 or store.config(run_id) is None:
        start.tensors = _from_seeded_start(config, run).tensors
    key = checkpoints.latest_key(svc.blob_store, run_id)
    saved = _from_checkpoint(svc, config, run, key) if key else None  # its seq: the data-parallel step
    moved = _move(svc, run_id, pending, stall_after_s)
    _put_back(svc, config, start)
    # A resume sent again made its move in an attempt before: it reads the generation the run is in.
    resumes = int(moved.get("resumes", 0)) if moved is not None else svc.run_store.generation(run_id) or 0
    if isinstance(store, RedisTensorStore):  # the workers reduce through the cache's streams
        started = reduction_store.start_generation(store.client, run_id, resumes)
        if started and saved is not None and saved.tensors is not None:
            _restore_reduction(store, config, resumes, saved)
    launching.first_hops(svc, config, resumes)
    _end_handoff(svc, run_id)
    return _resumed(run_id, saved.cursor, saved.source) if saved else _resumed(run_id, -1, start.source)


def _restore_reduction(store: RedisTensorStore, config: RunConfig, resumes: int, saved: Rebuild) -> None:
    """The checkpoint's step as the new generation's newest published step: every owner's chunk
    of the parameters and of the optimizer state, and every epoch's cost up to it. The workers
    rejoin right after it, as a retried worker rejoins, with the same bits."""
    assert saved.tensors is not None
    layout = Layout.of(config.sizes)
    flat = layout.flatten(saved.tensors)
    state = {k: layout.flatten(saved.tensors, prefix=k) for k in step_rules.state_keys(config.optimizer)}
    chunks = [flat[a:b] for a, b in layout.chunks(config.workers)]
    states = worker.packed_states(config.sizes, config.optimizer, config.workers, state, config.dtype)
    reduction = reduction_store.ReductionStore(store.client, config.run_id, config.workers, config.dtype, resumes)
    costs = [float(c) for c in saved.tensors["epoch_costs"]]
    scored = saved.tensors.get("epoch_scores")  # a run that holds examples out: the epochs' before it
    scores = None if scored is None else [(float(c), float(a)) for c, a in scored]
    counted = saved.tensors.get("epoch_hits")  # and every epoch's hits up to it
    hits = None if counted is None else [int(h) for h in counted]
    reduction.restore(saved.cursor, chunks, states, costs, scores, hits)


def _rebuild_of(svc: services_mod.Services, config: RunConfig, run: RunItem) -> Rebuild:
    """The cache's own state when it still has the run's position; else the newest checkpoint,
    checked against the digest recorded when it was written, or the seeded start when the run had
    none yet. The data from its source whenever the
    cache lost it (checked against the run's data digest)."""
    store, run_id = svc.tensor_store, config.run_id
    cursor = store.cursor(run_id)
    if cursor != NO_CURSOR and store.config(run_id) is not None:
        rebuild = Rebuild("cache", cursor)
    else:
        key = checkpoints.latest_key(svc.blob_store, run_id)
        rebuild = _from_checkpoint(svc, config, run, key) if key else _from_seeded_start(config, run)
    if not store.has_data(run_id):
        rebuild.data = _data_from_source(svc, config, json.loads(run["request"]))
    return rebuild


def _from_checkpoint(svc: services_mod.Services, config: RunConfig, run: RunItem, key: str) -> Rebuild:
    recorded = (run.get(CHECKPOINTS) or {}).get(checkpoint_name(checkpoints.epoch_of(key)))
    try:
        seq, epoch, tensors = checkpoints.load(svc.blob_store, key, recorded)
    except checkpoints.CheckpointError as exc:
        raise RequestError([f"run_id: run {config.run_id!r} cannot resume: {exc}"]) from exc
    return Rebuild(f"checkpoint (epoch {epoch})", seq, tensors)


def _from_seeded_start(config: RunConfig, run: RunItem) -> Rebuild:
    """Lost before its first checkpoint: the run starts again from its initial state, which its
    seed draws again bit for bit."""
    return Rebuild("seeded start", -1, runstart.initial_tensors(config, json.loads(run["request"])["init"]))


def _data_from_source(svc: services_mod.Services, config: RunConfig, request: dict[str, Any]) -> dict[str, Any]:
    return _dataset_from_source(svc, config, request).arrays()


def _dataset_from_source(svc: services_mod.Services, config: RunConfig, request: dict[str, Any]) -> Any:
    # The run's own config and request name its source, normalisation and dtype (a trial's are its
    # sweep's base: none of them can be searched); a trial's split is where its sweep stored it.
    split = keys.split_key(config.sweep_id) if config.in_sweep else None
    normalize = request.get("normalize", "auto")
    dataset = runstart.load_data(
        svc, config.dataset, normalize, config.dtype, split, config.validation_fraction, config.seed, config.workers
    )
    if dataset.digest() != config.data_digest:
        raise RequestError([f"dataset: {config.dataset!r} changed since the run was launched; cannot resume"])
    return dataset


def _restore(svc: services_mod.Services, config: RunConfig, rebuild: Rebuild) -> int:
    """Put the rebuild in the cache and return the seq to send."""
    store, run_id = svc.tensor_store, config.run_id
    _put_back(svc, config, rebuild)
    cursor = store.cursor(run_id)
    cursor = rebuild.cursor if cursor == NO_CURSOR else cursor  # cancelled meanwhile: its event stops
    svc.run_store.record_restored_position(run_id, cursor)
    # A position committed but not completed (the run failed after its commit) is completed first:
    # the event at the cursor finds itself behind and does exactly that, then hands on.
    return cursor if store.outbox(run_id, cursor) is not None and not store.done(run_id, cursor) else cursor + 1


def cancel(svc: services_mod.Services, run_id: Any, by_sweep: bool = False) -> dict[str, Any]:
    """A user's cancel of a run (trainer.runstop: one conditional move, the cancel mark, the clean-up,
    the one message). A sweep's trial says nothing itself: cancelled alone, it hands its slot on to
    the next trial (and its sweep counts it); cancelled with its sweep (`by_sweep`), the sweep's one
    message covers it."""
    run = runstop.checked_run(svc, run_id)
    config = RunConfig.from_json(run["config"])
    removed = runstop.cancel(svc, run, message=not config.in_sweep)
    if config.in_sweep and not by_sweep:
        scheduler.trial_ended(svc, config, RunStatus.CANCELLED, secrets.token_hex(8), once.NoDeadline())
    return {"run_id": run_id, "status": RunStatus.CANCELLED, "keys_removed": removed}
