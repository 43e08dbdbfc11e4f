"""The DynamoDB run table in memory: the run, epoch, notice, sweep, trial and rung items of
DynamoRunStore, each write with the condition the real one sends. A refused condition answers as
the adapter answers it (None, False, the stored decision, or botocore's ClientError where the real
adapter lets it through). Values go in and come out as DynamoDB gives them back (trainer.stores.items)."""

from __future__ import annotations

import copy
import json
from typing import Any

from botocore.exceptions import ClientError

from tests.fakes.clock import FakeClock, atomic
from trainer.errors import RunNotFound
from trainer.statemachine import may_become
from trainer.stores.items import plain, public, serialize
from trainer.stores.run_store import CHECKPOINTS, FAILURE_REASON, HANDOFF, WORKER_STEPS, Handoff, checkpoint_name
from trainer.stores.sweep_store import NO_SUCCESSOR
from trainer.vocabulary import Claim, Notice, RungDecision, RunStatus, SweepStatus

Key = tuple[str, str]


def _stored(value: Any) -> Any:
    """A value as DynamoDB returns it: through the adapter's own serializer and back, an enum as
    the plain string it is stored as."""
    return _untyped(plain({"v": serialize(value)})["v"])


def _untyped(value: Any) -> Any:
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, dict):
        return {k: _untyped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untyped(v) for v in value]
    return value


def condition_failed(operation: str) -> ClientError:
    error = {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"}
    return ClientError({"Error": error}, operation)


@atomic
class FakeRunStore:
    def __init__(self, clock: FakeClock | None = None, table: str = "fake-runs") -> None:
        self.clock = clock or FakeClock()
        self.table = table
        self.items: dict[Key, dict[str, Any]] = {}

    # -- the table -----------------------------------------------------------------------------
    def _put(self, key: Key, values: dict[str, Any]) -> None:
        item = {k: _stored(v) for k, v in values.items() if v is not None}
        self.items[key] = {"pk": key[0], "sk": key[1], **item}

    def _set(self, key: Key, values: dict[str, Any]) -> dict[str, Any]:
        """UpdateItem's SET: creates the item when it is not there."""
        item = self.items.setdefault(key, {"pk": key[0], "sk": key[1]})
        item.update({k: _stored(v) for k, v in values.items()})
        return copy.deepcopy(item)

    def _get(self, key: Key) -> dict[str, Any] | None:
        item = self.items.get(key)
        return copy.deepcopy(item) if item is not None else None

    def _query(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        keys = sorted(k for k in self.items if k[0] == pk and k[1].startswith(prefix))
        return [copy.deepcopy(self.items[k]) for k in keys]

    @staticmethod
    def _run(run_id: str) -> Key:
        return (f"RUN#{run_id}", "RUN")

    # -- runs ----------------------------------------------------------------------------------
    def create_run(self, run_id: str, request: dict[str, Any], config_json: str, total_steps: int) -> bool:
        if self._run(run_id) in self.items:
            return False
        now = self.clock()
        self._put(
            self._run(run_id),
            {
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
            },
        )
        return True

    def restore_run(self, run: dict[str, Any]) -> None:
        self._put(self._run(run["run_id"]), public(run))

    def exists(self, run_id: str) -> bool:
        return self._run(run_id) in self.items

    def get_run(self, run_id: str) -> dict[str, Any]:
        found = self._get(self._run(run_id))
        if found is None:
            raise RunNotFound(f"no run {run_id!r} in table {self.table}")
        return found

    def record_progress(self, run_id: str, last_seq: int) -> None:
        if self._progress(run_id, last_seq):
            self.items[self._run(run_id)].pop(HANDOFF, None)

    def record_restored_position(self, run_id: str, last_seq: int) -> None:
        self._progress(run_id, last_seq)

    def _progress(self, run_id: str, last_seq: int) -> bool:
        run = self.items.get(self._run(run_id))
        if run is None or not run["last_seq"] < last_seq:
            return False
        if run["status"] not in (RunStatus.RUNNING, RunStatus.FAILED):
            return False
        now = self.clock()
        self._set(
            self._run(run_id),
            {"last_seq": last_seq, "last_step_at": now, "updated_at": now, "status": RunStatus.RUNNING},
        )
        return True

    def put_epochs(self, run_id: str, epochs: list[dict[str, Any]]) -> None:
        for epoch in epochs:
            self._put((f"RUN#{run_id}", f"EPOCH#{epoch['epoch']:06d}"), dict(epoch))

    def epochs(self, run_id: str) -> list[dict[str, Any]]:
        return self._query(f"RUN#{run_id}", "EPOCH#")

    def epochs_from(self, run_id: str, first: int) -> list[dict[str, Any]]:
        return [e for e in self.epochs(run_id) if int(e["epoch"]) >= first]

    def last_epoch(self, run_id: str) -> dict[str, Any] | None:
        found = self.epochs(run_id)
        return found[-1] if found else None

    def _transition(
        self,
        run_id: str,
        to: RunStatus,
        values: dict[str, Any],
        handing_off: Handoff | None = None,
        generation: int | None = None,
    ) -> dict[str, Any] | None:
        run = self.items.get(self._run(run_id))
        if run is None or run["status"] not in may_become(to):
            return None
        if to == RunStatus.FAILED and HANDOFF in run and run[HANDOFF] != handing_off:
            return None  # only the pending hand-off's owner may fail the run
        if to == RunStatus.FAILED and generation is not None and int(run.get("resumes", 0)) != generation:
            return None  # a copy from before a resume fails no chain of the resumed run
        return self._set(self._run(run_id), {"status": to, **values})

    def mark_succeeded(self, run_id: str, metrics: dict[str, Any]) -> dict[str, Any] | None:
        return self._transition(run_id, RunStatus.SUCCEEDED, {"updated_at": self.clock(), **metrics})

    def generation(self, run_id: str) -> int | None:
        run = self.items.get(self._run(run_id))
        return None if run is None else int(run.get("resumes", 0))

    def mark_failed(
        self,
        run_id: str,
        reason: str,
        step: str,
        error_type: str,
        handing_off: Handoff | None = None,
        generation: int | None = None,
    ) -> dict[str, Any] | None:
        values = {FAILURE_REASON: reason[:2000], "failed_step": step, "error_type": error_type}
        now = self.clock()
        run = self._transition(run_id, RunStatus.FAILED, {**values, "updated_at": now}, handing_off, generation)
        if run is not None:
            return run
        found = self._get(self._run(run_id))
        if found is None or found["status"] != RunStatus.FAILED:
            return None
        return found if generation is None or int(found.get("resumes", 0)) == generation else None

    def mark_cancelled(self, run_id: str) -> dict[str, Any] | None:
        return self._transition(run_id, RunStatus.CANCELLED, {"updated_at": self.clock()})

    def mark_stopped(self, run_id: str, values: dict[str, Any]) -> dict[str, Any] | None:
        return self._transition(run_id, RunStatus.STOPPED, {"updated_at": self.clock(), **values})

    def resumed(self, run_id: str, stalled_before: float) -> dict[str, Any] | None:
        run = self.items.get(self._run(run_id))
        if run is None:
            return None
        stalled = run["status"] == RunStatus.RUNNING and run["last_step_at"] < stalled_before
        if run["status"] != RunStatus.FAILED and not stalled:
            return None
        for name in (FAILURE_REASON, "failed_step", "error_type", WORKER_STEPS):
            run.pop(name, None)
        now = self.clock()
        values = {"status": RunStatus.RUNNING, "updated_at": now, "last_step_at": now, HANDOFF: Handoff.RESUME}
        return self._set(self._run(run_id), {**values, "resumes": int(run.get("resumes", 0)) + 1})

    def record_worker_step(self, run_id: str, worker: int, step: int, generation: int) -> None:
        run = self.items.get(self._run(run_id))
        if run is None or run["status"] != RunStatus.RUNNING or int(run.get("resumes", 0)) != generation:
            return
        steps = {**run.get(WORKER_STEPS, {}), str(worker): step}
        self._set(self._run(run_id), {WORKER_STEPS: steps, "last_step_at": self.clock()})
        run.pop(HANDOFF, None)

    def handed_off(self, run_id: str) -> bool:
        run = self.items.get(self._run(run_id))
        if run is None or run["status"] != RunStatus.RUNNING:
            return False
        run.pop(HANDOFF, None)
        return True

    def record_checkpoint(self, run_id: str, epoch: int, digest: str) -> None:
        run = self.items.get(self._run(run_id))
        if run is None or CHECKPOINTS not in run:
            raise condition_failed("UpdateItem")
        run[CHECKPOINTS][checkpoint_name(epoch)] = digest

    # -- notices -------------------------------------------------------------------------------
    @staticmethod
    def _notice(run_id: str, kind: Notice, key: str) -> Key:
        return (f"RUN#{run_id}", f"NOTICE#{kind}#{key}")

    def claim_notice(self, run_id: str, kind: Notice, key: str, token: str, lease_s: float) -> Claim:
        now = self.clock()
        item = self.items.get(self._notice(run_id, kind, key))
        if item is None or (item["state"] == "pending" and item["lease_until"] < now):
            claims = int(item.get("claims", 0)) + 1 if item else 1
            values = {"state": "pending", "token": token, "lease_until": now + lease_s, "claims": claims}
            self._set(self._notice(run_id, kind, key), values)
            return Claim.ACQUIRED
        return Claim.DONE if item["state"] == "sent" else Claim.BUSY

    def fence_notice(self, run_id: str, kind: Notice, key: str, token: str, left_s: float) -> bool:
        now = self.clock()
        item = self.items.get(self._notice(run_id, kind, key))
        if item is None or item.get("state") != "pending" or item.get("token") != token:
            return False
        if not item["lease_until"] > now + left_s:
            return False
        self._set(self._notice(run_id, kind, key), {"fenced_at": now, "sends": int(item.get("sends", 0)) + 1})
        return True

    def release_notice(self, run_id: str, kind: Notice, key: str, token: str) -> None:
        item = self.items.get(self._notice(run_id, kind, key))
        if item is not None and item.get("state") == "pending" and item.get("token") == token:
            del self.items[self._notice(run_id, kind, key)]

    def notice_sent(self, run_id: str, kind: Notice, key: str) -> None:
        self._set(self._notice(run_id, kind, key), {"state": "sent", "sent_at": self.clock()})

    def notice(self, run_id: str, kind: Notice, key: str) -> dict[str, Any] | None:
        """For the tests: a message's claim item as stored."""
        return self._get(self._notice(run_id, kind, key))

    # -- sweeps --------------------------------------------------------------------------------
    @staticmethod
    def _sweep(sweep_id: str) -> Key:
        return (f"SWEEP#{sweep_id}", "SWEEP")

    @staticmethod
    def _trial(sweep_id: str, trial: int) -> Key:
        return (f"SWEEP#{sweep_id}", f"TRIAL#{trial:06d}")

    def create_sweep(self, sweep_id: str, values: dict[str, Any]) -> bool:
        if self._sweep(sweep_id) in self.items:
            return False
        now = self.clock()
        item = {"sweep_id": sweep_id, "status": SweepStatus.RUNNING, **values}
        self._put(self._sweep(sweep_id), item | {"next_trial": 0, "ended": 0, "created_at": now, "updated_at": now})
        return True

    def put_trials(self, sweep_id: str, trials: list[dict[str, Any]]) -> None:
        for trial in trials:
            if self._trial(sweep_id, trial["trial"]) not in self.items:
                self._put(self._trial(sweep_id, trial["trial"]), dict(trial))

    def note_trial_error(self, sweep_id: str, trial: int, error: str) -> None:
        self._set(self._trial(sweep_id, trial), {"start_error": error[:2000]})

    def sweep_exists(self, sweep_id: str) -> bool:
        return self._sweep(sweep_id) in self.items

    def get_sweep(self, sweep_id: str) -> dict[str, Any]:
        found = self._get(self._sweep(sweep_id))
        if found is None:
            raise RunNotFound(f"no sweep {sweep_id!r} in table {self.table}")
        return found

    def get_trial(self, sweep_id: str, trial: int) -> dict[str, Any]:
        found = self._get(self._trial(sweep_id, trial))
        if found is None:
            raise RunNotFound(f"sweep {sweep_id!r} has no trial {trial}")
        return found

    def sweep_trials(self, sweep_id: str) -> list[dict[str, Any]]:
        return sorted(self._query(f"SWEEP#{sweep_id}", "TRIAL#"), key=lambda t: t["trial"])

    def claim_start(self, sweep_id: str, count: int) -> list[int]:
        sweep = self.items.get(self._sweep(sweep_id))
        if sweep is not None and sweep.get("next_trial") == 0:
            self._set(self._sweep(sweep_id), {"next_trial": count})
        return list(range(count))

    def assign_successor(self, sweep_id: str, trial: int, state: RunStatus) -> int:
        """One transaction, as the real one: the slot's successor and the sweep's counts together."""
        mine = self.get_trial(sweep_id, trial)
        if "successor" in mine:
            return int(mine["successor"])
        sweep = self.get_sweep(sweep_id)
        taken, total = int(sweep["next_trial"]), int(sweep["trials"])
        successor = taken if taken < total else NO_SUCCESSOR
        now = self.clock()
        counts = {"ended": int(sweep["ended"]) + 1, f"ended_{state}": int(sweep.get(f"ended_{state}", 0)) + 1}
        self._set(self._sweep(sweep_id), {"next_trial": min(taken + 1, total), "updated_at": now, **counts})
        self._set(self._trial(sweep_id, trial), {"successor": successor, "end_state": state, "ended_at": now})
        return successor

    def update_sweep(self, sweep_id: str, status: SweepStatus, values: dict[str, Any]) -> bool:
        sweep = self.items.get(self._sweep(sweep_id))
        if sweep is None or sweep["status"] != SweepStatus.RUNNING:
            return False
        self._set(self._sweep(sweep_id), {"status": status, "updated_at": self.clock(), **values})
        return True

    def rung_entries(self, sweep_id: str, rung: int) -> list[dict[str, Any]]:
        return self._query(f"SWEEP#{sweep_id}", f"RUNG#{rung:06d}#")

    def record_rung(self, sweep_id: str, rung: int, trial: int, value: float, decision: RungDecision) -> RungDecision:
        key = (f"SWEEP#{sweep_id}", f"RUNG#{rung:06d}#{trial:06d}")
        stored = self.items.get(key)
        if stored is not None:
            return RungDecision(stored["decision"])
        self._put(key, {"trial": trial, "rung": rung, "value": value, "decision": decision})
        return decision
