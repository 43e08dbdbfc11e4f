"""SNS notifier: the finish summary, the failure reason, progress every N epochs."""

from __future__ import annotations

import json
from typing import Any

from trainer.aws import client


class SnsNotifier:
    def __init__(self, topic_arn: str):
        self.topic_arn = topic_arn
        self.sns = client("sns")

    def publish(self, kind: str, run_id: str, body: dict[str, Any]) -> None:
        message = {"kind": kind, "run_id": run_id, **body}
        self.sns.publish(
            TopicArn=self.topic_arn,
            Subject=f"LNN {'sweep' if kind.startswith('SWEEP') else 'run'} {run_id} {kind}"[:100],
            Message=json.dumps(message, sort_keys=True, default=str),
            MessageAttributes={"kind": {"DataType": "String", "StringValue": kind}},
        )
