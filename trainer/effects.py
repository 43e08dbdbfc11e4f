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
from typing import Any, Protocol

import numpy as np

from trainer import checkpoints, engine, model_file, notifier, warm
from trainer.logs import get_logger
from trainer.runconfig import RunConfig
from trainer.sweep import scheduler
from trainer.vocabulary import Claim, Notice, RungDecision, RunStatus

logger = get_logger("lnn-effects")

_POLL_S = 0.05


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


class Deadline(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class NoDeadline:
    """For callers without a Lambda deadline (a resume or cancel from the CLI, the tests)."""

    def get_remaining_time_in_millis(self) -> int:
        return 15 * 60 * 1000


TensorSource = Callable[[list[str]], dict[str, np.ndarray]]


class CompletionBusy(RuntimeError):
    """Another copy holds a completion claim and this invocation's time ran out waiting for it.
    Not the run's failure: raised so that Lambda's retry comes back for it (on AWS the retry's
    delay, a minute and more, outlasts the lease of a holder that died)."""


def await_claim(
    claim: Callable[[], Claim], lease_s: float, deadline: Deadline, what: str, margin_ms: int = 1000
) -> Claim:
    """Claim, waiting out another claimant's lease (it finishes, or it died and its lease ends);
    CompletionBusy when this invocation's own time runs out first."""
    give_up = time.monotonic() + 2 * lease_s + 1  # a lease ends after lease_s; the rest is slack
    while True:
        answer = claim()
        if answer is not Claim.BUSY:
            return answer
        if time.monotonic() > give_up or deadline.get_remaining_time_in_millis() < margin_ms:
            raise CompletionBusy(f"{what} is held by another copy")
        time.sleep(_POLL_S)


# A message's claim lasts this many of the longest publish attempts: the publish starts right after
# the claim, so only a holder stopped for most of its lease between its fence and SNS can overlap
# the copy that takes the claim over.
NOTICE_LEASE_ATTEMPTS = 4


def notice_lease_s(settings: Any) -> float:
    """A message's claim: the hand-off's lease, but far longer than a publish attempt."""
    return max(float(settings.handoff_claim_ttl_s), NOTICE_LEASE_ATTEMPTS * notifier.ATTEMPT_BOUND_S)


def publish_once(
    svc: Any, kind: Notice, run_id: str, key: str, body: dict[str, Any], token: str, deadline: Deadline
) -> bool:
    """Publish message (kind, key) unless it was published already; True if this call published.
    The claim is a lease another copy takes over once it ends, so every SDK attempt is fenced: just
    before its request goes out, it must end before the claim does (the local clock), and the
    claim must still be this copy's in the run store with at least one attempt's time left, which
    counts the attempt there as a send. What can still repeat a message: a holder that vanished
    after a fence and before its 'sent' mark (a crash, an attempt that timed out after SNS had the
    message, or a stop longer than the rest of its lease); the notice item's `sends` counts them."""
    lease_s = notice_lease_s(svc.settings)
    lease_end = 0.0

    def claim() -> Claim:
        nonlocal lease_end
        lease_end = time.time() + lease_s  # no later than the end the claim itself records
        return svc.run_store.claim_notice(run_id, kind, key, token, lease_s)

    answer = await_claim(claim, lease_s, deadline, f"message {kind} {key} of run {run_id}")
    if answer is Claim.DONE:
        return False

    def fence() -> bool:
        return svc.run_store.fence_notice(run_id, kind, key, token, notifier.ATTEMPT_BOUND_S)

    try:
        svc.notifier.publish(kind, run_id, body, until=lease_end, fence=fence)
    except Exception as exc:
        svc.run_store.release_notice(run_id, kind, key, token)  # not sent: a retry need not wait
        if isinstance(exc, notifier.PublishTooLate):  # not the run's failure: the message is another's now
            raise CompletionBusy(f"message {kind} {key} of run {run_id}: {exc}") from exc
        raise
    svc.run_store.notice_sent(run_id, kind, key)
    return True


def complete(
    svc: Any, config: RunConfig, outbox: Outbox, tensors: TensorSource, token: str, deadline: Deadline
) -> Claim:
    """Make the effects of committed position `outbox.seq` visible and hand the chain on, once.
    DONE: another copy completed it; ACQUIRED: this one did."""
    run_id, seq, lease_s = config.run_id, outbox.seq, svc.settings.handoff_claim_ttl_s
    claim = lambda: svc.tensor_store.claim(run_id, seq, token, lease_s)  # noqa: E731
    answer = await_claim(claim, lease_s, deadline, f"the completion of step {seq} of run {run_id}")
    if answer is not Claim.ACQUIRED:
        return answer
    try:
        _record_history(svc, config, outbox, tensors)
        _notify_progress(svc, config, outbox, token, deadline)
        stopped = _judged_to_stop(svc, config, outbox)
        if outbox.metrics is not None:
            _finish(svc, config, outbox, tensors, token, deadline)
        elif stopped:
            _stop_trial(svc, config, outbox, token, deadline)
        else:
            svc.run_store.record_progress(run_id, seq)
        if outbox.successor is not None and not stopped:
            svc.invoker.invoke_async(outbox.successor)
    except Exception:
        svc.tensor_store.release(run_id, seq, token)
        raise
    svc.tensor_store.mark_done(run_id, seq)
    if outbox.metrics is not None or stopped:
        svc.tensor_store.delete_run(run_id)  # only now: a retry of the finish still needs the weights
    return Claim.ACQUIRED


def _record_history(svc: Any, config: RunConfig, outbox: Outbox, tensors: TensorSource) -> None:
    if outbox.epochs:
        svc.run_store.put_epochs(config.run_id, outbox.epochs)
    if outbox.checkpoint_epoch is not None:
        # The epoch's cost too: a resume from the last epoch's checkpoint goes straight to the finish.
        names = [*engine.param_names(config), "cost"]
        epoch = outbox.checkpoint_epoch
        sha256 = checkpoints.save(svc.blob_store, config.run_id, epoch, outbox.seq, tensors(names))
        svc.run_store.record_checkpoint(config.run_id, epoch, sha256)


def _notify_progress(svc: Any, config: RunConfig, outbox: Outbox, token: str, deadline: Deadline) -> None:
    if not config.notify_every:
        return
    for item in outbox.epochs:
        if (item["epoch"] + 1) % config.notify_every == 0:
            publish_once(svc, Notice.PROGRESS, config.run_id, f"epoch-{item['epoch']}", item, token, deadline)


def _judged_to_stop(svc: Any, config: RunConfig, outbox: Outbox) -> bool:
    """A sweep's trial that closed a rung's epoch goes on only if its scheduler says so."""
    judged = [item for item in outbox.epochs if config.closes_rung(item["epoch"])]
    if not judged:
        return False
    return any(scheduler.at_rung(svc, config, item) is RungDecision.STOP for item in judged)


def _stop_trial(svc: Any, config: RunConfig, outbox: Outbox, token: str, deadline: Deadline) -> None:
    last = outbox.epochs[-1]
    figures = {"validation_accuracy": last["validation_accuracy"], "epochs_run": last["epoch"] + 1}
    svc.run_store.mark_stopped(config.run_id, figures)
    scheduler.trial_ended(svc, config, RunStatus.STOPPED, token, deadline)


def _finish(svc: Any, config: RunConfig, outbox: Outbox, tensors: TensorSource, token: str, deadline: Deadline) -> None:
    """The run's move to SUCCEEDED comes first, and the model and the summary only if it won: a
    cancel that got there first leaves no model and no SUCCEEDED message. (A retry of this
    completion finds SUCCEEDED, which is its own move, and does the rest again.)"""
    params = tensors(engine.weight_names(config))
    shift, scale = warm.normalisation(svc, config)
    key = f"models/{config.run_id}/model.npz"
    metrics = {**outbox.metrics, "model_uri": f"s3://{svc.blob_store.bucket}/{key}"}
    if svc.run_store.mark_succeeded(config.run_id, metrics) is None:
        logger.info("finish refused: the run ended otherwise first", extra={"run_id": config.run_id})
        return
    svc.blob_store.put(key, model_file.dumps(config, params, shift, scale))
    if config.in_sweep:
        scheduler.trial_ended(svc, config, RunStatus.SUCCEEDED, token, deadline)  # its sweep speaks for it
    else:
        publish_once(svc, Notice.SUCCEEDED, config.run_id, "run", metrics, token, deadline)


def finish_metrics(svc: Any, config: RunConfig, ws: engine.WorkingSet, data: engine.TrainData) -> dict[str, Any]:
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
        **(
            {"validation_accuracy": engine.accuracy(config, params, data.x_val, data.y_val)} if config.validates else {}
        ),
    }
