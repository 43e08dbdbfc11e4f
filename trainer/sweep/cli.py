"""`python -m trainer sweep ...`: run a sweep on the local cloud (or start it on AWS through
LaunchLambda), and read one: its leaderboard, its validation curves, and cancel."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from trainer import keys, workspace
from trainer import request as request_mod
from trainer.errors import RequestError, RunNotFound
from trainer.sweep import scheduler, space
from trainer.vocabulary import RunStatus, SweepStatus

POLL_S = 0.5
COMMANDS = ("status", "plot", "cancel")


def main(args: Any, runs_dir: Path, invoke_launch_function: Any) -> int:
    if args.what in COMMANDS:
        if not args.sweep_id:
            print(f"sweep {args.what} needs a SWEEP_ID", file=sys.stderr)
            return 2
        if problem := request_mod.id_problem(args.sweep_id, space.SWEEP_ID_LONGEST):
            print(f"sweep id {args.sweep_id!r} {problem}", file=sys.stderr)  # before it names a folder
            return 2
        return {"status": _status, "plot": _plot, "cancel": _cancel}[args.what](args, runs_dir, invoke_launch_function)
    try:
        payload = {"action": "sweep", **json.loads(Path(args.what).read_text())}
    except (OSError, json.JSONDecodeError) as exc:
        print(f"cannot read the sweep {args.what}: {exc}", file=sys.stderr)
        return 2
    if os.environ.get("LAUNCH_FUNCTION_ARN"):
        return invoke_launch_function(payload)
    _, problems = space.parse(payload)
    if problems:  # refused before a local cloud is started for it; LaunchLambda checks the rest
        print(str(RequestError(problems, "sweep request")), file=sys.stderr)
        return 2
    return _run_local(payload, runs_dir, args.json)


def _run_local(payload: dict[str, Any], runs_dir: Path, as_json: bool) -> int:
    """The sweep on the local cloud, its trials in their own execution environments; the record
    and the best model are copied to runs_dir/SWEEP_ID/ at the end."""
    from trainer.local import cloud_runner

    started = time.monotonic()
    with cloud_runner.cloud_session(attach=True) as session:
        base = payload.get("base")
        if isinstance(base, dict):
            payload = {**payload, "base": cloud_runner.stage_dataset(session, base)}
        try:
            launched = cloud_runner.invoke_launch(session, payload)
        except cloud_runner.LaunchRefused as exc:
            print(str(exc), file=sys.stderr)
            return 2
        sweep_id = launched["sweep_id"]
        folder = runs_dir / sweep_id
        folder.mkdir(parents=True, exist_ok=True)
        marker, interrupted = folder / "CANCEL", False
        with workspace.sigterm_as_interrupt():
            try:
                workspace.write_follower(folder, session.env["TABLE_NAME"])
                current = _follow(session, sweep_id, marker, as_json)
            except KeyboardInterrupt:
                # The trials stop at their next step and the record so far is kept; the sweep ends CANCELLED.
                print(f"\ninterrupted: cancelling {sweep_id} and keeping its record so far...", file=sys.stderr)
                cloud_runner.invoke_launch(session, {"action": "cancel", "sweep_id": sweep_id})
                current, interrupted = scheduler.status(session.services, sweep_id), True
            finally:
                (folder / workspace.FOLLOWER).unlink(missing_ok=True)
        marker.unlink(missing_ok=True)
        current["duration_s"] = round(time.monotonic() - started, 3)
        best = current.get("summary", {}).get("best_run_id")
        if best:
            (folder / "best.npz").write_bytes(session.services.blob_store.get(keys.best_model_key(sweep_id)))
            # The copy outlives this cloud's bucket: it names the model beside it.
            current["summary"].pop("best_model_uri", None)
            current["summary"]["best_model"] = str(folder / "best.npz")
        (folder / "sweep.json").write_text(json.dumps(current, indent=1, default=str))
    if as_json:
        print(json.dumps({k: v for k, v in current.items() if k != "leaderboard"}, default=str))
    else:
        print(file=sys.stderr)
        _print_board(current)
        if best:
            print(f"best model: {folder / 'best.npz'}; record: {folder / 'sweep.json'}")
    if interrupted:
        print(f"sweep {sweep_id} cancelled; its record so far: {folder / 'sweep.json'}", file=sys.stderr)
        return workspace.INTERRUPTED
    return 0 if current["status"] == SweepStatus.ENDED else 1


def _follow(session: Any, sweep_id: str, marker: Path, as_json: bool) -> dict[str, Any]:
    """Watch the sweep until it ends, cancelling it when `lnn sweep cancel` leaves its marker."""
    from trainer.local import cloud_runner

    cancelled = False
    while True:
        current = scheduler.status(session.services, sweep_id)
        if current["status"] != SweepStatus.RUNNING:
            return current
        if not as_json:
            counts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(current["by_state"].items()))
            print(f"\r{sweep_id}: {counts}   ", end="", file=sys.stderr, flush=True)
        if marker.exists() and not cancelled:
            cloud_runner.invoke_launch(session, {"action": "cancel", "sweep_id": sweep_id})
            cancelled = True
        time.sleep(POLL_S)


def _load(sweep_id: str, runs_dir: Path) -> dict[str, Any]:
    """From DynamoDB when TABLE_NAME is set (works against AWS), else the local copy."""
    if os.environ.get("TABLE_NAME"):
        from trainer.stores.run_store import DynamoRunStore

        return scheduler.status(scheduler.Stores(DynamoRunStore(os.environ["TABLE_NAME"])), sweep_id)
    with workspace.live(runs_dir / sweep_id) as table:
        if table is not None:  # a `sweep` in another terminal runs it now
            from trainer.stores.run_store import DynamoRunStore

            return scheduler.status(scheduler.Stores(DynamoRunStore(table)), sweep_id)
    path = runs_dir / sweep_id / "sweep.json"
    if not path.is_file():
        raise RunNotFound(f"no sweep {sweep_id!r}: set TABLE_NAME to read DynamoDB, or run it locally first ({path})")
    return json.loads(path.read_text())


def _print_board(status: dict[str, Any]) -> None:
    print(f"sweep {status['sweep_id']}: {status['status']}; trials by state: {json.dumps(status['by_state'])}")
    # Compute seconds, as the footer's total counts them (a trial's wall time includes its waits).
    print(f"{'rank':>4}  {'trial':>5}  {'state':<11}  {'val acc':>7}  {'epochs':>6}  {'compute s':>9}  parameters")
    for row in status["leaderboard"]:
        accuracy = "-" if row["validation_accuracy"] is None else f"{row['validation_accuracy']:.4f}"
        rank = "-" if row.get("rank") is None else row["rank"]
        print(
            f"{rank:>4}  {row['trial']:>5}  {row['state']:<11}  {accuracy:>7}  {row['epochs_run']:>6}  "
            f"{row['compute_s']:>9.1f}  {space.describe(row['params'])}"
        )
    summary = status.get("summary")
    if summary and "best_trial" in summary:
        print(
            f"best: trial {summary['best_trial']} ({space.describe(summary['best_params'])}): validation accuracy "
            f"{summary['best_validation_accuracy']:.4f}, test accuracy {summary['best_test_accuracy']:.4f} "
            f"(the test set is scored for this report only); {summary['compute_s']:.1f} compute seconds in all"
        )


def _status(args: Any, runs_dir: Path, _: Any) -> int:
    status = _load(args.sweep_id, runs_dir)
    if args.json:
        print(json.dumps(status, default=str))
    else:
        _print_board(status)
    return 0


def _plot(args: Any, runs_dir: Path, _: Any) -> int:
    status = _load(args.sweep_id, runs_dir)
    fig = figure(status)
    if fig is None:
        print(f"sweep {args.sweep_id} has no recorded epochs yet", file=sys.stderr)
        return 1
    fig.savefig(args.output)
    print(f"wrote {args.output}")
    return 0


def figure(status: dict[str, Any]) -> Any:
    """Every trial's validation curve, labelled as the leaderboard lists it; None before any epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in status["leaderboard"] if r.get("curve")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for row in rows:
        epochs = list(range(1, len(row["curve"]) + 1))
        stopped = row["state"] == RunStatus.STOPPED
        label = f"#{row['rank']} trial {row['trial']}: {space.describe(row['params'])}"
        (line,) = ax.plot(epochs, row["curve"], alpha=0.45 if stopped else 0.9, lw=1 if stopped else 1.6, label=label)
        if stopped:
            ax.plot(epochs[-1], row["curve"][-1], "x", color=line.get_color(), ms=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"LNN sweep {status['sweep_id']}: {len(rows)} trials (x: stopped early)")
    ax.grid(alpha=0.3)
    # In the leaderboard's order, so the legend reads as the board does.
    ax.legend(fontsize="small", loc="best", ncol=1 if len(rows) <= 12 else 2)
    fig.tight_layout()
    return fig


def _cancel(args: Any, runs_dir: Path, invoke_launch_function: Any) -> int:
    if os.environ.get("LAUNCH_FUNCTION_ARN"):
        return invoke_launch_function({"action": "cancel", "sweep_id": args.sweep_id})
    folder = runs_dir / args.sweep_id
    if not folder.is_dir():
        raise RunNotFound(f"no sweep {args.sweep_id!r} in {runs_dir} (set LAUNCH_FUNCTION_ARN to cancel on AWS)")
    if (folder / "sweep.json").is_file():
        print(f"sweep {args.sweep_id} is over already", file=sys.stderr)
        return 2
    if not workspace.followed(folder):
        raise RunNotFound(f"no sweep {args.sweep_id!r} to cancel: nothing recorded in {folder} and nothing runs it")
    (folder / "CANCEL").touch()  # the `sweep` command running it cancels it at its next look
    print(json.dumps({"sweep_id": args.sweep_id, "status": "CANCEL_REQUESTED"}))
    return 0
