"""A sweep's items in the run table, beside its trials' runs: the sweep (pk SWEEP#id, sk SWEEP),
one item per trial (sk TRIAL#000003) and one per trial judged at a rung (sk RUNG#000025#000003).

The scheduler's once-only decisions are conditional writes here: which trial a finished trial's
slot goes to (a transaction that also counts the end), and each trial's decision at each rung.
A retry or a duplicate finds the decision already written and follows it.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from botocore.exceptions import ClientError

from trainer.errors import RunNotFound
from trainer.stores.items import Table, item_of
from trainer.stores.records import SweepItem, TrialItem, as_sweep, as_trial
from trainer.vocabulary import RungDecision, RunStatus, SweepStatus

NO_SUCCESSOR = -1
_ASSIGN_ATTEMPTS = 200


def _pk(sweep_id: str) -> str:
    return f"SWEEP#{sweep_id}"


def _trial_sk(trial: int) -> str:
    return f"TRIAL#{trial:06d}"


def _rung_prefix(rung: int) -> str:
    return f"RUNG#{rung:06d}#"


def request_of(sweep: SweepItem) -> dict[str, Any]:
    """The sweep request a sweep's item holds as the JSON text its launch wrote, parsed: the one
    reader of that field, so its encoding is known in one place."""
    return json.loads(sweep["request"])


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] in ("ConditionalCheckFailedException", "TransactionCanceledException")


class SweepItems(Table):
    """Mixed into the DynamoDB run store: one adapter for the table, whatever the item."""

    # -- the sweep and its trials --------------------------------------------------------------
    def create_sweep(self, sweep_id: str, values: dict[str, Any]) -> bool:
        """The sweep item, unless it exists: False then (the caller compares the stored request)."""
        now = time.time()
        item = {"pk": _pk(sweep_id), "sk": "SWEEP", "sweep_id": sweep_id, "status": SweepStatus.RUNNING, **values}
        item |= {"next_trial": 0, "ended": 0, "created_at": now, "updated_at": now}
        try:
            self.db.put_item(TableName=self.table, Item=item_of(item), ConditionExpression="attribute_not_exists(pk)")
            return True
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            return False

    def put_trials(self, sweep_id: str, trials: list[dict[str, Any]]) -> None:
        """The trial items, each written once (a launch sent again completes what a crash left out)."""
        for trial in trials:
            try:
                self.db.put_item(
                    TableName=self.table,
                    Item=item_of({"pk": _pk(sweep_id), "sk": _trial_sk(trial["trial"]), **trial}),
                    ConditionExpression="attribute_not_exists(pk)",
                )
            except ClientError as exc:
                if not _conditional_failed(exc):
                    raise

    def note_trial_error(self, sweep_id: str, trial: int, error: str) -> None:
        """Why a trial could not be started (it then counts as FAILED and its slot goes on)."""
        self.db.update_item(
            TableName=self.table,
            Key=item_of({"pk": _pk(sweep_id), "sk": _trial_sk(trial)}),
            UpdateExpression="SET start_error = :error",
            ExpressionAttributeValues=item_of({":error": error[:2000]}),
        )

    def sweep_exists(self, sweep_id: str) -> bool:
        return self._get(_pk(sweep_id), "SWEEP") is not None

    def get_sweep(self, sweep_id: str) -> SweepItem:
        found = self._get(_pk(sweep_id), "SWEEP")
        if found is None:
            raise RunNotFound(f"no sweep {sweep_id!r} in table {self.table}")
        return as_sweep(found)

    def get_trial(self, sweep_id: str, trial: int) -> TrialItem:
        """One trial's item, read by its key (not found among all of the sweep's trials)."""
        found = self._get(_pk(sweep_id), _trial_sk(trial))
        if found is None:
            raise RunNotFound(f"sweep {sweep_id!r} has no trial {trial}")
        return as_trial(found)

    def sweep_trials(self, sweep_id: str) -> list[TrialItem]:
        return sorted((as_trial(t) for t in self._query(_pk(sweep_id), "TRIAL#")), key=lambda t: t["trial"])

    def claim_start(self, sweep_id: str, count: int) -> list[int]:
        """The trials the launch starts: the first `count`, counted once whoever asks again."""
        try:
            self.db.update_item(
                TableName=self.table,
                Key=item_of({"pk": _pk(sweep_id), "sk": "SWEEP"}),
                UpdateExpression="SET next_trial = :n",
                ConditionExpression="next_trial = :zero",
                ExpressionAttributeValues=item_of({":n": count, ":zero": 0}),
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
        return list(range(count))

    def assign_successor(self, sweep_id: str, trial: int, state: RunStatus) -> int:
        """The trial that takes over `trial`'s slot now that it ended (NO_SUCCESSOR when none is
        left), decided once: the assignment and the sweep's counts move in one transaction,
        conditional on the trial having no successor yet. A repeat returns the first answer."""
        for _ in range(_ASSIGN_ATTEMPTS):
            mine = self.get_trial(sweep_id, trial)
            if "successor" in mine:
                return int(mine["successor"])
            sweep = self.get_sweep(sweep_id)
            taken, total = int(sweep["next_trial"]), int(sweep["trials"])
            successor = taken if taken < total else NO_SUCCESSOR
            now = time.time()
            try:
                self.db.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self.table,
                                "Key": item_of({"pk": _pk(sweep_id), "sk": "SWEEP"}),
                                "UpdateExpression": (
                                    "SET next_trial = :next, updated_at = :now ADD ended :one, #count :one"
                                ),
                                "ConditionExpression": "next_trial = :taken",
                                "ExpressionAttributeNames": {"#count": f"ended_{state}"},
                                "ExpressionAttributeValues": item_of(
                                    {":next": min(taken + 1, total), ":taken": taken, ":one": 1, ":now": now}
                                ),
                            }
                        },
                        {
                            "Update": {
                                "TableName": self.table,
                                "Key": item_of({"pk": _pk(sweep_id), "sk": _trial_sk(trial)}),
                                "UpdateExpression": "SET successor = :successor, end_state = :state, ended_at = :now",
                                "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(successor)",
                                "ExpressionAttributeValues": item_of(
                                    {":successor": successor, ":state": state, ":now": now}
                                ),
                            }
                        },
                    ]
                )
                return successor
            except ClientError as exc:
                if not _conditional_failed(exc):
                    raise
                # Another trial's end moved next_trial, or a repeat of this one: look again, after a
                # random pause so that a wave of trials ending together does not collide in step.
                time.sleep(random.uniform(0.005, 0.05))
        raise RuntimeError(f"sweep {sweep_id!r}: could not assign trial {trial}'s slot after {_ASSIGN_ATTEMPTS} tries")

    def update_sweep(self, sweep_id: str, status: SweepStatus, values: dict[str, Any]) -> bool:
        """Move a RUNNING sweep to `status` with `values`; False if it was not RUNNING any more."""
        values = {"status": status, "updated_at": time.time(), **values}
        names = {f"#k{i}": k for i, k in enumerate(values)} | {"#s": "status"}
        vals = item_of({f":v{i}": v for i, v in enumerate(values.values())} | {":running": SweepStatus.RUNNING})
        try:
            self.db.update_item(
                TableName=self.table,
                Key=item_of({"pk": _pk(sweep_id), "sk": "SWEEP"}),
                UpdateExpression="SET " + ", ".join(f"#k{i} = :v{i}" for i in range(len(values))),
                ConditionExpression="#s = :running",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=vals,
            )
            return True
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            return False

    # -- rungs -----------------------------------------------------------------------------------
    def rung_entries(self, sweep_id: str, rung: int) -> list[dict[str, Any]]:
        return self._query(_pk(sweep_id), _rung_prefix(rung))

    def record_rung(self, sweep_id: str, rung: int, trial: int, value: float, decision: RungDecision) -> RungDecision:
        """Write the trial's decision at the rung unless one is there; the decision that stands."""
        key = {"pk": _pk(sweep_id), "sk": f"{_rung_prefix(rung)}{trial:06d}"}
        try:
            self.db.put_item(
                TableName=self.table,
                Item=item_of({**key, "trial": trial, "rung": rung, "value": value, "decision": decision}),
                ConditionExpression="attribute_not_exists(pk)",
            )
            return decision
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
        stored = self._get(key["pk"], key["sk"])
        return RungDecision(stored["decision"]) if stored else decision
