"""The `lnn` command's own rules: what it refuses before any cloud starts, and what it never deletes."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.paths import REPO_ROOT
from trainer import cli, workspace
from trainer.runconfig import RunConfig


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "lnn-runs"
    folder.mkdir()
    monkeypatch.setattr(cli, "RUNS_DIR", folder)
    return folder


@pytest.fixture
def no_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    """These requests must be refused before a local cloud is started for them."""
    from trainer.local import cloud_runner

    def refuse() -> None:
        raise AssertionError("a cloud was started for a request refused on its face")

    monkeypatch.setattr(cloud_runner, "cloud_session", refuse)


@pytest.mark.parametrize(("body", "kind"), [("[1, 2]", "array"), ('"moons"', "string"), ("null", "null")])
def test_a_request_that_is_not_an_object_is_refused_plainly(
    tmp_path: Path, body: str, kind: str, no_cloud: None, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "request.json"
    request.write_text(body)
    assert cli.main(["train", str(request)]) == 2
    err = capsys.readouterr().err
    assert f"must be a JSON object ({{...}}), not a JSON {kind}" in err
    assert "Traceback" not in err


def test_a_missing_dataset_file_is_named_as_missing(
    tmp_path: Path, no_cloud: None, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"dataset": str(tmp_path / "cats.h5"), "epochs": 1}))
    assert cli.main(["train", str(request)]) == 2
    err = capsys.readouterr().err
    assert f"dataset '{tmp_path / 'cats.h5'}': no such file" in err
    assert "s3://" not in err


def test_a_request_with_problems_on_its_face_is_refused_without_a_cloud(
    tmp_path: Path, no_cloud: None, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "request.json"
    bad = {"dataset": "moons", "neurons": {"layer1": -1}, "activations": {"layer1": "x"}, "epochs": 1}
    request.write_text(json.dumps({**bad, "learning_rate": 1}))
    assert cli.main(["train", str(request)]) == 2
    err = capsys.readouterr().err
    assert "invalid training request" in err and "neurons.layer1" in err and "activations.layer1" in err
    assert "Traceback" not in err


def test_cancel_of_a_folder_no_train_follows_is_an_error(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # What an interrupted `train` used to leave: the run's folder and nothing in it.
    (runs_dir / "r1").mkdir()
    assert cli.main(["cancel", "r1"]) == 2
    assert "no run 'r1' to cancel" in capsys.readouterr().err
    assert not (runs_dir / "r1" / "CANCEL").exists()


def test_cancel_of_a_followed_run_leaves_the_marker_its_train_watches(runs_dir: Path) -> None:
    (runs_dir / "r1").mkdir()
    workspace.write_follower(runs_dir / "r1", "table")
    assert cli.main(["cancel", "r1"]) == 0
    assert (runs_dir / "r1" / "CANCEL").exists()


def test_delete_names_what_it_deletes(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for run_id in ("r1", "r2"):
        (runs_dir / run_id).mkdir()
        (runs_dir / run_id / "run.json").write_text("{}")
    (runs_dir / "r1" / "model.npz").write_bytes(b"x")
    assert cli.main(["delete", "r1"]) == 0
    assert f"deleted {runs_dir / 'r1'} (model.npz, run.json)" in capsys.readouterr().out
    assert sorted(p.name for p in runs_dir.iterdir()) == ["r2"]


@pytest.mark.parametrize("bad", ["../victim", "nosuch", "r1/.."])
def test_delete_with_one_bad_id_deletes_nothing(runs_dir: Path, bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    (runs_dir / "r1").mkdir()
    (runs_dir.parent / "victim").mkdir()
    assert cli.main(["delete", "r1", bad]) == 2
    assert "nothing deleted" in capsys.readouterr().err
    assert (runs_dir / "r1").is_dir()
    assert (runs_dir.parent / "victim").is_dir()


def test_delete_refuses_a_run_a_train_follows(runs_dir: Path) -> None:
    (runs_dir / "r1").mkdir()
    workspace.write_follower(runs_dir / "r1", "table")
    assert cli.main(["delete", "r1"]) == 2
    assert (runs_dir / "r1").is_dir()


def test_make_clean_never_touches_the_runs() -> None:
    planned = subprocess.run(["make", "-n", "clean"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert "rm " in planned.stdout
    assert "lnn-runs" not in planned.stdout


def test_every_argument_has_help_text() -> None:
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {action.dest}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == []


def test_the_lnn_command_is_installed_with_a_version() -> None:
    lnn = Path(sys.executable).parent / "lnn"
    done = subprocess.run([str(lnn), "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "lnn 0.1.0"


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_predict_writes_the_predictions(tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    # A one-layer model on moons' two features: class 1 where the first feature is positive.
    model = tmp_path / "model.npz"
    np.savez(
        model,
        W1=np.array([[1.0, 0.0]]),
        b1=np.zeros((1, 1)),
        activations=np.array(["sigmoid"]),
        shift=np.zeros((2, 1)),
        scale=np.ones((2, 1)),
        dtype=np.array("float64"),
    )
    out = tmp_path / f"preds{suffix}"
    assert cli.main(["predict", str(model), "moons", "-o", str(out)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["written"] == str(out) and "predictions" not in shown
    from trainer.data.builtin import BUILTIN

    expected = (BUILTIN["moons"]()["test_set_x"].reshape(shown["examples"], -1)[:, 0] > 0).astype(int)
    got = np.load(out) if suffix == ".npy" else np.loadtxt(out, skiprows=1, dtype=int)
    assert got.tolist() == expected.tolist()


def test_predict_refuses_an_unknown_output_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["predict", str(tmp_path / "none.npz"), "moons", "-o", str(tmp_path / "p.txt")]) == 2


def _saved_run(runs_dir: Path, run_id: str, status: str, costs: list[float]) -> None:
    (runs_dir / run_id).mkdir()
    run = {"pk": f"RUN#{run_id}", "sk": "RUN", "run_id": run_id, "status": status, "final_cost": costs[-1]}
    epochs = [{"pk": f"RUN#{run_id}", "sk": f"EPOCH#{i:06d}", "epoch": i, "cost": c} for i, c in enumerate(costs)]
    (runs_dir / run_id / "run.json").write_text(json.dumps({"run": run, "epochs": epochs}))


def test_runs_lists_copies_and_interrupted_folders(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _saved_run(runs_dir, "r1", "SUCCEEDED", [0.7, 0.5])
    (runs_dir / "r2").mkdir()
    (runs_dir / "s1").mkdir()
    (runs_dir / "s1" / "sweep.json").write_text(
        json.dumps({"status": "ENDED", "summary": {"best_validation_accuracy": 0.9}})
    )
    assert cli.main(["runs", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert (rows["r1"]["kind"], rows["r1"]["status"], rows["r1"]["epochs"], rows["r1"]["value"]) == (
        "run",
        "SUCCEEDED",
        2,
        0.5,
    )
    assert rows["r2"]["status"] == "INTERRUPTED"
    assert (rows["s1"]["kind"], rows["s1"]["value"]) == ("sweep", 0.9)


def test_status_says_where_it_read_and_shows_no_store_keys(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _saved_run(runs_dir, "r1", "SUCCEEDED", [0.7, 0.5])
    assert cli.main(["status", "r1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["source"] == f"the local copy {runs_dir / 'r1' / 'run.json'}"
    assert "pk" not in shown and "sk" not in shown


def test_progress_of_a_running_run() -> None:
    run = {"status": "RUNNING", "last_seq": 49, "total_steps": 200, "created_at": 100.0, "request": {"epochs": 40}}
    epochs = [{"epoch": i, "cost": 1.0 / (i + 1)} for i in range(10)]
    shown = workspace.progress(workspace.Record(run, epochs, "here"), now=105.0)
    assert shown == {"percent": 25.0, "cost": 0.1, "epochs_per_s": 2.0, "eta_s": 15.0}


def test_export_writes_a_model_onnxruntime_runs_as_predict_does(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnxruntime

    from trainer.data.builtin import BUILTIN

    (runs_dir / "r1").mkdir()
    np.savez(
        runs_dir / "r1" / "model.npz",
        W1=np.array([[1.0, -2.0]]),
        b1=np.full((1, 1), 0.25),
        activations=np.array(["sigmoid"]),
        shift=np.zeros((2, 1)),
        scale=np.ones((2, 1)),
        dtype=np.array("float64"),
    )
    out = tmp_path / "model.onnx"
    assert cli.main(["export", "r1", "--onnx", str(out)]) == 0
    assert cli.main(["predict", str(runs_dir / "r1" / "model.npz"), "moons", "--show"]) == 0
    predicted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["predictions"]
    raw = BUILTIN["moons"]()["test_set_x"].astype(np.float64)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.run(["class"], {"features": raw.reshape(raw.shape[0], -1)})[0].tolist() == predicted


def test_export_of_a_run_without_a_model_says_so(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export", "nosuch", "--onnx", "x.onnx"]) == 2
    assert "no model at" in capsys.readouterr().err


def test_the_progress_bar_shows_cost_and_validation_accuracy() -> None:
    assert cli._learning({"epoch": 3, "cost": 0.123456789}) == {"cost": "0.12346"}
    assert cli._learning({"epoch": 3, "cost": 0.5, "validation_accuracy": 0.875}) == {
        "cost": "0.5",
        "val_acc": "0.8750",
    }
    assert cli._learning({}) == {}


def _board() -> dict:
    rows = [
        {
            "rank": 1,
            "trial": 2,
            "state": "SUCCEEDED",
            "validation_accuracy": 0.9,
            "epochs_run": 3,
            "compute_s": 1.25,
            "params": {"learning_rate": 0.1},
            "curve": [0.5, 0.8, 0.9],
        },
        {
            "rank": 2,
            "trial": 0,
            "state": "STOPPED",
            "validation_accuracy": 0.6,
            "epochs_run": 1,
            "compute_s": 0.5,
            "params": {"learning_rate": 0.01},
            "curve": [0.6],
        },
        {
            "rank": None,
            "trial": 1,
            "state": "NOT_STARTED",
            "validation_accuracy": None,
            "epochs_run": 0,
            "compute_s": 0.0,
            "params": {"learning_rate": 0.001},
        },
    ]
    summary = {
        "best_trial": 2,
        "best_params": {"learning_rate": 0.1},
        "best_validation_accuracy": 0.9,
        "best_test_accuracy": 0.85,
        "compute_s": 1.75,
    }
    return {"sweep_id": "s", "status": "CANCELLED", "by_state": {}, "leaderboard": rows, "summary": summary}


def test_the_sweep_plot_has_a_legend_in_the_boards_order() -> None:
    from trainer.sweep import cli as sweep_cli

    fig = sweep_cli.figure(_board())
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["#1 trial 2: learning_rate=0.1", "#2 trial 0: learning_rate=0.01"]


def test_the_board_counts_compute_seconds_as_its_footer_does(capsys: pytest.CaptureFixture[str]) -> None:
    from trainer.sweep import cli as sweep_cli

    sweep_cli._print_board(_board())
    lines = capsys.readouterr().out.splitlines()
    assert "compute s" in lines[1]
    seconds = [float(line.split()[5]) for line in lines[2:5]]
    assert sum(seconds) == pytest.approx(1.75, abs=0.1) and "1.8 compute seconds in all" in lines[-1]
    assert lines[4].split()[0] == "-"  # the trial that never started has no rank


def test_predict_predicts_unlabelled_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.npz"
    np.savez(
        model,
        W1=np.array([[1.0, 0.0]]),
        b1=np.zeros((1, 1)),
        activations=np.array(["sigmoid"]),
        shift=np.zeros((2, 1)),
        scale=np.ones((2, 1)),
        dtype=np.array("float64"),
    )
    unlabelled = tmp_path / "new.npz"
    np.savez(unlabelled, test_set_x=np.array([[2.0, 5.0], [-1.0, 3.0], [0.5, -7.0]]))
    out = tmp_path / "preds.npy"
    assert cli.main(["predict", str(model), str(unlabelled), "-o", str(out)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"split": "test", "examples": 3, "written": str(out)}  # no accuracy without labels
    assert np.load(out).tolist() == [1, 0, 1]


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_command_even_started_with_sigint_ignored(signal_name: str) -> None:
    import os
    import signal

    # A shell starts a background job with SIGINT ignored, and Python keeps that.
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt), workspace.sigterm_as_interrupt():
            os.kill(os.getpid(), getattr(signal, signal_name))
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # restored afterwards
    finally:
        signal.signal(signal.SIGINT, saved)


def _lines(ax) -> dict[str, tuple[list, list]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def test_the_run_plot_draws_training_and_validation_cost_and_accuracy() -> None:
    epochs = [
        {"epoch": i, "cost": 1.0 / (i + 1), "accuracy": 0.5 + i / 10, "validation_cost": 1.2 / (i + 1),
         "validation_accuracy": 0.4 + i / 10, "duration_s": 0.01}
        for i in (2, 0, 1)
    ]  # fmt: skip
    fig = cli.figure("r1", epochs)
    cost, accuracy = fig.axes
    assert _lines(cost) == {
        "training cost": ([1, 2, 3], [1.0, 0.5, 1.0 / 3]),
        "validation cost": ([1, 2, 3], [1.2, 0.6, 1.2 / 3]),
    }
    assert _lines(accuracy) == {
        "training accuracy": ([1, 2, 3], [0.5 + i / 10 for i in range(3)]),
        "validation accuracy": ([1, 2, 3], [0.4 + i / 10 for i in range(3)]),
    }
    for ax, labels in (
        (cost, ["training cost", "validation cost"]),
        (accuracy, ["training accuracy", "validation accuracy"]),
    ):
        assert [t.get_text() for t in ax.get_legend().get_texts()] == labels
    assert (cost.get_ylabel(), accuracy.get_ylabel()) == ("cost", "accuracy")
    assert fig.get_suptitle() == "LNN run r1"


def test_the_plot_of_a_run_without_validation_draws_its_cost_alone(runs_dir: Path, tmp_path: Path) -> None:
    fig = cli.figure("r1", [{"epoch": 0, "cost": 0.7}, {"epoch": 1, "cost": 0.5}])
    (ax,) = fig.axes
    assert _lines(ax) == {"training cost": ([1, 2], [0.7, 0.5])}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training cost"]
    assert cli.figure("r1", []) is None
    _saved_run(runs_dir, "r2", "SUCCEEDED", [0.7, 0.5])
    out = tmp_path / "loss.png"
    assert cli.main(["plot", "r2", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_progress_bar_moves_epoch_by_epoch_though_epochs_land_200_at_a_time() -> None:
    """Each invocation of the fused chain records 200 epochs at once, one second apart, and `train`
    looks at the run four times a second: the bar advances at every look, each epoch shown with
    its own figures, never past what is recorded, and ends on the true count."""
    import io

    from tqdm import tqdm

    from trainer import progress

    now, recorded = [0.0], []
    bar = tqdm(total=1000, file=io.StringIO(), mininterval=0)
    shown = progress.EpochBar(bar, lambda first: [e for e in recorded if e["epoch"] >= first], clock=lambda: now[0])
    seen: list[int] = []
    for invocation in range(5):
        now[0] += 0.25
        new = [
            {"epoch": e, "cost": 1 / (e + 1), "validation_accuracy": e / 1000}
            for e in range(200 * invocation, 200 * invocation + 200)
        ]
        recorded += new
        for look in range(4):
            shown.update({"status": "RUNNING", "last_seq": invocation})
            seen.append(bar.n)
            assert bar.n <= len(recorded)
            if bar.n:
                assert bar.postfix == f"cost={1 / bar.n:.5g}, val_acc={(bar.n - 1) / 1000:.4f}"
            now[0] += 0.25 if look < 3 else 0.0
    assert seen == sorted(seen)
    assert len(set(seen)) > 12  # shown as they land, the bar would take 6 values: 0, 200, ..., 1000
    assert seen[-1] < 1000  # the last landing is still being played out when the run ends
    shown.finish()
    assert bar.n == 1000 and bar.postfix == f"cost={1 / 1000:.5g}, val_acc=0.9990"


def test_the_pacer_shows_no_epoch_before_it_lands() -> None:
    from trainer import progress

    pacer = progress.Pacer(now=0.0)
    assert pacer.shown(5.0) == 0
    pacer.land(100, now=2.0)  # expected: the next landing in 2 s
    assert [pacer.shown(t) for t in (2.0, 2.5, 3.0, 4.0, 9.0)] == [0, 25, 50, 100, 100]
    pacer.land(50, now=9.5)  # a smaller count (a stale read) changes nothing
    assert pacer.shown(9.5) == 100
    pacer.land(300, now=10.0)  # 8 s since the last: slower now, 200 more played over ~5 s
    assert pacer.shown(10.0) == 100 and 100 < pacer.shown(12.0) < 300 and pacer.shown(16.0) == 300


def test_status_of_a_running_run_shows_its_validation_figures() -> None:
    run = {"status": "RUNNING", "last_seq": 49, "total_steps": 200, "created_at": 100.0, "request": {"epochs": 40}}
    epochs = [{"epoch": i, "cost": 0.5, "validation_cost": 0.6, "validation_accuracy": 0.75} for i in range(10)]
    shown = workspace.progress(workspace.Record(run, epochs, "here"), now=105.0)
    assert (shown["cost"], shown["validation_cost"], shown["validation_accuracy"]) == (0.5, 0.6, 0.75)


def _data_parallel_run(run_id: str, steps: dict[str, int] | None) -> dict:
    config = RunConfig(
        run_id=run_id,
        sizes=(2, 4, 1),
        activations=("tanh", "sigmoid"),
        optimizer="adam",
        learning_rate=0.1,
        l2=0.0,
        batch_size=100,
        examples=400,  # 4 batches an epoch
        epochs=10,  # 40 steps
        seed=1,
        dtype="float64",
        classes=2,
        chain="fused",
        max_steps_per_invocation=2000,
        time_margin_ms=10_000,
        notify_every=0,
        checkpoint_every=0,
        data_digest="d",
        dataset="moons",
        workers=4,
    )
    run = {"run_id": run_id, "status": "RUNNING", "config": config.to_json(), "total_steps": 400, "last_seq": -1}
    return run | ({"worker_steps": steps} if steps is not None else {})


def test_status_of_a_data_parallel_run_shows_each_workers_step(runs_dir: Path, capsys) -> None:
    (runs_dir / "dp1").mkdir()
    steps = {"3": 19, "0": 21, "1": 20, "2": 9}  # as DynamoDB gives a map back: in no particular order
    run = _data_parallel_run("dp1", steps) | {"created_at": time.time(), "last_step_at": time.time()}
    (runs_dir / "dp1" / "run.json").write_text(json.dumps({"run": run, "epochs": []}))
    assert cli.main(["status", "dp1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "RUNNING"
    assert list(shown["workers"].items()) == [("0", 21), ("1", 20), ("2", 9), ("3", 19)]
    assert shown["percent"] == 25.0, "as far as its slowest worker: 10 of 40 steps"


def test_status_of_a_chain_shows_no_workers() -> None:
    run = {"status": "RUNNING", "last_seq": 49, "total_steps": 200, "created_at": 100.0, "request": {"epochs": 40}}
    assert workspace.worker_steps(run) == {}
    assert workspace.worker_steps(_data_parallel_run("dp2", None)) == {}
    assert workspace.progress(workspace.Record(run, [], "here"), now=105.0)["percent"] == 25.0
