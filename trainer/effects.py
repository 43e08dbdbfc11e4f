"""What a committed chain position leaves visible, done exactly once whoever completes it.

An invocation computes its steps in memory and commits them with an outbox: the epoch items, the
checkpoint, the messages and the successor its steps call for. Nothing of that is visible before
the commit, so a copy that loses the commit race leaves no trace. After the commit, the position
is completed by whichever copy holds its claim (the committer, or a duplicate or retry of any
event at that position when the committer died):

    epoch items -> checkpoint -> PROGRESS messages -> model, SUCCEEDED, summary (finish only)
      -> heartbeat -> the successor's invocation -> done (-> the cache state, after finish)

Every step is idempotent (the same items, bytes and values, taken from the outbox) or guarded
once-only (messages), so a completion that crashes half way is simply done again. Only one
claimant completes a position at a time, and the chain moves past a position only after it is
done: a copy that finds the cursor moved knows every effect of the positions behind it is there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer import checkpoints, engine, keys, model_file, once, warm
from trainer.logs import get_logger
from trainer.runconfig import RunConfig
from trainer.sweep import scheduler
from trainer.vocabulary import Claim, Notice, RungDecision, RunStatus

if TYPE_CHECKING:
    from trainer.services import Services

logger = get_logger("lnn-effects")


@dataclass(frozen=True)
class Outbox:
    """The effects of the steps committed up to `seq`, stored with that commit."""

    seq: int
    epochs: list[dict[str, Any]] = field(default_factory=list)
    checkpoint_epoch: int | None = None  # the committed state closes this epoch: save it
    metrics: dict[str, Any] | None = None  # set when `seq` is the finish step
    successor: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Outbox:
        return cls(**json.loads(text))


TensorSource = Callable[[list[str]], dict[str, np.ndarray]]


def complete(
    svc: Services, config: RunConfig, outbox: Outbox, tensors: TensorSource, token: str, deadline: once.Deadline
) -> Claim:
    """Make the effects of committed position `outbox.seq` visible and hand the chain on, once.
    DONE: another copy completed it; ACQUIRED: this one did."""
    run_id, seq = config.run_id, outbox.seq
    lease = once.StepLease(svc.tensor_store, run_id, seq)
    what = f"the completion of step {seq} of run {run_id}"
    work = lambda: _complete_position(svc, config, outbox, tensors, token, deadline)  # noqa: E731
    answer, ended = once.run_once(lease, token, svc.settings.handoff_claim_ttl_s, deadline, what, work)
    if ended:
        svc.tensor_store.delete_run(run_id)  # only now: a retry of the finish still needs the weights
    return answer


def _complete_position(
    svc: Services, config: RunConfig, outbox: Outbox, tensors: TensorSource, token: str, deadline: once.Deadline
) -> bool:
    """Every effect of the position, in order; True when the run ended with it (finished or stopped)."""
    _record_history(svc, config, outbox, tensors)
    _notify_progress(svc, config, outbox, token, deadline)
    stopped = judged_to_stop(svc, config, outbox.epochs) is not None
    if outbox.metrics is not None:
        _finish(svc, config, outbox.metrics, tensors, token, deadline)
    elif stopped:
        stop_trial(svc, config, outbox.epochs[-1], token, deadline)
    else:
        svc.run_store.record_progress(config.run_id, outbox.seq)
    if outbox.successor is not None and not stopped:
        svc.invoker.invoke_async(outbox.successor)
    return outbox.metrics is not None or stopped


def _record_history(svc: Services, config: RunConfig, outbox: Outbox, tensors: TensorSource) -> None:
    if outbox.epochs:
        svc.run_store.put_epochs(config.run_id, outbox.epochs)
    if outbox.checkpoint_epoch is not None:
        # The epoch's cost too: a resume from the last epoch's checkpoint goes straight to the finish.
        names = [*engine.param_names(config), "cost"]
        epoch = outbox.checkpoint_epoch
        sha256 = checkpoints.save(svc.blob_store, config.run_id, epoch, outbox.seq, tensors(names))
        svc.run_store.record_checkpoint(config.run_id, epoch, sha256)


def _notify_progress(svc: Services, config: RunConfig, outbox: Outbox, token: str, deadline: once.Deadline) -> None:
    if not config.notify_every:
        return
    for item in outbox.epochs:
        if (item["epoch"] + 1) % config.notify_every == 0:
            once.publish_once(svc, Notice.PROGRESS, config.run_id, f"epoch-{item['epoch']}", item, token, deadline)


def judged_to_stop(svc: Services, config: RunConfig, epochs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A sweep's trial that closed a rung's epoch (among the items of `epochs`) goes on only if
    its scheduler says so (the decision once, then followed: a data-parallel trial's workers each
    ask, trainer.handlers.worker). The item of the rung judged STOP; None: the trial goes on."""
    for item in epochs:
        if config.closes_rung(item["epoch"]) and scheduler.at_rung(svc, config, item) is RungDecision.STOP:
            return item
    return None


def stop_trial(svc: Services, config: RunConfig, last: dict[str, Any], token: str, deadline: once.Deadline) -> bool:
    """The trial STOPPED with the figures of its last epoch's item (`last`), and its slot handed on
    (once, whoever else does this too). False, and nothing handed on, when the run ended otherwise
    meanwhile (a cancel, a finish): that end hands the slot on with its own state."""
    figures = {"validation_accuracy": last["validation_accuracy"], "epochs_run": last["epoch"] + 1}
    marked = svc.run_store.mark_stopped(config.run_id, figures) is not None
    if not marked and svc.run_store.get_run(config.run_id)["status"] != RunStatus.STOPPED:
        return False
    scheduler.trial_ended(svc, config, RunStatus.STOPPED, token, deadline)
    return True


def _finish(
    svc: Services,
    config: RunConfig,
    figures: dict[str, Any],
    tensors: TensorSource,
    token: str,
    deadline: once.Deadline,
) -> None:
    """The model first, so that a run read as SUCCEEDED has its model in place; then the move to
    SUCCEEDED, and the summary only if it won. A cancel that got there first takes the model
    back out, so a cancelled run has no model and no SUCCEEDED message. (A retry of this
    completion writes the same model again and finds SUCCEEDED, which is its own move.)"""
    params = tensors(engine.weight_names(config))
    shift, scale = warm.normalisation(svc, config)
    key = keys.model_key(config.run_id)
    svc.blob_store.put(key, model_file.dumps(config, params, shift, scale))
    metrics = {**figures, "model_uri": f"s3://{svc.blob_store.bucket}/{key}"}
    if svc.run_store.mark_succeeded(config.run_id, metrics) is None:
        logger.info("finish refused: the run ended otherwise first", extra={"run_id": config.run_id})
        svc.blob_store.delete(key)
        return
    if config.in_sweep:
        scheduler.trial_ended(svc, config, RunStatus.SUCCEEDED, token, deadline)  # its sweep speaks for it
    else:
        once.publish_once(svc, Notice.SUCCEEDED, config.run_id, "run", metrics, token, deadline)


def finish_metrics(svc: Services, config: RunConfig, ws: engine.WorkingSet, data: engine.TrainData) -> dict[str, Any]:
    """The run's final figures, computed once by the copy that commits the finish step."""
    params = {n: ws[n] for n in engine.weight_names(config)}
    run = svc.run_store.get_run(config.run_id)
    now = time.time()
    return {
        "final_cost": float(ws["cost"][0]),
        "train_accuracy": engine.accuracy(config, params, data.x_train, data.y_train),
        "test_accuracy": engine.accuracy(config, params, data.x_test, data.y_test),
        "duration_s": round(now - float(run["created_at"]), 3),
        "finished_at": now,
        "epochs": config.epochs,
        **({"validation_accuracy": engine.accuracy(config, params, *data.validation())} if config.validates else {}),
    }
