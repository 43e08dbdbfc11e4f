"""The blob store (S3), the notifier (SNS) and the invoker (Lambda's asynchronous invoke) in memory,
and a Services made of fakes."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from tests.fakes.clock import FakeClock
from tests.fakes.run_store import FakeRunStore
from trainer.errors import ObjectChanged, TooLarge
from trainer.notifier import ATTEMPT_BOUND_S, PublishTooLate
from trainer.services import Services
from trainer.settings import Settings

BUCKET = "fake-bucket"


def _etag(body: bytes) -> str:
    return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'


class FakeBlobStore:
    """Objects by (bucket, key). A missing key is S3's NoSuchKey; a read past `limit` is TooLarge."""

    def __init__(self, bucket: str = BUCKET) -> None:
        self.bucket = bucket
        self.objects: dict[tuple[str, str], bytes] = {}

    def read(self, bucket: str, key: str, limit: int | None = None) -> bytes:
        found = self.objects.get((bucket, key))
        if found is None:
            error = {"Code": "NoSuchKey", "Message": "The specified key does not exist."}
            raise ClientError({"Error": error}, "GetObject")
        if limit is not None and len(found) > limit:
            raise TooLarge(len(found), limit)
        return found

    def head(self, bucket: str, key: str) -> tuple[int, str, str | None]:
        found = self.read(bucket, key)
        return len(found), _etag(found), None

    def read_range(self, bucket: str, key: str, start: int, stop: int, etag: str) -> bytes:
        found = self.objects.get((bucket, key))
        if found is None or _etag(found) != etag:
            raise ObjectChanged(bucket, key, etag)
        return found[start:stop]

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        self.objects[(self.bucket, key)] = bytes(body)
        return f"s3://{self.bucket}/{key}"

    def delete(self, key: str) -> None:
        self.objects.pop((self.bucket, key), None)

    def get(self, key: str) -> bytes:
        return self.read(self.bucket, key)

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for b, k in self.objects if b == self.bucket and k.startswith(prefix))


class FakeNotifier:
    """Every message published, as SNS would carry it ({"kind", "run_id", **body}). An attempt is
    made only as the real notifier makes one: ending before `until` and passing `fence` first.
    `fail` set to an exception makes the next publish raise it (SNS refusing), once."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.sent: list[dict[str, Any]] = []
        self.fail: Exception | None = None

    def publish(
        self,
        kind: str,
        run_id: str,
        body: dict[str, Any],
        until: float | None = None,
        fence: Callable[[], bool] | None = None,
    ) -> None:
        if until is not None and self.clock() + ATTEMPT_BOUND_S > until:
            raise PublishTooLate(f"no time left in the message's claim for another attempt ({ATTEMPT_BOUND_S:.0f} s)")
        if fence is not None and not fence():
            raise PublishTooLate("the message's claim is no longer this copy's, or too little of it is left")
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        self.sent.append(json.loads(json.dumps({"kind": kind, "run_id": run_id, **body}, sort_keys=True, default=str)))

    def of(self, kind: str, run_id: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["kind"] == kind and (run_id is None or m["run_id"] == run_id)]


class FakeInvoker:
    """The events sent to the trainer, in order, as JSON carries them; `take` hands them over once."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []  # every event ever sent, taken or not
        self.fail: Exception | None = None

    def invoke_async(self, event: dict[str, Any]) -> None:
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        self.events.append(json.loads(json.dumps(event)))
        self.sent.append(self.events[-1])

    def take(self) -> list[dict[str, Any]]:
        taken, self.events = self.events, []
        return taken


def fake_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "table_name": "fake-runs",
        "model_bucket": BUCKET,
        "sns_topic_arn": "arn:aws:sns:us-east-1:123456789012:fake-events",
        "trainer_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:fake-trainer",
        "launch_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:fake-launch",
        "redis_host": "fake",
        "redis_port": 0,
        "redis_user_id": None,
        "redis_replication_group_id": None,
        "redis_tls": False,
        "redis_ca_file": None,
        "memory_mb": 10240,
        "handoff_claim_ttl_s": 30,
    }
    return Settings(**(values | overrides))


def fake_services(clock: FakeClock | None = None, **settings: Any) -> Services:
    """Services made of fakes sharing one clock (`svc.tensor_store.clock`)."""
    from tests.fakes.tensor_store import FakeTensorStore

    clock = clock or FakeClock()
    return Services(
        settings=fake_settings(**settings),
        tensor_store=FakeTensorStore(clock),
        run_store=FakeRunStore(clock),
        notifier=FakeNotifier(),  # the real notifier's hook reads the process's own clock
        invoker=FakeInvoker(),
        blob_store=FakeBlobStore(),
    )
