"""`lnn` (or `python -m trainer`): train locally; inspect runs (status, plot, predict); sweeps (trainer.sweep.cli)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from trainer import lifecycle, progress, workspace
from trainer.errors import RequestError, RunNotFound
from trainer.request import RUN_ID_LONGEST, id_problem, parse
from trainer.vocabulary import RunStatus

RUNS_DIR = Path(os.environ.get("LNN_RUNS_DIR", "lnn-runs"))
STALL_AFTER_S = lifecycle.DEFAULT_STALL_AFTER_S
FOLLOWER = workspace.FOLLOWER
INTERRUPTED = workspace.INTERRUPTED

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


_learning = progress.learning


def _followed(run_dir: Path) -> bool:
    return workspace.followed(run_dir)


def _interrupted(session: Any, run_id: str) -> int:
    """Stop the run at its next step and keep it, resumable; the exit status says it was interrupted."""
    from trainer.local import cloud_runner, runner

    if session.cloud is None:  # the `make up` cloud: the run goes on there
        print(f"\nstopped following {run_id}; it goes on in the `make up` cloud (`lnn cancel {run_id}` stops it)")
        return INTERRUPTED
    print(f"\ninterrupted: stopping {run_id} at its next step...", file=sys.stderr)
    cloud_runner.stop_at_next_step(session)
    store = session.services.run_store
    seq = int(store.get_run(run_id).get("last_seq") or 0)
    store.mark_failed(
        run_id, f"interrupted by the user after step {seq}; resume continues it", "interrupt", "Interrupted"
    )
    record = runner.export_run(session, run_id, RUNS_DIR)
    if record["run"]["status"] == RunStatus.FAILED:
        print(f"run {run_id} kept after {len(record['epochs'])} epochs; `lnn resume {run_id}` continues it")
    else:  # it ended on its own meanwhile
        print(f"run {run_id}: {record['run']['status']}; kept in {RUNS_DIR / run_id}")
    return INTERRUPTED


def _train(payload: dict[str, Any], as_json: bool, quiet: bool = False) -> int:
    """Train on the local cloud: LaunchLambda through the Lambda API, the chain in its own processes."""
    from tqdm import tqdm

    from trainer.local import cloud_runner, runner

    started = time.monotonic()
    with cloud_runner.cloud_session(attach=True) as session:
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
        # Epochs land an invocation at a time; the bar plays each landing out, epoch by epoch.
        epochs_bar = progress.EpochBar(bar, lambda first: session.services.run_store.epochs_from(run_id, first))

        # `python -m trainer cancel RUN_ID` from another terminal leaves this marker.
        cancel_marker = RUNS_DIR / run_id / "CANCEL"
        (RUNS_DIR / run_id).mkdir(parents=True, exist_ok=True)
        # From the moment the run can be seen (its FOLLOWER file), Ctrl-C or SIGTERM stops it cleanly.
        with workspace.sigterm_as_interrupt():
            try:
                workspace.write_follower(RUNS_DIR / run_id, session.env["TABLE_NAME"])
                cloud_runner.follow(
                    session, run_id, on_progress=epochs_bar.update, cancel_requested=cancel_marker.exists
                )
            except KeyboardInterrupt:
                bar.close()
                return _interrupted(session, run_id)
            finally:
                (RUNS_DIR / run_id / FOLLOWER).unlink(missing_ok=True)
                cancel_marker.unlink(missing_ok=True)
        epochs_bar.finish()
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
    if run.get("validation_accuracy") is not None:  # the run held validation examples out
        summary["validation_accuracy"] = run["validation_accuracy"]
    if record.get("model_path"):
        summary["model"] = record["model_path"]
    if not as_json:
        print(f"run {run_id}: {summary['status']} after {summary['epochs']} epochs in {summary['duration_s']} s")
        if run["status"] == RunStatus.SUCCEEDED:
            validation = summary.get("validation_accuracy")
            print(
                f"  final cost {summary['final_cost']:.6f}, train accuracy {summary['train_accuracy']:.4f}, "
                + ("" if validation is None else f"validation accuracy {validation:.4f}, ")
                + f"test accuracy {summary['test_accuracy']:.4f}"
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


def _read_request(path: Path) -> dict[str, Any] | None:
    """The request file as a JSON object, or None after saying what is wrong with it."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"cannot read the request {path}: {exc}", file=sys.stderr)
        return None
    if not isinstance(payload, dict):
        print(f"the request {path} must be a JSON object ({{...}}), not a JSON {_json_kind(payload)}", file=sys.stderr)
        return None
    return payload


def _json_kind(value: Any) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _missing_dataset(payload: dict[str, Any]) -> str | None:
    """A local dataset path that is not there: said as such, before a cloud is started for it."""
    from trainer.data.builtin import BUILTIN

    source = payload.get("dataset")
    if not isinstance(source, str) or source in BUILTIN or source.startswith("s3://") or Path(source).is_file():
        return None
    return f"dataset {source!r}: no such file (nor a built-in dataset: {', '.join(BUILTIN)})"


def _refused_on_its_face(payload: dict[str, Any]) -> str | None:
    """LaunchLambda's own refusal, for the problems that need no data to find: said before a cloud
    is started for a request that cannot run (the data's problems are LaunchLambda's to find)."""
    if "action" in payload:  # not a training request: LaunchLambda says what it is
        return None
    _, problems = parse(payload)
    return str(RequestError(problems)) if problems else None


def _launch(args: argparse.Namespace) -> int:
    if not os.environ.get("LAUNCH_FUNCTION_ARN"):
        print(
            "launch starts a run on AWS: set LAUNCH_FUNCTION_ARN (the stack's output), or use `train` to run it here",
            file=sys.stderr,
        )
        return 2
    payload = _read_request(args.request)
    return 2 if payload is None else _invoke_launch_function(payload)


def _resume(args: argparse.Namespace) -> int:
    if os.environ.get("LAUNCH_FUNCTION_ARN"):
        return _invoke_launch_function({"action": "resume", "run_id": args.run_id, "stall_after_s": args.stall_after})
    from trainer.local import cloud_runner, runner

    run_dir = RUNS_DIR / args.run_id
    if not (run_dir / "run.json").is_file():
        raise RunNotFound(f"no run {args.run_id!r} in {RUNS_DIR} (set LAUNCH_FUNCTION_ARN to resume on AWS)")
    started = time.monotonic()
    with cloud_runner.cloud_session(attach=True) as session:
        # The saved run goes into the new stack's table and cache; LaunchLambda resumes it, as on AWS.
        run_id = runner.restore_run(session, run_dir)
        try:
            request = {"action": "resume", "run_id": run_id, "stall_after_s": args.stall_after}
            resumed = cloud_runner.invoke_launch(session, request)
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
    elif _followed(run_dir):  # a `train` in another terminal follows the run: it cancels it when this marker appears
        (run_dir / "CANCEL").touch()
    else:
        raise RunNotFound(f"no run {args.run_id!r} to cancel: nothing recorded in {run_dir} and no train follows it")
    print(json.dumps({"run_id": args.run_id, "status": RunStatus.CANCELLED}))
    return 0


def _delete(args: argparse.Namespace) -> int:
    """Remove local copies of runs or sweeps, by name only: nothing else ever deletes them."""

    problems = [f"{i!r}: {id_problem(i, RUN_ID_LONGEST)}" for i in args.run_ids if id_problem(i, RUN_ID_LONGEST)]
    problems += [f"{i!r}: no such run in {RUNS_DIR}" for i in args.run_ids if not (RUNS_DIR / i).is_dir()]
    problems += [f"{i!r}: a train is following it; cancel it first" for i in args.run_ids if _followed(RUNS_DIR / i)]
    if problems:  # all or nothing: a typo in one id deletes none of the others
        print("nothing deleted:\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        return 2
    for run_id in args.run_ids:
        folder = RUNS_DIR / run_id
        files = sorted(p.name for p in folder.iterdir())
        shutil.rmtree(folder)
        print(f"deleted {folder} ({', '.join(files) or 'empty'})")
    return 0


def _load_record(run_id: str) -> dict[str, Any]:
    record = workspace.load(run_id, RUNS_DIR)
    print(f"({record.source})", file=sys.stderr)
    return {"run": record.run, "epochs": record.epochs}


def _status(args: argparse.Namespace) -> int:
    while True:
        record = workspace.load(args.run_id, RUNS_DIR)
        run = record.run
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
                "model",
            )
        }
        shown["status"] = lifecycle.effective_status(run, args.stall_after)
        shown["epochs_recorded"] = len(record.epochs)
        if workers := workspace.worker_steps(run):
            shown["workers"] = workers  # worker -> the step it has gathered
        if shown["status"] == RunStatus.RUNNING:
            shown |= workspace.progress(record)
        shown["source"] = record.source
        print(json.dumps({k: v for k, v in shown.items() if v is not None}, indent=None if args.watch else 1))
        if not args.watch or shown["status"] != RunStatus.RUNNING:
            return 0
        time.sleep(args.watch)


def _runs(args: argparse.Namespace) -> int:
    rows = list(workspace.local_runs(RUNS_DIR))
    if os.environ.get("TABLE_NAME"):
        rows += list(workspace.table_runs(os.environ["TABLE_NAME"]))
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    if not rows:
        print(f"no runs in {RUNS_DIR}" + ("" if os.environ.get("TABLE_NAME") else " (TABLE_NAME is not set)"))
        return 0
    print(f"{'id':<34} {'kind':<5} {'status':<11} {'epochs':>6} {'cost/metric':>12} {'age':>8}  where")
    for row in rows:
        value = "" if row["value"] is None else f"{float(row['value']):.6g}"
        age = "" if row["age_s"] is None else f"{row['age_s']}s"
        epochs = "" if row["epochs"] is None else row["epochs"]
        kind, status, where = row["kind"], row["status"], row["where"]
        print(f"{row['id']!s:<34} {kind:<5} {status!s:<11} {epochs!s:>6} {value:>12} {age:>8}  {where}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    record = _load_record(args.run_id)
    fig = figure(args.run_id, record["epochs"])
    if fig is None:
        print(f"run {args.run_id} has no recorded epochs yet", file=sys.stderr)
        return 1
    fig.savefig(args.output)
    print(f"wrote {args.output}")
    return 0


# (epoch item key, its label, the panel it is drawn in): the training figure solid, validation's dashed.
CURVES = (
    ("cost", "training cost", 0),
    ("validation_cost", "validation cost", 0),
    ("accuracy", "training accuracy", 1),
    ("validation_accuracy", "validation accuracy", 1),
)


def figure(run_id: str, epochs: list[dict[str, Any]]) -> Any:
    """The run's learning curves: cost, and accuracy when its epochs record it (a run with validation
    examples), training and validation side by side, each panel with its legend; None before any
    epoch. A figure of its own (no pyplot state), drawn without a display."""
    from matplotlib.figure import Figure

    epochs = sorted(epochs, key=lambda e: e["epoch"])
    drawn = [c for c in CURVES if any(e.get(c[0]) is not None for e in epochs)]
    if not epochs or not drawn:
        return None
    panels = 1 + any(panel == 1 for _, _, panel in drawn)
    fig = Figure(figsize=(7 * panels, 4))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for key, label, panel in drawn:
        points = [(e["epoch"] + 1, float(e[key])) for e in epochs if e.get(key) is not None]
        style = "--" if key.startswith("validation") else "-"
        axes[panel].plot([p[0] for p in points], [p[1] for p in points], style, label=label)
    for ax, name in zip(axes, ("cost", "accuracy"), strict=False):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    fig.suptitle(f"LNN run {run_id}")
    fig.tight_layout()
    return fig


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from trainer import engine, model_file
    from trainer.data import normalize

    try:
        activations, params, shift, scale = model_file.load(args.model)
        x_raw, labels = _examples(args.dataset, args.split)
    except (OSError, KeyError, ValueError) as exc:  # DatasetError is a ValueError
        print(f"cannot predict: {exc}", file=sys.stderr)
        return 2
    x_raw = x_raw.reshape(x_raw.shape[0], -1)
    if x_raw.shape[1] != shift.shape[0]:
        print(
            f"cannot predict: the model expects {shift.shape[0]} features, the dataset has {x_raw.shape[1]}",
            file=sys.stderr,
        )
        return 2
    x = normalize.apply({"shift": shift, "scale": scale}, x_raw, str(params["W1"].dtype))
    predictions = engine.predict(activations, params, x).ravel()
    shown: dict[str, Any] = {"split": args.split, "examples": int(predictions.size)}
    if labels is not None:  # unlabelled data gets predictions only
        shown["accuracy"] = float(np.mean(predictions == labels))
    if args.output is not None:
        problem = _write_predictions(args.output, predictions)
        if problem:
            print(f"cannot predict: {problem}", file=sys.stderr)
            return 2
        shown["written"] = str(args.output)
    if args.show:
        shown["predictions"] = predictions.tolist()
    print(json.dumps(shown))
    return 0


def _examples(dataset: str, split: str) -> tuple[Any, Any]:
    """The split's features, and its labels when the dataset has them (a file of features alone,
    `{split}_set_x`, is data to predict). Raises DatasetError naming what is wrong."""
    import numpy as np

    from trainer.data.loader import DatasetError, load_raw

    x_key, y_key = f"{split}_set_x", f"{split}_set_y"
    x_raw = np.asarray(load_raw(dataset, keys=(x_key,))[x_key])
    if x_raw.ndim < 1 or x_raw.shape[0] == 0 or x_raw.dtype.kind not in "biuf":
        raise DatasetError(f"{x_key} must be a numeric array with at least one example")
    if x_raw.dtype.kind == "f" and not np.all(np.isfinite(x_raw)):
        raise DatasetError(f"{x_key} contains NaN or infinity")
    try:
        labels = np.asarray(load_raw(dataset, keys=(y_key,))[y_key]).reshape(-1)
    except DatasetError as exc:
        if "missing keys" not in str(exc):
            raise
        return x_raw, None
    if labels.size != x_raw.shape[0]:
        raise DatasetError(f"{y_key} has {labels.size} labels for {x_raw.shape[0]} examples")
    return x_raw, labels.astype(int)


def _write_predictions(path: Path, predictions: Any) -> str | None:
    import numpy as np

    if path.suffix not in (".csv", ".npy"):
        return f"{path}: the predictions file must end in .csv or .npy"
    try:
        if path.suffix == ".npy":
            np.save(path, predictions)
        else:
            path.write_text("prediction\n" + "".join(f"{int(p)}\n" for p in predictions))
    except OSError as exc:
        return f"cannot write {path}: {exc}"
    return None


def _export(args: argparse.Namespace) -> int:
    """A run's model (its local copy, or a model file) as ONNX."""
    from trainer import model_file, onnx_export

    if not args.run_id.endswith(".npz") and (problem := id_problem(args.run_id, RUN_ID_LONGEST)):
        print(f"cannot export: run id {args.run_id!r} {problem}", file=sys.stderr)
        return 2
    source = Path(args.run_id) if args.run_id.endswith(".npz") else RUNS_DIR / args.run_id / "model.npz"
    if not source.is_file():
        print(f"cannot export: no model at {source} (a run's model is there once it has SUCCEEDED)", file=sys.stderr)
        return 2
    activations, params, shift, scale = model_file.load(source)
    onnx_export.write(str(args.onnx), activations, params, shift, scale)
    print(
        json.dumps(
            {"model": str(source), "onnx": str(args.onnx), "inputs": "features", "outputs": ["probabilities", "class"]}
        )
    )
    return 0


def run_id_argument(value: str) -> str:
    """A RUN_ID argument, checked before it names a folder: the ids a launch accepts, no path."""
    problem = id_problem(value, RUN_ID_LONGEST)
    if problem:
        raise argparse.ArgumentTypeError(f"run id {value!r} {problem}")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lnn-trainer")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lnn", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    request_help = "a training request: a JSON object (see the README's example request.json)"
    run_help = "the run's id, as train, launch or `lnn runs` print it"
    p = sub.add_parser("train", help="train REQUEST.json on the local cloud (the functions run as processes)")
    p.add_argument("request", type=Path, help=request_help)
    p.add_argument("--json", action="store_true", help="last line: one JSON object with the summary")
    p = sub.add_parser("launch", help="start REQUEST.json on AWS through LaunchLambda (LAUNCH_FUNCTION_ARN)")
    p.add_argument("request", type=Path, help=request_help)
    p = sub.add_parser("demo", help="train the original benchmark configuration on a dataset")
    p.add_argument("--dataset", required=True, help="a built-in dataset's name, or an .h5/.npz file")
    p.add_argument("--json", action="store_true", help="last line: one JSON object with the summary")
    p = sub.add_parser("status", help="show a run (DynamoDB when TABLE_NAME is set, else the local copy)")
    p.add_argument("run_id", type=run_id_argument, help=run_help)
    p.add_argument("--stall-after", type=float, default=STALL_AFTER_S, help="seconds without a step = STALLED")
    p.add_argument(
        "--watch", type=float, nargs="?", const=2.0, metavar="SECONDS", help="repeat every SECONDS (2) while it runs"
    )
    p = sub.add_parser("runs", help=f"list runs and sweeps: {RUNS_DIR}/, and the TABLE_NAME table when set")
    p.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    p = sub.add_parser("resume", help="restart a FAILED or STALLED run from its last applied step")
    p.add_argument("run_id", type=run_id_argument, help=run_help)
    p.add_argument("--stall-after", type=float, default=STALL_AFTER_S, help="seconds without a step = STALLED")
    p = sub.add_parser("cancel", help="stop a run at its next step and remove its cache state")
    p.add_argument("run_id", type=run_id_argument, help=run_help)
    p = sub.add_parser("delete", help=f"delete the local copies of the runs or sweeps named ({RUNS_DIR}/ID)")
    p.add_argument("run_ids", nargs="+", metavar="ID", help="a run's or a sweep's id; every one is deleted or none")
    p = sub.add_parser("export", help="write a run's model as ONNX (raw features in, probabilities and class out)")
    p.add_argument("run_id", help=run_help + f"; or a model file ({RUNS_DIR}/RUN_ID/model.npz)")
    p.add_argument("--onnx", type=Path, required=True, help="the .onnx file to write")
    p = sub.add_parser("plot", help="plot a run's cost and accuracy, training and validation, by epoch")
    p.add_argument("run_id", type=run_id_argument, help=run_help)
    p.add_argument("-o", "--output", default="loss.png", help="the image to write (default loss.png)")
    p = sub.add_parser("predict", help="predictions (and accuracy, when the data has labels) of MODEL.npz on DATASET")
    p.add_argument("model", type=Path, help=f"a trained model, e.g. {RUNS_DIR}/RUN_ID/model.npz")
    p.add_argument("dataset", help="a built-in dataset's name, or an .h5/.npz file")
    p.add_argument("--split", choices=("train", "test"), default="test", help="which of the dataset's sets")
    p.add_argument("--show", action="store_true", help="include every prediction in the JSON printed")
    p.add_argument("-o", "--output", type=Path, help="write the predictions to a .csv or .npy file")
    p = sub.add_parser(
        "sweep",
        help="SWEEP.json: run a sweep (the local cloud; AWS with LAUNCH_FUNCTION_ARN); "
        "status | plot | cancel SWEEP_ID: read or stop one",
    )
    p.add_argument("what", help="SWEEP.json, or one of status, plot, cancel")
    p.add_argument("sweep_id", nargs="?", help="the sweep's id, for status, plot and cancel")
    p.add_argument("-o", "--output", default="sweep.png", help="the image plot writes (default sweep.png)")
    p.add_argument("--json", action="store_true", help="last line: one JSON object with the summary")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The local commands show a progress bar; per-step JSON logs would drown it.
    os.environ.setdefault("LNN_LOG_LEVEL", "WARNING")

    try:
        if args.command == "train":
            payload = _read_request(args.request)
            if payload is None:
                return 2
            refused = _missing_dataset(payload) or _refused_on_its_face(payload)
            if refused:
                print(refused, file=sys.stderr)
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
        if args.command == "export":
            return _export(args)
        if args.command == "runs":
            return _runs(args)
        if args.command == "delete":
            return _delete(args)
        if args.command == "sweep":
            from trainer.sweep import cli as sweep_cli

            return sweep_cli.main(args, RUNS_DIR, _invoke_launch_function)
        return _predict(args)
    except RunNotFound as exc:
        print(str(exc), file=sys.stderr)
        return 2
