"""The words the run's records and messages use, as enums (values are what is stored and sent)."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's status in the run store. STALLED is derived (no heartbeat), never stored."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    STOPPED = "STOPPED"  # a sweep's trial stopped early by its scheduler (not a failure)
    STALLED = "STALLED"


class Notice(StrEnum):
    """The kinds of SNS message a run publishes; each at most once per key (see once.publish_once)."""

    PROGRESS = "PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SWEEP_ENDED = "SWEEP_ENDED"  # a sweep's one summary
    SWEEP_CANCELLED = "SWEEP_CANCELLED"


class SweepStatus(StrEnum):
    """A sweep's status: RUNNING until every trial has ended (SUCCEEDED, STOPPED or FAILED)."""

    RUNNING = "RUNNING"
    ENDED = "ENDED"
    CANCELLED = "CANCELLED"


class RungDecision(StrEnum):
    """The early-stopping scheduler's word on a trial at a rung, stored once per trial and rung."""

    CONTINUE = "CONTINUE"
    STOP = "STOP"


class Outcome(StrEnum):
    """What one trainer invocation did, in its result."""

    APPLIED = "RUNNING"  # steps committed, the chain goes on
    SUCCEEDED = "SUCCEEDED"  # the finish step committed
    DUPLICATE = "DUPLICATE"  # another copy holds or passed this position: nothing visible done
    CANCELLED = "CANCELLED"


class StopCause(StrEnum):
    """Why a data-parallel run's workers all stop before its end."""

    CANCELLED = "cancelled"  # the user cancelled the run
    FAILED = "failed"  # one of its workers failed the run


class Claim(StrEnum):
    """The answer to a claim on a once-only effect (a hand-off, a notification)."""

    ACQUIRED = "ACQUIRED"  # this copy does it now
    DONE = "DONE"  # done already
    BUSY = "BUSY"  # another copy holds a live lease on it
