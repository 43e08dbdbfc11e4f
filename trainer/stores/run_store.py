"""DynamoDB run store. One table: the run item (pk RUN#id, sk RUN) and one item per epoch
(pk RUN#id, sk EPOCH#000001). Every write is an idempotent put or a guarded update, so a step
that is re-run after a crash writes the same items again, harmlessly."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from trainer.aws import client
from trainer.errors import RunNotFound
from trainer.stores.items import item_of, plain, serialize
from trainer.stores.sweep_store import SweepItems
from trainer.vocabulary import Claim, Notice, RunStatus

# The one name of a failed run's reason: in the run item, the FAILED message and the CLI.
FAILURE_REASON = "failure_reason"
# Concurrent BatchWriteItem calls of one history write: below botocore's pool of 10 connections.
EPOCH_WRITERS = 8
STORED_STATUSES = (RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.STOPPED)


def _pk(run_id: str) -> str:
    return f"RUN#{run_id}"


class DynamoRunStore(SweepItems):
    def __init__(self, table_name: str):
        self.table = table_name
        self.db = client("dynamodb")

    def create_run(self, run_id: str, request: dict[str, Any], config_json: str, total_steps: int) -> None:
        now = time.time()
        item = item_of(
            {
                "pk": _pk(run_id),
                "sk": "RUN",
                "run_id": run_id,
                "status": RunStatus.RUNNING,
                "request": json.dumps(request, sort_keys=True),
                "config": config_json,
                "total_steps": total_steps,
                "last_seq": -1,
                "created_at": now,
                "updated_at": now,
                "last_step_at": now,
            }
        )
        self.db.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)")

    def restore_run(self, run: dict[str, Any]) -> None:
        """Put back a run item exported earlier (`python -m trainer resume`), as it was."""
        self.db.put_item(TableName=self.table, Item=item_of({**run, "pk": _pk(run["run_id"]), "sk": "RUN"}))

    def exists(self, run_id: str) -> bool:
        resp = self.db.get_item(
            TableName=self.table,
            Key=item_of({"pk": _pk(run_id), "sk": "RUN"}),
            ProjectionExpression="pk",
            ConsistentRead=True,
        )
        return "Item" in resp

    def get_run(self, run_id: str) -> dict[str, Any]:
        key = item_of({"pk": _pk(run_id), "sk": "RUN"})
        resp = self.db.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        if "Item" not in resp:
            raise RunNotFound(f"no run {run_id!r} in table {self.table}")
        return plain(resp["Item"])

    def _update(
        self,
        run_id: str,
        values: dict[str, Any],
        condition: str | None = None,
        condition_values: dict[str, Any] | None = None,
        extra_names: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        names = {f"#k{i}": k for i, k in enumerate(values)} | (extra_names or {})
        vals = {f":v{i}": serialize(v) for i, v in enumerate(values.values())}
        for key, value in (condition_values or {}).items():
            vals[key] = serialize(value)
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": item_of({"pk": _pk(run_id), "sk": "RUN"}),
            "UpdateExpression": "SET " + ", ".join(f"#k{i} = :v{i}" for i in range(len(values))),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": vals,
        }
        kwargs["ConditionExpression"] = "attribute_exists(pk)" + (f" AND ({condition})" if condition else "")
        return plain(self.db.update_item(**kwargs, ReturnValues="ALL_NEW")["Attributes"])

    def record_progress(self, run_id: str, last_seq: int) -> None:
        """Heartbeat at each hand-off; a run whose heartbeat stops is STALLED."""
        now = time.time()
        try:
            # A step that commits after a failed attempt (Lambda's retry got through) puts a
            # FAILED run back to RUNNING; a CANCELLED or finished run is left alone.
            self._update(
                run_id,
                {"last_seq": last_seq, "last_step_at": now, "updated_at": now, "status": RunStatus.RUNNING},
                condition="#k0 < :v0 AND (#k3 = :v3 OR #k3 = :failed)",
                condition_values={":failed": RunStatus.FAILED},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def put_epochs(self, run_id: str, epochs: list[dict[str, Any]]) -> None:
        """In batches of 25 (BatchWriteItem's most), sent concurrently: a 2500-epoch run writes 100
        batches, and one after another their round trips add up to seconds of a run. Each batch is a
        set of idempotent puts, so a copy that fails part-way and is run again writes the same items."""
        items = [item_of({"pk": _pk(run_id), "sk": f"EPOCH#{e['epoch']:06d}", **e}) for e in epochs]
        puts = [{"PutRequest": {"Item": item}} for item in items]
        batches = [puts[start : start + 25] for start in range(0, len(puts), 25)]
        with ThreadPoolExecutor(max_workers=EPOCH_WRITERS) as pool:
            list(pool.map(self._write_batch, batches))  # re-raises the first batch that failed

    def _write_batch(self, requests: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {self.table: requests}
        for attempt in range(8):
            resp = self.db.batch_write_item(RequestItems=pending)
            pending = resp.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(2.0, 0.05 * 2**attempt))
        raise RuntimeError(f"DynamoDB kept {len(pending[self.table])} epoch items unprocessed")

    def epochs(self, run_id: str) -> list[dict[str, Any]]:
        return self._query(_pk(run_id), "EPOCH#")

    def mark_succeeded(self, run_id: str, metrics: dict[str, Any]) -> None:
        """SUCCEEDED with the run's metrics; the same values whichever copy writes them (they come
        from the committed outbox), so a repeat is harmless. A cancelled run stays CANCELLED."""
        self._guarded(
            run_id,
            {"status": RunStatus.SUCCEEDED, "updated_at": time.time(), **metrics},
            "#s <> :cancelled",
            {":cancelled": RunStatus.CANCELLED},
        )

    def mark_failed(self, run_id: str, reason: str, step: str, error_type: str) -> dict[str, Any] | None:
        """FAILED, unless the run has finished or been cancelled meanwhile (a late copy's error must
        not overwrite SUCCEEDED). Returns the run as it now stands, or None if it was left alone."""
        return self._guarded(
            run_id,
            {
                "status": RunStatus.FAILED,
                FAILURE_REASON: reason[:2000],
                "failed_step": step,
                "error_type": error_type,
                "updated_at": time.time(),
            },
            "#s = :running OR #s = :failed",
            {":running": RunStatus.RUNNING, ":failed": RunStatus.FAILED},
        )

    def mark_status(self, run_id: str, status: RunStatus) -> None:
        if status not in STORED_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self._update(run_id, {"status": RunStatus(status), "updated_at": time.time()})

    def mark_stopped(self, run_id: str, values: dict[str, Any]) -> dict[str, Any] | None:
        """STOPPED by a sweep's scheduler, with the trial's figures, unless it ended otherwise meanwhile."""
        return self._guarded(
            run_id,
            {"status": RunStatus.STOPPED, "updated_at": time.time(), **values},
            "#s = :running OR #s = :failed",
            {":running": RunStatus.RUNNING, ":failed": RunStatus.FAILED},
        )

    def resumed(self, run_id: str) -> None:
        """RUNNING again, one resume more: a later failure at the same step is news again."""
        self.db.update_item(
            TableName=self.table,
            Key=item_of({"pk": _pk(run_id), "sk": "RUN"}),
            UpdateExpression="SET #s = :running, updated_at = :now ADD resumes :one",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=item_of({":running": RunStatus.RUNNING, ":now": time.time(), ":one": 1}),
        )

    def _guarded(
        self, run_id: str, values: dict[str, Any], condition: str, condition_values: dict[str, Any]
    ) -> dict[str, Any] | None:
        try:
            return self._update(run_id, values, condition, condition_values, {"#s": "status"})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return None

    # -- notices: one SNS message of each kind and key ---------------------------------------
    def claim_notice(self, run_id: str, kind: Notice, key: str, token: str, lease_s: float) -> Claim:
        """Claim the publication of message (kind, key). A pending claim is a lease that a crashed
        claimant's retry may take over once it expires; a sent one is final. `claims` counts the
        claims since the last release: more than one means a claimant vanished while holding it,
        perhaps between its publish and its 'sent' mark, so the message may have gone out twice."""
        now = time.time()
        key_ = {"pk": _pk(run_id), "sk": f"NOTICE#{kind}#{key}"}
        try:
            self.db.update_item(
                TableName=self.table,
                Key=item_of(key_),
                UpdateExpression="SET #st = :pending, #tk = :token, lease_until = :until ADD claims :one",
                ConditionExpression="attribute_not_exists(pk) OR (#st = :pending AND lease_until < :now)",
                ExpressionAttributeNames={"#st": "state", "#tk": "token"},
                ExpressionAttributeValues=item_of(
                    {":pending": "pending", ":token": token, ":until": now + lease_s, ":now": now, ":one": 1}
                ),
            )
            return Claim.ACQUIRED
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        found = self.db.get_item(TableName=self.table, Key=item_of(key_), ConsistentRead=True)
        state = plain(found.get("Item", {})).get("state")
        return Claim.DONE if state == "sent" else Claim.BUSY

    def release_notice(self, run_id: str, kind: Notice, key: str, token: str) -> None:
        try:
            self.db.delete_item(
                TableName=self.table,
                Key=item_of({"pk": _pk(run_id), "sk": f"NOTICE#{kind}#{key}"}),
                ConditionExpression="#st = :pending AND #tk = :token",
                ExpressionAttributeNames={"#st": "state", "#tk": "token"},
                ExpressionAttributeValues=item_of({":pending": "pending", ":token": token}),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def notice_sent(self, run_id: str, kind: Notice, key: str) -> None:
        self.db.update_item(
            TableName=self.table,
            Key=item_of({"pk": _pk(run_id), "sk": f"NOTICE#{kind}#{key}"}),
            UpdateExpression="SET #st = :sent, sent_at = :now",
            ExpressionAttributeNames={"#st": "state"},
            ExpressionAttributeValues=item_of({":sent": "sent", ":now": time.time()}),
        )
