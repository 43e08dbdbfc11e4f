"""The items the run table holds, as the code reads them (numbers plain, not Decimal): a run, a
sweep, a sweep's trial. Every field a reader names is here, so a misspelt or unknown field is a
type error rather than a KeyError in a Lambda. Fields that only some items have are optional."""

from __future__ import annotations

from typing import Any, Required, TypedDict


class RunItem(TypedDict, total=False):
    pk: str
    sk: str
    run_id: Required[str]
    status: Required[str]  # a RunStatus value
    request: Required[str]  # the TrainingRequest as JSON text
    config: Required[str]  # the RunConfig as JSON text
    total_steps: int
    last_seq: int
    created_at: float
    updated_at: float
    last_step_at: float
    handoff: str  # a Handoff value while a launch's or resume's hand-off is pending
    checkpoint_sha256: dict[str, str]  # epoch name -> the checkpoint's digest
    resumes: int
    # a failure
    failure_reason: str
    failed_step: str
    error_type: str
    # the finish's figures (and a stopped trial's)
    final_cost: float
    train_accuracy: float
    test_accuracy: float
    validation_accuracy: float
    duration_s: float
    finished_at: float
    epochs: int
    epochs_run: int
    model_uri: str


class SweepItem(TypedDict, total=False):
    pk: str
    sk: str
    sweep_id: Required[str]
    status: Required[str]  # a SweepStatus value
    request: Required[str]  # the SweepRequest as JSON text
    trials: int
    max_concurrency: int
    metric: str
    data_digest: str
    split_key: str
    training_examples: int
    validation_examples: int
    next_trial: int  # the trials given a slot so far
    ended: int
    created_at: float
    updated_at: float
    summary: str  # the SWEEP_ENDED summary as JSON text
    ended_SUCCEEDED: int
    ended_STOPPED: int
    ended_FAILED: int
    ended_CANCELLED: int


class TrialItem(TypedDict, total=False):
    pk: str
    sk: str
    trial: Required[int]
    run_id: Required[str]
    params: Required[str]  # the searched values as JSON text
    request: Required[str]  # the trial's TrainingRequest as JSON text
    successor: int  # set once the trial ended: the trial its slot went to, or NO_SUCCESSOR
    end_state: str
    ended_at: float
    start_error: str


def as_run(item: dict[str, Any]) -> RunItem:
    return item  # type: ignore[return-value]  # the one place a stored item becomes a record


def as_sweep(item: dict[str, Any]) -> SweepItem:
    return item  # type: ignore[return-value]


def as_trial(item: dict[str, Any]) -> TrialItem:
    return item  # type: ignore[return-value]
