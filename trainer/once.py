"""Once-only effects under a lease: whoever holds an effect's claim does it, a crashed holder's
claim ends with its lease so that a retry can take it over, and a finished effect is marked done so
that nobody does it again.

One protocol, two stores: a committed position's completion is claimed in the cache (the chain's
own keys, so the claim dies with the run's state), a message in the run store (a message outlives
the cache). Both answer a claim with `Claim` (ACQUIRED, DONE, BUSY) and are marked done or released
the same way, so the rule of waiting, giving up and releasing is written once, here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from trainer import notifier
from trainer.ports import RunStore, TensorStore
from trainer.vocabulary import Claim, Notice

if TYPE_CHECKING:
    from trainer.services import Services
    from trainer.settings import Settings

_POLL_S = 0.05
T = TypeVar("T")


class Deadline(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class NoDeadline:
    """For callers without a Lambda deadline (a resume or cancel from the CLI, the tests)."""

    def get_remaining_time_in_millis(self) -> int:
        return 15 * 60 * 1000


class CompletionBusy(RuntimeError):
    """Another copy holds a completion claim and this invocation's time ran out waiting for it.
    Not the run's failure: raised so that Lambda's retry comes back for it (on AWS the retry's
    delay, a minute and more, outlasts the lease of a holder that died)."""


class Lease(Protocol):
    """A once-only effect's claim in some store."""

    ends_at: float  # by the local clock, no later than the end the store records for this claim

    def claim(self, token: str, lease_s: float) -> Claim: ...
    def mark_done(self, token: str) -> None: ...
    def release(self, token: str) -> None: ...


@dataclass
class StepLease:
    """The completion of committed position `seq` of a run: its effects and its one hand-off."""

    store: TensorStore
    run_id: str
    seq: int
    ends_at: float = 0.0

    def claim(self, token: str, lease_s: float) -> Claim:
        self.ends_at = time.time() + lease_s
        return self.store.claim(self.run_id, self.seq, token, int(lease_s))

    def mark_done(self, token: str) -> None:
        self.store.mark_done(self.run_id, self.seq, token)

    def release(self, token: str) -> None:
        self.store.release(self.run_id, self.seq, token)


@dataclass
class NoticeLease:
    """Message (kind, key) of a run or a sweep."""

    store: RunStore
    run_id: str
    kind: Notice
    key: str
    ends_at: float = 0.0

    def claim(self, token: str, lease_s: float) -> Claim:
        self.ends_at = time.time() + lease_s
        return self.store.claim_notice(self.run_id, self.kind, self.key, token, lease_s)

    def mark_done(self, token: str) -> None:
        # Marked whoever holds the claim now: the message went out, and the table, unlike a cache
        # node, never loses a claim, so no later holder can be misled by this mark.
        self.store.notice_sent(self.run_id, self.kind, self.key)

    def release(self, token: str) -> None:
        self.store.release_notice(self.run_id, self.kind, self.key, token)


def await_claim(
    lease: Lease, token: str, lease_s: float, deadline: Deadline, what: str, margin_ms: int = 1000
) -> Claim:
    """Claim, waiting out another claimant's lease (it finishes, or it died and its lease ends);
    CompletionBusy when this invocation's own time runs out first."""
    give_up = time.monotonic() + 2 * lease_s + 1  # a lease ends after lease_s; the rest is slack
    while True:
        answer = lease.claim(token, lease_s)
        if answer is not Claim.BUSY:
            return answer
        if time.monotonic() > give_up or deadline.get_remaining_time_in_millis() < margin_ms:
            raise CompletionBusy(f"{what} is held by another copy")
        time.sleep(_POLL_S)


def run_once(
    lease: Lease, token: str, lease_s: float, deadline: Deadline, what: str, work: Callable[[], T]
) -> tuple[Claim, T | None]:
    """Do `work` under the lease unless it is done: (ACQUIRED, its result) when this call did it,
    (DONE, None) when another did. A failed `work` releases the claim (a retry need not wait out
    the lease) and raises; a finished one is marked done."""
    answer = await_claim(lease, token, lease_s, deadline, what)
    if answer is not Claim.ACQUIRED:
        return answer, None
    try:
        result = work()
    except Exception:
        lease.release(token)
        raise
    lease.mark_done(token)
    return Claim.ACQUIRED, result


# A message's claim lasts this many of the longest publish attempts: the publish starts right after
# the claim, so only a holder stopped for most of its lease between its fence and SNS can overlap
# the copy that takes the claim over.
NOTICE_LEASE_ATTEMPTS = 4


def notice_lease_s(settings: Settings) -> float:
    """A message's claim: the hand-off's lease, but far longer than a publish attempt."""
    return max(float(settings.handoff_claim_ttl_s), NOTICE_LEASE_ATTEMPTS * notifier.ATTEMPT_BOUND_S)


def publish_once(
    svc: Services, kind: Notice, run_id: str, key: str, body: dict[str, Any], token: str, deadline: Deadline
) -> bool:
    """Publish message (kind, key) unless it was published already; True if this call published.
    The claim is a lease another copy takes over once it ends, so every SDK attempt is fenced: just
    before its request goes out, it must end before the claim does (the local clock), and the
    claim must still be this copy's in the run store with at least one attempt's time left, which
    counts the attempt there as a send. What can still repeat a message: a holder that vanished
    after a fence and before its 'sent' mark (a crash, an attempt that timed out after SNS had the
    message, or a stop longer than the rest of its lease); the notice item's `sends` counts them."""
    lease = NoticeLease(svc.run_store, run_id, kind, key)
    what = f"message {kind} {key} of run {run_id}"

    def fence() -> bool:
        return svc.run_store.fence_notice(run_id, kind, key, token, notifier.ATTEMPT_BOUND_S)

    def publish() -> None:
        svc.notifier.publish(kind, run_id, body, until=lease.ends_at, fence=fence)

    try:
        answer, _ = run_once(lease, token, notice_lease_s(svc.settings), deadline, what, publish)
    except notifier.PublishTooLate as exc:  # not the run's failure: the message is another's now
        raise CompletionBusy(f"{what}: {exc}") from exc
    return answer is Claim.ACQUIRED
