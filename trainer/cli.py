"""`python -m trainer`: train locally, and inspect runs (status, plot, predict); sweeps (trainer.sweep.cli)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from trainer import lifecycle
from trainer.errors import RunNotFound
from trainer.request import RUN_ID_LONGEST, id_problem
from trainer.vocabulary import RunStatus

RUNS_DIR = Path(os.environ.get("LNN_RUNS_DIR", "lnn-runs"))
STALL_AFTER_S = lifecycle.DEFAULT_STALL_AFTER_S

CAT_REQUEST = {
    "neurons": {"layer1": 20, "layer2": 7, "layer3": 5, "layer4": 1},
    "activations": {"layer1": "relu", "layer2": "relu", "layer3": "relu", "layer4": "sigmoid"},
    "epochs": 2500,
    "learning_rate": 0.0075,
    "optimizer": "gd",
    "seed": 1,
    "init": "scaled_normal",
}
BUILTIN_REQUESTS: dict[str, dict[str, Any]] = {
    "moons": {
        "neurons": {"layer1": 16, "layer2": 8, "layer3": 1},
        "activations": {"layer1": "tanh", "layer2": "relu", "layer3": "sigmoid"},
        "epochs": 600,
        "learning_rate": 0.01,
        "optimizer": "adam",
        "batch_size": 64,
        "init": "he",
    },
    "circles": {
        "neurons": {"layer1": 16, "layer2": 1},
        "activations": {"layer1": "relu", "layer2": "sigmoid"},
        "epochs": 400,
        "learning_rate": 0.01,
        "optimizer": "adam",
        "batch_size": 64,
        "init": "he",
    },
    "spirals": {
        "neurons": {"layer1": 64, "layer2": 32, "layer3": 3},
        "activations": {"layer1": "relu", "layer2": "relu", "layer3": "softmax"},
        "epochs": 600,
        "learning_rate": 0.01,
        "optimizer": "adam",
        "batch_size": 64,
        "init": "he",
    },
    "blobs": {
        "neurons": {"layer1": 16, "layer2": 4},
        "activations": {"layer1": "relu", "layer2": "softmax"},
        "epochs": 200,
        "learning_rate": 0.01,
        "optimizer": "adam",
        "batch_size": 64,
        "init": "he",
    },
}


def demo_request(dataset: str) -> dict[str, Any]:
    if dataset in BUILTIN_REQUESTS:
        return {"dataset": dataset, "seed": 1, **BUILTIN_REQUESTS[dataset]}
    return {"dataset": dataset, **CAT_REQUEST}


def _train(payload: dict[str, Any], as_json: bool, quiet: bool = False) -> int:
    """Train on the local cloud: LaunchLambda through the Lambda API, the chain in its own processes."""
    from tqdm import tqdm

    from trainer.local import cloud_runner, runner

    started = time.monotonic()
    with cloud_runner.cloud_session() as session:
        try:
            launched = cloud_runner.invoke_launch(session, cloud_runner.stage_dataset(session, payload))
        except cloud_runner.LaunchRefused as exc:
            print(str(exc), file=sys.stderr)
            return 2
        run_id = launched["run_id"]
        bar = tqdm(
            total=launched["epochs"],
            unit="epoch",
            desc=run_id,
            disable=quiet or as_json,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        steps_per_epoch = max(1, launched["total_steps"] // max(1, launched["epochs"]))

        def progress(run: dict[str, Any]) -> None:
            done = min(launched["epochs"], (int(run.get("last_seq") or 0) + 1) // steps_per_epoch)
            bar.update(done - bar.n)

        # `python -m trainer cancel RUN_ID` from another terminal leaves this marker.
        cancel_marker = RUNS_DIR / run_id / "CANCEL"
        (RUNS_DIR / run_id).mkdir(parents=True, exist_ok=True)
        final = cloud_runner.follow(session, run_id, on_progress=progress, cancel_requested=cancel_marker.exists)
        cancel_marker.unlink(missing_ok=True)
        if final.get("status") == RunStatus.SUCCEEDED:
            bar.update(launched["epochs"] - bar.n)
        bar.close()
        dead = [
            f"{r['requestPayload'].get('run_id')} step {r['requestPayload'].get('seq')}: "
            f"{r['requestContext']['condition']}: {(r.get('responsePayload') or {}).get('errorMessage', '')}"
            for r in session.failure_records()
        ]
        record = runner.export_run(session, run_id, RUNS_DIR)
    run = record["run"]
    summary = {
        "run_id": run_id,
        "status": run["status"],
        "epochs": len(record["epochs"]),
        "final_cost": run.get("final_cost"),
        "train_accuracy": run.get("train_accuracy"),
        "test_accuracy": run.get("test_accuracy"),
        "duration_s": round(time.monotonic() - started, 3),
    }
    if not as_json:
        print(f"run {run_id}: {summary['status']} after {summary['epochs']} epochs in {summary['duration_s']} s")
        if run["status"] == RunStatus.SUCCEEDED:
            print(
                f"  final cost {summary['final_cost']:.6f}, train accuracy {summary['train_accuracy']:.4f}, "
                f"test accuracy {summary['test_accuracy']:.4f}"
            )
            print(f"  model: {record.get('model_path')}; history: {RUNS_DIR / run_id / 'run.json'}")
        else:
            print(f"  reason: {run.get('failure_reason')}")
        for line in dead:
            print(f"  undeliverable: {line}")
    else:
        print(json.dumps(summary))
    return 0 if run["status"] == RunStatus.SUCCEEDED else 1


def _invoke_launch_function(payload: dict[str, Any]) -> int:
    """Resume/cancel against AWS go through LaunchLambda: only it can reach the cache in the VPC."""
    from trainer.aws import client

    resp = client("lambda").invoke(FunctionName=os.environ["LAUNCH_FUNCTION_ARN"], Payload=json.dumps(payload).encode())
    body = json.loads(resp["Payload"].read() or b"null")
    if resp.get("FunctionError"):
        print(body.get("errorMessage", body) if isinstance(body, dict) else body, file=sys.stderr)
        return 2
    print(json.dumps(body))
    return 0


def _launch(args: argparse.Namespace) -> int:
    if not os.environ.get("LAUNCH_FUNCTION_ARN"):
        print(
            "launch starts a run on AWS: set LAUNCH_FUNCTION_ARN (the stack's output), or use `train` to run it here",
            file=sys.stderr,
        )
        return 2
    try:
        payload = json.loads(args.request.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"cannot read the request {args.request}: {exc}", file=sys.stderr)
        return 2
    return _invoke_launch_function(payload)


def _resume(args: argparse.Namespace) -> int:
    if os.environ.get("LAUNCH_FUNCTION_ARN"):
        return _invoke_launch_function({"action": "resume", "run_id": args.run_id})
    from trainer.local import cloud_runner, runner

    run_dir = RUNS_DIR / args.run_id
    if not (run_dir / "run.json").is_file():
        raise RunNotFound(f"no run {args.run_id!r} in {RUNS_DIR} (set LAUNCH_FUNCTION_ARN to resume on AWS)")
    started = time.monotonic()
    with cloud_runner.cloud_session() as session:
        # The saved run goes into the new stack's table and cache; LaunchLambda resumes it, as on AWS.
        run_id = runner.restore_run(session, run_dir)
        try:
            resumed = cloud_runner.invoke_launch(session, {"action": "resume", "run_id": run_id})
        except cloud_runner.LaunchRefused as exc:
            print(str(exc), file=sys.stderr)
            return 2
        print(f"resuming {run_id} from step {resumed['resumed_from_seq']} ({resumed['source']})", file=sys.stderr)
        cloud_runner.follow(session, run_id)
        record = runner.export_run(session, run_id, RUNS_DIR)
    run = record["run"]
    print(
        json.dumps(
            {
                "run_id": run_id,
                "status": run["status"],
                "final_cost": run.get("final_cost"),
                "test_accuracy": run.get("test_accuracy"),
                "duration_s": round(time.monotonic() - started, 3),
            }
        )
    )
    return 0 if run["status"] == RunStatus.SUCCEEDED else 1


def _cancel(args: argparse.Namespace) -> int:
    if os.environ.get("LAUNCH_FUNCTION_ARN"):
        return _invoke_launch_function({"action": "cancel", "run_id": args.run_id})
    run_dir = RUNS_DIR / args.run_id
    if not run_dir.is_dir():
        raise RunNotFound(f"no run {args.run_id!r} in {RUNS_DIR} (set LAUNCH_FUNCTION_ARN to cancel on AWS)")
    record_path = run_dir / "run.json"
    if record_path.is_file():  # the run is over: its local copy is what there is to cancel
        record = json.loads(record_path.read_text())
        if record["run"]["status"] in (RunStatus.SUCCEEDED, RunStatus.CANCELLED):
            print(f"run {args.run_id} is {record['run']['status']} already", file=sys.stderr)
            return 2
        record["run"]["status"] = RunStatus.CANCELLED
        record_path.write_text(json.dumps(record, indent=1, default=str))
        (run_dir / "state.npz").unlink(missing_ok=True)
    else:  # a `train` in another terminal follows the run: it cancels it when this marker appears
        (run_dir / "CANCEL").touch()
    print(json.dumps({"run_id": args.run_id, "status": RunStatus.CANCELLED}))
    return 0


def _load_record(run_id: str) -> dict[str, Any]:
    """From DynamoDB when TABLE_NAME is configured (works against AWS), else the copy `train` kept."""
    if os.environ.get("TABLE_NAME"):
        from trainer.stores.run_store import DynamoRunStore

        store = DynamoRunStore(os.environ["TABLE_NAME"])
        return {"run": store.get_run(run_id), "epochs": sorted(store.epochs(run_id), key=lambda e: e["epoch"])}
    path = RUNS_DIR / run_id / "run.json"
    if not path.is_file():
        raise RunNotFound(f"no run {run_id!r}: set TABLE_NAME to read DynamoDB, or run it locally first ({path})")
    return json.loads(path.read_text())


def _status(args: argparse.Namespace) -> int:
    record = _load_record(args.run_id)
    run = record["run"]
    shown = {
        k: run.get(k)
        for k in (
            "run_id",
            "status",
            "final_cost",
            "train_accuracy",
            "test_accuracy",
            "last_seq",
            "total_steps",
            "failure_reason",
            "failed_step",
            "model_uri",
        )
    }
    shown["status"] = lifecycle.effective_status(run, args.stall_after)
    shown["epochs_recorded"] = len(record["epochs"])
    print(json.dumps({k: v for k, v in shown.items() if v is not None}, indent=1))
    return 0


def _plot(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = _load_record(args.run_id)
    epochs = record["epochs"]
    if not epochs:
        print(f"run {args.run_id} has no recorded epochs yet", file=sys.stderr)
        return 1
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([e["epoch"] for e in epochs], [e["cost"] for e in epochs])
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost")
    ax.set_title(f"LNN run {args.run_id}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.output)
    print(f"wrote {args.output}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from trainer import engine, model_file
    from trainer.data import normalize
    from trainer.data.loader import DatasetError, check_raw, load_raw

    try:
        activations, params, shift, scale = model_file.load(args.model)
        raw = load_raw(args.dataset)
    except (DatasetError, OSError, KeyError, ValueError) as exc:
        print(f"cannot predict: {exc}", file=sys.stderr)
        return 2
    problems = check_raw(raw)
    if problems:
        print("cannot predict: " + "; ".join(problems), file=sys.stderr)
        return 2
    x_raw = raw[f"{args.split}_set_x"]
    x_raw = x_raw.reshape(x_raw.shape[0], -1)
    if x_raw.shape[1] != shift.shape[0]:
        print(
            f"cannot predict: the model expects {shift.shape[0]} features, the dataset has {x_raw.shape[1]}",
            file=sys.stderr,
        )
        return 2
    x = normalize.apply({"shift": shift, "scale": scale}, x_raw, str(params["W1"].dtype))
    predictions = engine.predict(activations, params, x).ravel()
    labels = np.asarray(raw[f"{args.split}_set_y"]).reshape(-1).astype(int)
    accuracy = float(np.mean(predictions == labels))
    print(
        json.dumps(
            {
                "split": args.split,
                "examples": int(labels.size),
                "accuracy": accuracy,
                "predictions": predictions.tolist() if args.show else None,
            }
        )
    )
    return 0


def run_id_argument(value: str) -> str:
    """A RUN_ID argument, checked before it names a folder: the ids a launch accepts, no path."""
    problem = id_problem(value, RUN_ID_LONGEST)
    if problem:
        raise argparse.ArgumentTypeError(f"run id {value!r} {problem}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train REQUEST.json on the local cloud (the functions run as processes)")
    p.add_argument("request", type=Path)
    p.add_argument("--json", action="store_true", help="last line: one JSON object with the summary")
    p = sub.add_parser("launch", help="start REQUEST.json on AWS through LaunchLambda (LAUNCH_FUNCTION_ARN)")
    p.add_argument("request", type=Path)
    p = sub.add_parser("demo", help="train the original benchmark configuration on a dataset")
    p.add_argument("--dataset", required=True)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("status", help="show a run (DynamoDB when TABLE_NAME is set, else the local copy)")
    p.add_argument("run_id", type=run_id_argument)
    p.add_argument("--stall-after", type=float, default=STALL_AFTER_S, help="seconds without a step = STALLED")
    p = sub.add_parser("resume", help="restart a FAILED or STALLED run from its last applied step")
    p.add_argument("run_id", type=run_id_argument)
    p = sub.add_parser("cancel", help="stop a run at its next step and remove its cache state")
    p.add_argument("run_id", type=run_id_argument)
    p = sub.add_parser("plot", help="plot a run's loss curve")
    p.add_argument("run_id", type=run_id_argument)
    p.add_argument("-o", "--output", default="loss.png")
    p = sub.add_parser("predict", help="predictions and accuracy of MODEL.npz on DATASET")
    p.add_argument("model", type=Path)
    p.add_argument("dataset")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--show", action="store_true", help="include every prediction")
    p = sub.add_parser(
        "sweep",
        help="SWEEP.json: run a sweep (the local cloud; AWS with LAUNCH_FUNCTION_ARN); "
        "status | plot | cancel SWEEP_ID: read or stop one",
    )
    p.add_argument("what", help="SWEEP.json, or one of status, plot, cancel")
    p.add_argument("sweep_id", nargs="?")
    p.add_argument("-o", "--output", default="sweep.png")
    p.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    # The local commands show a progress bar; per-step JSON logs would drown it.
    os.environ.setdefault("LNN_LOG_LEVEL", "WARNING")

    try:
        if args.command == "train":
            try:
                payload = json.loads(args.request.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                print(f"cannot read the request {args.request}: {exc}", file=sys.stderr)
                return 2
            return _train(payload, args.json)
        if args.command == "demo":
            return _train(demo_request(args.dataset), args.json)
        if args.command == "status":
            return _status(args)
        if args.command == "launch":
            return _launch(args)
        if args.command == "resume":
            return _resume(args)
        if args.command == "cancel":
            return _cancel(args)
        if args.command == "plot":
            return _plot(args)
        if args.command == "sweep":
            from trainer.sweep import cli as sweep_cli

            return sweep_cli.main(args, RUNS_DIR, _invoke_launch_function)
        return _predict(args)
    except RunNotFound as exc:
        print(str(exc), file=sys.stderr)
        return 2
