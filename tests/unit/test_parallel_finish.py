"""A data-parallel run's finish completes every epoch's effects at once (its epoch items, a PROGRESS
message every `notify_every` epochs, the model, SUCCEEDED), where the chain completes them epoch by
epoch, each under its own event's retries. So the finisher outlasts AWS errors that a later attempt
need not meet (throttling, 5xx), attempt after attempt while its invocation has time. A completion
that still fails (every attempt throttled, or an error that is not transient, at once) fails the
run with that error as a chain step's does, rather than leave it RUNNING with its finish committed,
and Lambda's retry of the event, if it gets through, completes it. On fakes: the finish is
committed as a finisher commits it, and a copy of the finisher's event completes it."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.fakes import fake_services
from tests.fakes.chain import deliver, launch
from trainer import effects
from trainer.handlers import worker as worker_handler
from trainer.parallel import launching
from trainer.runconfig import RunConfig
from trainer.vocabulary import Notice, Outcome, RunStatus

EPOCHS = 6


@pytest.fixture(autouse=True)
def short_pauses(monkeypatch) -> None:
    """The pauses between attempts, shortened: their length is not what these tests are about."""
    monkeypatch.setattr(worker_handler, "COMPLETION_PAUSE_S", (0.001, 0.004))


def throttled() -> ClientError:
    response: Any = {"Error": {"Code": "Throttled", "Message": "Rate exceeded"}, "ResponseMetadata": {}}
    response["ResponseMetadata"]["HTTPStatusCode"] = 429
    return ClientError(response, "Publish")


def committed_finish(svc) -> tuple[str, int]:
    """A 2-worker run whose finisher committed its finish (at the chain's finish position) and
    died before completing it: what a copy of its event finds."""
    run_id = launch(svc, workers=2, epochs=EPOCHS, notify_every=1)
    svc.invoker.take()
    config = RunConfig.from_json(svc.run_store.get_run(run_id)["config"])
    seq = config.plan.total_steps - 1
    items = [{"epoch": e, "cost": 1.0 / (e + 1), "duration_s": 0.1} for e in range(EPOCHS)]
    metrics = {"final_cost": items[-1]["cost"], "train_accuracy": 0.5, "test_accuracy": 0.5}
    metrics |= {"duration_s": 1.0, "finished_at": 1.0, "epochs": EPOCHS}
    outbox = effects.Outbox(seq=seq, epochs=items, checkpoint_epoch=None, metrics=metrics, successor=None)
    _, snapshot = svc.tensor_store.snapshot(run_id, ["W1", "b1", "W2", "b2"])[1:]
    svc.tensor_store.commit(run_id, -1, seq, snapshot, outbox.to_json())
    return run_id, seq


def failing(svc, errors: list[Exception]) -> list[Exception]:
    """The notifier raises `errors`, one a publish, before it publishes again."""
    publish = svc.notifier.publish

    def flaky(*args: Any, **kwargs: Any) -> None:
        if errors:
            raise errors.pop(0)
        publish(*args, **kwargs)

    svc.notifier.publish = flaky
    return errors


def test_a_finish_whose_messages_are_throttled_again_and_again_is_completed_by_one_copy() -> None:
    svc = fake_services()
    run_id, _ = committed_finish(svc)
    left = failing(svc, [throttled() for _ in range(8)])  # more than Lambda's three attempts of one event
    answer = deliver(svc, launching.worker_event(run_id, 1, 3))
    assert left == [] and answer["status"] == Outcome.DUPLICATE
    run = svc.run_store.get_run(run_id)
    assert run["status"] == RunStatus.SUCCEEDED
    assert sorted(m["epoch"] for m in svc.notifier.of(Notice.PROGRESS, run_id)) == list(range(EPOCHS))
    assert len(svc.notifier.of(Notice.SUCCEEDED, run_id)) == 1
    assert [e["epoch"] for e in sorted(svc.run_store.epochs(run_id), key=lambda e: e["epoch"])] == list(range(EPOCHS))


def test_an_error_that_is_not_transient_is_not_tried_again_and_fails_the_run() -> None:
    svc = fake_services()
    run_id, _ = committed_finish(svc)
    publishes = []
    original = svc.notifier.publish
    svc.notifier.publish = lambda kind, *args, **kwargs: publishes.append(kind) or original(kind, *args, **kwargs)
    failing(svc, [ValueError("a body SNS refuses")])
    with pytest.raises(worker_handler.WorkerFailed, match="failed the run: ValueError: a body SNS refuses"):
        deliver(svc, launching.worker_event(run_id, 1, 3))
    assert publishes == [Notice.FAILED], "not tried again: the next message is the run's failure"
    run = svc.run_store.get_run(run_id)
    assert run["status"] == RunStatus.FAILED and run["failure_reason"] == "ValueError: a body SNS refuses", run
    assert svc.notifier.of(Notice.SUCCEEDED, run_id) == [] and len(svc.notifier.of(Notice.FAILED, run_id)) == 1


def test_a_finish_whose_completion_is_throttled_on_every_attempt_fails_the_run_and_a_retry_completes_it() -> None:
    svc = fake_services()
    run_id, _ = committed_finish(svc)
    event = launching.worker_event(run_id, 1, 3)
    left = failing(svc, [throttled() for _ in range(worker_handler.COMPLETION_ATTEMPTS)])
    with pytest.raises(worker_handler.WorkerFailed, match=r"failed the run: ClientError: .*\(Throttled\)"):
        deliver(svc, event)
    assert left == []
    run = svc.run_store.get_run(run_id)
    assert run["status"] == RunStatus.FAILED, "not RUNNING with its finish committed"
    assert "Throttled" in run["failure_reason"] and "Rate exceeded" in run["failure_reason"], run
    [failed] = svc.notifier.of(Notice.FAILED, run_id)
    assert failed["failure_reason"] == run["failure_reason"]
    assert svc.notifier.of(Notice.SUCCEEDED, run_id) == []
    # Lambda's retry of the event: AWS answers again, and the completion moves the run on.
    assert deliver(svc, event)["status"] == Outcome.DUPLICATE
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.SUCCEEDED
    assert len(svc.notifier.of(Notice.SUCCEEDED, run_id)) == 1
    assert sorted(m["epoch"] for m in svc.notifier.of(Notice.PROGRESS, run_id)) == list(range(EPOCHS))
