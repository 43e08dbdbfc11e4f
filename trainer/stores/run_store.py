"""DynamoDB run store. One table: the run item (pk RUN#id, sk RUN) and one item per epoch
(pk RUN#id, sk EPOCH#000001). Every write is an idempotent put or a guarded update, so a step
that is re-run after a crash writes the same items again, harmlessly."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import Any, Final

from botocore.exceptions import ClientError

from trainer.aws import client
from trainer.errors import RunNotFound
from trainer.statemachine import may_become
from trainer.stores.items import item_of, plain, serialize
from trainer.stores.records import RunItem, as_run
from trainer.stores.sweep_store import SweepItems
from trainer.vocabulary import Claim, Notice, RunStatus

# The one name of a failed run's reason: in the run item, the FAILED message and the CLI.
FAILURE_REASON: Final = "failure_reason"
# Concurrent BatchWriteItem calls of one history write: below botocore's pool of 10 connections.
EPOCH_WRITERS = 8
# A launch's or resume's hand-off still to do (the first event not sent yet): a retry completes it.
HANDOFF: Final = "handoff"
# epoch name -> sha256 of that epoch's checkpoint, written with it; a resume loads only a match.
CHECKPOINTS: Final = "checkpoint_sha256"
# A data-parallel run's workers: worker -> the step it has gathered (its heartbeat's).
WORKER_STEPS: Final = "worker_steps"


class Handoff(StrEnum):
    LAUNCH = "launch"
    RESUME = "resume"


def checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch:06d}"


def _pk(run_id: str) -> str:
    return f"RUN#{run_id}"


class DynamoRunStore(SweepItems):
    def __init__(self, table_name: str):
        self.table = table_name
        self.db = client("dynamodb")

    def create_run(self, run_id: str, request: dict[str, Any], config_json: str, total_steps: int) -> bool:
        """Claim the run id: the launch's first write, before anything goes anywhere else. False when
        the id is taken (by another launch, or by this one's earlier attempt). The run starts with its
        hand-off pending: until the first event is sent, a retry of the same launch completes it."""
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
                HANDOFF: Handoff.LAUNCH,
                CHECKPOINTS: {},
            }
        )
        try:
            self.db.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

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

    def get_run(self, run_id: str) -> RunItem:
        key = item_of({"pk": _pk(run_id), "sk": "RUN"})
        resp = self.db.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        if "Item" not in resp:
            raise RunNotFound(f"no run {run_id!r} in table {self.table}")
        return as_run(plain(resp["Item"]))

    def _update(
        self,
        run_id: str,
        values: dict[str, Any],
        condition: str | None = None,
        condition_values: dict[str, Any] | None = None,
        extra_names: dict[str, str] | None = None,
        remove: tuple[str, ...] = (),
    ) -> RunItem:
        names = {f"#k{i}": k for i, k in enumerate(values)} | (extra_names or {})
        names |= {f"#r{i}": k for i, k in enumerate(remove)}
        vals = {f":v{i}": serialize(v) for i, v in enumerate(values.values())}
        for key, value in (condition_values or {}).items():
            vals[key] = serialize(value)
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": item_of({"pk": _pk(run_id), "sk": "RUN"}),
            "UpdateExpression": "SET "
            + ", ".join(f"#k{i} = :v{i}" for i in range(len(values)))
            + (" REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove))) if remove else ""),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": vals,
        }
        kwargs["ConditionExpression"] = "attribute_exists(pk)" + (f" AND ({condition})" if condition else "")
        return as_run(plain(self.db.update_item(**kwargs, ReturnValues="ALL_NEW")["Attributes"]))

    def record_progress(self, run_id: str, last_seq: int) -> None:
        """The chain's heartbeat at each hand-off; a run whose heartbeat stops is STALLED. A step the
        chain committed is past the position a launch or resume started it from, so it also ends a
        pending hand-off: the chain runs, so the first event went out, even if the LaunchLambda
        that sent it died before it said so (and only a pending hand-off may fail a run)."""
        self._progress(run_id, last_seq, remove=(HANDOFF,))

    def record_restored_position(self, run_id: str, last_seq: int) -> None:
        """A resume's heartbeat: the position it restored the run to. Its hand-off stays pending
        until its first event is out (`handed_off`) or the chain's heartbeat ends it."""
        self._progress(run_id, last_seq, remove=())

    def _progress(self, run_id: str, last_seq: int, remove: tuple[str, ...]) -> None:
        now = time.time()
        try:
            # A step that commits after a failed attempt (Lambda's retry got through) puts a
            # FAILED run back to RUNNING; a CANCELLED or finished run is left alone.
            self._update(
                run_id,
                {"last_seq": last_seq, "last_step_at": now, "updated_at": now, "status": RunStatus.RUNNING},
                condition="#k0 < :v0 AND (#k3 = :v3 OR #k3 = :failed)",
                condition_values={":failed": RunStatus.FAILED},
                remove=remove,
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

    def last_epoch(self, run_id: str) -> dict[str, Any] | None:
        """The newest epoch item (one item read, however long the history): what a progress bar shows."""
        resp = self.db.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=item_of({":pk": _pk(run_id), ":prefix": "EPOCH#"}),
            ScanIndexForward=False,
            Limit=1,
        )
        items = resp.get("Items") or []
        return plain(items[0]) if items else None

    def epochs_from(self, run_id: str, first: int) -> list[dict[str, Any]]:
        """The epoch items from epoch `first` on, in order: what a follower has not read yet."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :first AND :last",
            "ExpressionAttributeValues": item_of(
                {":pk": _pk(run_id), ":first": f"EPOCH#{max(0, first):06d}", ":last": "EPOCH#999999"}
            ),
            "ConsistentRead": True,
        }
        while True:
            resp = self.db.query(**kwargs)
            items += [plain(i) for i in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                return items
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def mark_succeeded(self, run_id: str, metrics: dict[str, Any]) -> RunItem | None:
        """RUNNING (or FAILED, a retry got through) -> SUCCEEDED with the run's metrics; the same values
        whichever copy writes them (they come from the committed outbox), so a repeat is harmless.
        None when a cancel (or a sweep's stop) won: then the finish leaves nothing."""
        return self._transition(run_id, RunStatus.SUCCEEDED, {"updated_at": time.time(), **metrics})

    def generation(self, run_id: str) -> int | None:
        """How many times the run has resumed (None for no such run): a trainer copy reads it when it
        starts, and may fail the run only while it is still the same (`mark_failed`)."""
        resp = self.db.get_item(
            TableName=self.table,
            Key=item_of({"pk": _pk(run_id), "sk": "RUN"}),
            ConsistentRead=True,
            ProjectionExpression="resumes, pk",
        )
        if "Item" not in resp:
            return None
        return int(plain(resp["Item"]).get("resumes", 0))

    def mark_failed(
        self,
        run_id: str,
        reason: str,
        step: str,
        error_type: str,
        handing_off: Handoff | None = None,
        generation: int | None = None,
    ) -> RunItem | None:
        """RUNNING -> FAILED with the reason. A run FAILED already keeps its first reason (a retry of
        the failed step fails again) and is returned as it stands, so that its one message can still
        go out; a finished or cancelled run is left alone (None). While a launch's or resume's
        hand-off is pending only that hand-off (`handing_off`) may fail the run: a retry of a step
        from before a resume, landing before the resume has rebuilt the cache, finds no position
        there, and must not fail the run the resume is starting (None). A trainer copy gives the
        `generation` it started in: a copy from before a resume, failing after it, failed on the
        chain the resume replaced, and leaves the resumed run alone (None)."""
        values = {FAILURE_REASON: reason[:2000], "failed_step": step, "error_type": error_type}
        run = self._transition(run_id, RunStatus.FAILED, {**values, "updated_at": time.time()}, handing_off, generation)
        if run is not None:
            return run
        try:
            run = self.get_run(run_id)
        except RunNotFound:
            return None
        same = generation is None or int(run.get("resumes", 0)) == generation
        return run if run["status"] == RunStatus.FAILED and same else None

    def mark_cancelled(self, run_id: str) -> RunItem | None:
        """RUNNING or FAILED -> CANCELLED; None when the run had ended (or was cancelled) already."""
        return self._transition(run_id, RunStatus.CANCELLED, {"updated_at": time.time()})

    def mark_stopped(self, run_id: str, values: dict[str, Any]) -> RunItem | None:
        """STOPPED by a sweep's scheduler, with the trial's figures, unless it ended otherwise meanwhile."""
        return self._transition(run_id, RunStatus.STOPPED, {"updated_at": time.time(), **values})

    def resumed(self, run_id: str, stalled_before: float) -> RunItem | None:
        """FAILED, or STALLED (RUNNING with no heartbeat since `stalled_before`) -> RUNNING, one resume
        more (a later failure at the same step is news again), the old failure forgotten and the
        resume's hand-off pending. None when another move won the run first (a cancel, another resume)."""
        now = time.time()
        try:
            resp = self.db.update_item(
                TableName=self.table,
                Key=item_of({"pk": _pk(run_id), "sk": "RUN"}),
                UpdateExpression=(
                    "SET #s = :running, updated_at = :now, last_step_at = :now, #h = :resume "
                    f"REMOVE failure_reason, failed_step, error_type, {WORKER_STEPS} ADD resumes :one"
                ),
                ConditionExpression=(
                    "attribute_exists(pk) AND (#s = :failed OR (#s = :running AND last_step_at < :before))"
                ),
                ExpressionAttributeNames={"#s": "status", "#h": HANDOFF},
                ExpressionAttributeValues=item_of(
                    {
                        ":running": RunStatus.RUNNING,
                        ":failed": RunStatus.FAILED,
                        ":now": now,
                        ":before": stalled_before,
                        ":resume": Handoff.RESUME,
                        ":one": 1,
                    }
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return None
        return as_run(plain(resp["Attributes"]))

    def record_worker_step(self, run_id: str, worker: int, step: int, generation: int) -> None:
        """A data-parallel worker's heartbeat: the step it has gathered (`worker_steps`, a map by
        worker, what `lnn status` shows) and the run's last_step_at, while the run is RUNNING in
        the worker's generation (a resume forgets the generation before's steps). Like a chain's
        heartbeat, it ends a launch's or resume's pending hand-off: the workers run."""
        guard = "attribute_exists(pk) AND #s = :running AND "
        guard += "(attribute_not_exists(#r) OR #r = :g)" if generation == 0 else "#r = :g"
        names = {"#s": "status", "#r": "resumes", "#ws": WORKER_STEPS, "#h": HANDOFF}
        values = {":running": RunStatus.RUNNING, ":g": generation, ":now": time.time()}
        one = {"UpdateExpression": "SET #ws.#w = :step, last_step_at = :now REMOVE #h", "ConditionExpression": guard}
        first = {
            "UpdateExpression": "SET #ws = :map, last_step_at = :now REMOVE #h",
            "ConditionExpression": guard + " AND attribute_not_exists(#ws)",
        }
        for attempt in (one, first, one):  # the map is made by the first heartbeat of a generation
            extra_names = {"#w": str(worker)} if attempt is one else {}
            extra_values = {":step": step} if attempt is one else {":map": {str(worker): step}}
            try:
                self.db.update_item(
                    TableName=self.table,
                    Key=item_of({"pk": _pk(run_id), "sk": "RUN"}),
                    ExpressionAttributeNames=names | extra_names,
                    ExpressionAttributeValues=item_of(values | extra_values),
                    **attempt,
                )
                return
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code == "ConditionalCheckFailedException" and attempt is one:
                    return  # the run ended, or resumed: this worker's steps are no longer news
                if code not in ("ValidationException", "ConditionalCheckFailedException"):
                    raise

    def handed_off(self, run_id: str) -> bool:
        """The launch's or resume's first event is sent: no retry of it has anything left to do.
        False when the run is no longer RUNNING (a cancel landed meanwhile)."""
        try:
            self.db.update_item(
                TableName=self.table,
                Key=item_of({"pk": _pk(run_id), "sk": "RUN"}),
                UpdateExpression="REMOVE #h",
                ConditionExpression="attribute_exists(pk) AND #s = :running",
                ExpressionAttributeNames={"#s": "status", "#h": HANDOFF},
                ExpressionAttributeValues=item_of({":running": RunStatus.RUNNING}),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def record_checkpoint(self, run_id: str, epoch: int, digest: str) -> None:
        """The sha256 of epoch `epoch`'s checkpoint, which a resume checks before it loads one."""
        self.db.update_item(
            TableName=self.table,
            Key=item_of({"pk": _pk(run_id), "sk": "RUN"}),
            UpdateExpression="SET #c.#e = :d",
            ConditionExpression="attribute_exists(pk) AND attribute_exists(#c)",
            ExpressionAttributeNames={"#c": CHECKPOINTS, "#e": checkpoint_name(epoch)},
            ExpressionAttributeValues=item_of({":d": digest}),
        )

    def _transition(
        self,
        run_id: str,
        to: RunStatus,
        values: dict[str, Any],
        handing_off: Handoff | None = None,
        generation: int | None = None,
    ) -> RunItem | None:
        """One edge of the run's status (statemachine.RUN_TRANSITIONS), as one conditional write:
        of two racing moves exactly one finds the status it needs. None when the run was not in
        a status it may move to `to` from. A move to FAILED also needs no hand-off pending but the
        caller's own, and the run still in the caller's generation when it gives one (mark_failed)."""
        sources = may_become(to)
        condition = " OR ".join(f"#s = :from{i}" for i in range(len(sources)))
        names: dict[str, Any] = {f":from{i}": status for i, status in enumerate(sources)}
        if to != RunStatus.FAILED:
            return self._guarded(run_id, {"status": to, **values}, condition, names)
        pending = "attribute_not_exists(#h)" + (" OR #h = :owner" if handing_off else "")
        if handing_off:
            names[":owner"] = handing_off
        guards, attributes = f"({condition}) AND ({pending})", {"#s": "status", "#h": HANDOFF}
        if generation is not None:
            names[":generation"], attributes["#r"] = generation, "resumes"
            guards += f" AND ({'attribute_not_exists(#r) OR ' if generation == 0 else ''}#r = :generation)"
        try:
            return self._update(run_id, {"status": to, **values}, guards, names, attributes)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return None

    def _guarded(
        self, run_id: str, values: dict[str, Any], condition: str, condition_values: dict[str, Any]
    ) -> RunItem | None:
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

    def fence_notice(self, run_id: str, kind: Notice, key: str, token: str, left_s: float) -> bool:
        """Right before a publish: whether the claim on message (kind, key) is still `token`'s with at
        least `left_s` seconds of its lease left; if so the send is counted (`sends`), so that a
        repeat can be told from a claim merely taken over (`claims`)."""
        now = time.time()
        try:
            self.db.update_item(
                TableName=self.table,
                Key=item_of({"pk": _pk(run_id), "sk": f"NOTICE#{kind}#{key}"}),
                UpdateExpression="SET fenced_at = :now ADD sends :one",
                ConditionExpression="#st = :pending AND #tk = :token AND lease_until > :need",
                ExpressionAttributeNames={"#st": "state", "#tk": "token"},
                ExpressionAttributeValues=item_of(
                    {":pending": "pending", ":token": token, ":need": now + left_s, ":now": now, ":one": 1}
                ),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

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
