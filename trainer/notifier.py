"""SNS notifier: the finish summary, the failure reason, progress every N epochs.

A message is published under a claim that ends at a known time (once.publish_once), after which
another copy may take the claim over and publish the same message. So no attempt of the SDK's, its
retries included, starts unless it ends before the claim does (an attempt lasts at most the
client's connect and read timeouts, and one that could outlive the claim is not made) and the
claim's fence, checked in the run store just before the request goes out, says the claim is
still this publisher's.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Callable
from typing import Any

from trainer.aws import client

CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0
ATTEMPT_BOUND_S = CONNECT_TIMEOUT_S + READ_TIMEOUT_S  # the longest one attempt of a publish can take

# When the publish in progress must be over (epoch seconds), and its claim's fence (True: the
# claim is still this publisher's, long enough), for the SDK's per-attempt hook.
_until: contextvars.ContextVar[float | None] = contextvars.ContextVar("lnn_publish_until", default=None)
_fence: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar("lnn_publish_fence", default=None)


class PublishTooLate(RuntimeError):
    """The message's claim would end before another attempt could: not sent by this copy."""


def _attempt_in_time(**_: Any) -> None:
    until, fence = _until.get(), _fence.get()
    if until is not None and time.time() + ATTEMPT_BOUND_S > until:
        raise PublishTooLate(f"no time left in the message's claim for another attempt ({ATTEMPT_BOUND_S:.0f} s)")
    # The last word before the request goes out: the clock above is this process's own, the claim
    # is the run store's (a copy stopped since the check above finds it taken over here).
    if fence is not None and not fence():
        raise PublishTooLate("the message's claim is no longer this copy's, or too little of it is left")


class SnsNotifier:
    def __init__(self, topic_arn: str):
        self.topic_arn = topic_arn
        self.sns = client("sns", timeouts=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
        # before-send runs before every attempt, the SDK's retries included; one hook per client.
        self.sns.meta.events.register("before-send.sns.Publish", _attempt_in_time, unique_id="lnn-publish-in-time")

    def publish(
        self,
        kind: str,
        run_id: str,
        body: dict[str, Any],
        until: float | None = None,
        fence: Callable[[], bool] | None = None,
    ) -> None:
        """Publish, every attempt ending before `until` (epoch seconds) and passing `fence` just
        before it is sent, or not made (PublishTooLate)."""
        message = {"kind": kind, "run_id": run_id, **body}
        reset, reset_fence = _until.set(until), _fence.set(fence)
        try:
            self.sns.publish(
                TopicArn=self.topic_arn,
                Subject=f"LNN {'sweep' if kind.startswith('SWEEP') else 'run'} {run_id} {kind}"[:100],
                Message=json.dumps(message, sort_keys=True, default=str),
                MessageAttributes={"kind": {"DataType": "String", "StringValue": kind}},
            )
        finally:
            _until.reset(reset)
            _fence.reset(reset_fence)
