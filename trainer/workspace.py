"""Where the `lnn` commands find runs, and which cloud they talk to.

Three places, in this order: the DynamoDB table the environment names (TABLE_NAME: AWS, or the
`make up` cloud after `eval "$(make -s up)"`); the local cloud a `train` in another terminal is
following now (its folder holds a FOLLOWER file with that process's id and how to reach its cloud);
and the copies `train` leaves in lnn-runs/ when it ends.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import RunNotFound
from trainer.runconfig import RunConfig
from trainer.stores.items import plain, public

FOLLOWER = "FOLLOWER"
INTERRUPTED = 130  # a shell's exit status for a command ended by Ctrl-C
# What a reader needs to reach a followed run's cloud: its endpoint, its key, its table.
_REACH = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION")


@dataclass(frozen=True)
class Record:
    run: dict[str, Any]
    epochs: list[dict[str, Any]]
    source: str  # said to the user: which cloud, or which copy, this came from


def write_follower(run_dir: Path, table: str) -> Path:
    """Mark the run as followed by this process, with what another terminal needs to read it live.
    The file holds the local cloud's key, so only its owner may read it."""
    path = run_dir / FOLLOWER
    body = {"pid": os.getpid(), "table": table, "env": {k: os.environ[k] for k in _REACH if k in os.environ}}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(body, out)
    return path


def _follower(run_dir: Path) -> dict[str, Any] | None:
    try:
        body = json.loads((run_dir / FOLLOWER).read_text())
        os.kill(int(body["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none, unreadable, or its process is gone (a crash leaves the file behind)
    return body


def followed(run_dir: Path) -> bool:
    """Whether a `train` is following this run now."""
    return _follower(run_dir) is not None


@contextmanager
def _reaching(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a closed terminal, a service manager) stops a command as Ctrl-C does; and Ctrl-C
    (SIGINT) does, even when the command was started with SIGINT ignored (as a shell starts a
    background job), which Python would otherwise keep."""

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig, handler in _INTERRUPTS.items()} | {
        signal.SIGTERM: signal.signal(signal.SIGTERM, interrupt)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_INTERRUPTS = {signal.SIGINT: signal.default_int_handler}


@contextmanager
def live(run_dir: Path) -> Iterator[str | None]:
    """The table of the cloud a command in another terminal follows this run or sweep in, with this
    process pointed at that cloud meanwhile; None when nothing follows it now."""
    follower = _follower(run_dir)
    if follower is None:
        yield None
        return
    with _reaching(follower["env"]):
        yield follower["table"]


def _from_table(table: str, run_id: str, source: str) -> Record:
    from trainer.stores.run_store import DynamoRunStore

    store = DynamoRunStore(table)
    run = store.get_run(run_id)
    epochs = sorted(store.epochs(run_id), key=lambda e: e["epoch"])
    return Record(public(run), [public(e) for e in epochs], source)


def load(run_id: str, runs_dir: Path) -> Record:
    """The run from the first place that has it; RunNotFound names where it looked."""
    if os.environ.get("TABLE_NAME"):
        return _from_table(os.environ["TABLE_NAME"], run_id, f"DynamoDB table {os.environ['TABLE_NAME']}")
    record = _local(runs_dir / run_id)
    if record is None:
        path = runs_dir / run_id / "run.json"
        raise RunNotFound(f"no run {run_id!r}: set TABLE_NAME to read DynamoDB, or run it locally first ({path})")
    return record


def _local(run_dir: Path) -> Record | None:
    """The run a `train` follows now, read from its cloud; else the copy it left; else None."""
    live = _follower(run_dir)
    if live is not None:
        with _reaching(live["env"]):
            source = f"the local cloud of the train following it (pid {live['pid']})"
            return _from_table(live["table"], run_dir.name, source)
    path = run_dir / "run.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    run = public(saved["run"])
    # The copy outlives the cloud it came from: point at the model beside it, not at that cloud's bucket.
    run.pop("model_uri", None)
    if (run_dir / "model.npz").is_file():
        run["model"] = str(run_dir / "model.npz")
    return Record(run, [public(e) for e in saved["epochs"]], f"the local copy {path}")


def progress(record: Record, now: float | None = None) -> dict[str, Any]:
    """How far a run is and how fast it goes, from its item and its recorded epochs."""
    run, now = record.run, time.time() if now is None else now
    total, done = int(run.get("total_steps") or 0), int(run.get("last_seq") or 0) + 1
    steps = worker_steps(run)
    if steps and isinstance(run.get("config"), str):  # a data-parallel run: as far as its slowest worker
        config = RunConfig.from_json(run["config"])
        total, done = config.epochs * config.batches, min(steps.values()) + 1
    shown: dict[str, Any] = {"percent": round(100.0 * min(done, total) / total, 1) if total else None}
    if record.epochs:
        shown["cost"] = record.epochs[-1]["cost"]
        for key in ("validation_cost", "validation_accuracy"):  # a run that holds examples out
            if record.epochs[-1].get(key) is not None:
                shown[key] = record.epochs[-1][key]
    request = run.get("request") or {}
    epochs = (json.loads(request) if isinstance(request, str) else request).get("epochs")
    started = run.get("created_at")
    if started is not None and record.epochs and now > float(started):
        rate = len(record.epochs) / (now - float(started))
        shown["epochs_per_s"] = round(rate, 2)
        if epochs and rate > 0 and run.get("status") == "RUNNING":
            shown["eta_s"] = round((epochs - len(record.epochs)) / rate, 1)
    return shown


def worker_steps(run: Mapping[str, Any]) -> dict[str, int]:
    """A data-parallel run's workers and the step each has gathered (the workers' heartbeats), in
    the workers' order; empty for a chain."""
    steps = run.get("worker_steps") or {}
    return {str(w): int(steps[w]) for w in sorted(steps, key=int)}


def local_runs(runs_dir: Path) -> Iterator[dict[str, Any]]:
    """A row per folder in runs_dir: runs and sweeps, finished or followed now."""
    if not runs_dir.is_dir():
        return
    for folder in sorted(runs_dir.iterdir()):
        row = _local_row(folder)
        if row is not None:
            yield row


def _local_row(folder: Path) -> dict[str, Any] | None:
    if (folder / "sweep.json").is_file():
        sweep = json.loads((folder / "sweep.json").read_text())
        best = (sweep.get("summary") or {}).get("best_validation_accuracy")
        return _row(folder.name, "sweep", sweep.get("status"), None, best, folder.stat().st_mtime, "local copy")
    try:
        record = _local(folder)
    except (OSError, ValueError, KeyError):
        record = None
    if record is None:  # what an interrupted or crashed `train` leaves
        return _row(folder.name, "run", "INTERRUPTED", None, None, folder.stat().st_mtime, "an empty folder")
    cost = record.epochs[-1]["cost"] if record.epochs else record.run.get("final_cost")
    where = "followed now" if followed(folder) else "local copy"
    return _row(folder.name, "run", record.run.get("status"), len(record.epochs), cost, folder.stat().st_mtime, where)


def table_runs(table: str) -> Iterator[dict[str, Any]]:
    """A row per run and sweep in the table (a scan: the table holds one stack's runs)."""
    from trainer.aws import client

    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "sk = :run OR sk = :sweep",
        "ExpressionAttributeValues": {":run": {"S": "RUN"}, ":sweep": {"S": "SWEEP"}},
    }
    while True:
        resp = client("dynamodb").scan(**kwargs)
        for item in map(plain, resp.get("Items", [])):
            kind = "sweep" if item["sk"] == "SWEEP" else "run"
            key = "sweep_id" if kind == "sweep" else "run_id"
            value = (
                item.get("final_cost")
                if kind == "run"
                else json.loads(item.get("summary") or "{}").get("best_validation_accuracy")
            )
            yield _row(item.get(key), kind, item.get("status"), None, value, item.get("created_at"), table)
        if "LastEvaluatedKey" not in resp:
            return
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def _row(ident: Any, kind: str, status: Any, epochs: int | None, value: Any, since: Any, where: str) -> dict[str, Any]:
    age = None if since is None else round(time.time() - float(since))
    return {"id": ident, "kind": kind, "status": status, "epochs": epochs, "value": value, "age_s": age, "where": where}
