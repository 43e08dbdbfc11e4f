"""`python -m trainer` as a user runs it: a local cloud of its own for the run (its Lambda service,
its ElastiCache redis-server), stopped at the end, then inspection of what the run left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from tests.support.chain import monolithic_reference
from tests.support.paths import CAT_DATASET, REPO_ROOT
from tests.support.processes import descendants, still_running
from tests.support.requests import moons, network
from trainer.cli import demo_request
from trainer.data.loader import load_raw, prepare
from trainer.engine import accuracy_of


def _cli(*args: str, runs_dir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "TABLE_NAME"}
    environment.update({"LNN_RUNS_DIR": str(runs_dir), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    runs = tmp_path_factory.mktemp("runs")
    request = runs / "request.json"
    spirals = network(
        "spirals",
        (16, 3),
        ("relu", "softmax"),
        epochs=40,
        learning_rate=0.02,
        optimizer="adam",
        batch_size=64,
        init="he",
    )
    request.write_text(json.dumps(spirals))
    done = _cli("train", str(request), "--json", runs_dir=runs)
    assert done.returncode == 0, done.stderr
    return runs, json.loads(done.stdout.strip().splitlines()[-1])


def test_train_prints_one_json_summary_last(trained) -> None:
    _, summary = trained
    keys = {"run_id", "status", "epochs", "final_cost", "train_accuracy", "test_accuracy", "duration_s", "model"}
    assert set(summary) == keys
    assert Path(summary["model"]).is_file()
    assert summary["status"] == "SUCCEEDED" and summary["epochs"] == 40
    assert summary["test_accuracy"] > 0.5  # three classes: chance is a third


def test_status_reads_the_run_back(trained) -> None:
    runs, summary = trained
    done = _cli("status", summary["run_id"], runs_dir=runs)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["status"] == "SUCCEEDED" and status["epochs_recorded"] == 40
    assert status["final_cost"] == pytest.approx(summary["final_cost"])
    # The local copy names the model beside it, not the bucket of a cloud that is gone.
    assert status["model"] == summary["model"] and "model_uri" not in status
    saved = json.loads((runs / summary["run_id"] / "run.json").read_text())
    assert not {"pk", "sk"} & set(saved["run"]) and not any({"pk", "sk"} & set(e) for e in saved["epochs"])


def test_plot_writes_a_png(trained, tmp_path) -> None:
    runs, summary = trained
    out = tmp_path / "loss.png"
    done = _cli("plot", summary["run_id"], "-o", str(out), runs_dir=runs)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_reproduces_the_test_accuracy(trained) -> None:
    runs, summary = trained
    model = runs / summary["run_id"] / "model.npz"
    done = _cli("predict", str(model), "spirals", runs_dir=runs)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accuracy"] == pytest.approx(summary["test_accuracy"])


def test_unknown_runs_and_bad_requests_are_clear(tmp_path) -> None:
    done = _cli("status", "no-such-run", runs_dir=tmp_path)
    assert done.returncode == 2 and "no run 'no-such-run'" in done.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "dataset": "moons",
                "neurons": {"layer1": -1},
                "activations": {"layer1": "x"},
                "epochs": 1,
                "learning_rate": 1,
            }
        )
    )
    done = _cli("train", str(bad), runs_dir=tmp_path)
    assert done.returncode == 2
    assert "invalid training request" in done.stderr and "neurons.layer1" in done.stderr
    assert "Traceback" not in done.stderr


def _make_demo(runs_dir: Path, *overrides: str) -> tuple[list[str], dict]:
    """`make demo` as a newcomer types it; returns what it said and its JSON summary. Every process
    it started (the local cloud, its execution environments, redis-server) is gone once it ends."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "TABLE_NAME"}
    environment["LNN_RUNS_DIR"] = str(runs_dir)
    out, err = runs_dir / "demo.out", runs_dir / "demo.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        demo = subprocess.Popen(
            ["make", "-s", "demo", "DEMO_FLAGS=--json", *overrides],
            cwd=REPO_ROOT,
            env=environment,
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
        seen: set[int] = set()
        deadline = time.monotonic() + 900
        while demo.poll() is None and time.monotonic() < deadline:
            seen |= descendants(demo.pid)  # while they are still its children
            time.sleep(0.2)
        if demo.poll() is None:
            demo.kill()
        returncode = demo.wait()
    assert returncode == 0, err.read_text()
    seen.discard(demo.pid)
    assert seen, "the demo started no process: the local cloud was not watched"
    assert still_running(seen) == [], "processes left behind by make demo"
    lines = out.read_text().strip().splitlines()
    return lines, json.loads(lines[-1])


def test_make_demo_hands_the_cat_benchmark_to_the_demo_when_it_is_there(tmp_path) -> None:
    """`make demo` with the cat set beside the clone says so and hands it to `trainer demo`, whose
    own `--help` (DEMO_FLAGS) then ends the command before any cloud starts: the branch of the
    recipe the full demo below does not take. The training itself is the same path the built-in
    demo runs; what the cat configuration reaches is the next test's."""
    cat = tmp_path / "shared" / "catvnoncat.h5"
    cat.parent.mkdir()
    cat.write_bytes(b"")  # the recipe only asks whether the file is there
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "TABLE_NAME"}
    done = subprocess.run(
        ["make", "-s", "demo", f"CAT_H5={cat}", "DEMO_FLAGS=--help"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert f"demo: training the cat/non-cat benchmark ({cat})" in done.stdout
    assert "usage:" in done.stdout and "--dataset" in done.stdout


def test_make_demo_cat_configuration_reaches_the_original_accuracy() -> None:
    """The demo's request for the cat set (trainer.cli.demo_request: [12288, 20, 7, 5, 1],
    relu/sigmoid, 2500 epochs, learning rate 0.0075, as the README says) reaches the original
    benchmark's cost and accuracy. Computed as the chain computes it (tests/support/chain.py:
    monolithic_reference, the functions' pinned kernel), which the chain matches bit for bit
    (test_chain.py, test_chain_on_lambda.py); the 2500 epochs through the local cloud are
    `make bench`'s cat section. On one BLAS thread: the thread count moves only the last bits
    (trainer/local/README.md), and a second thread mostly spins waiting for a core on a machine the
    suite keeps busy (twice the CPU for this test)."""
    request = demo_request(str(CAT_DATASET))
    assert request["neurons"] == {"layer1": 20, "layer2": 7, "layer3": 5, "layer4": 1}
    assert request["epochs"] == 2500 and request["learning_rate"] == 0.0075
    if not CAT_DATASET.exists():  # a clone elsewhere: the demo trains a built-in set (the test below)
        return
    with threadpool_limits(limits=1, user_api="blas"):
        params, costs = monolithic_reference(request)
    assert len(costs) == 2500 and costs[-1] == pytest.approx(0.0884, abs=5e-4)
    data = prepare(load_raw(str(CAT_DATASET)), request.get("normalize", "auto"), "float64")
    activations = [request["activations"][f"layer{i}"] for i in range(1, 5)]
    assert accuracy_of(activations, params, data.x_test, data.y_test) >= 0.76


def test_make_demo_without_the_cat_set_trains_a_built_in_one_and_says_so(tmp_path) -> None:
    said, summary = _make_demo(tmp_path, f"CAT_H5={tmp_path / 'absent' / 'catvnoncat.h5'}")
    assert any("is not here; training the built-in 'moons' dataset instead" in line for line in said)
    assert summary["status"] == "SUCCEEDED" and summary["epochs"] == 600
    assert summary["test_accuracy"] >= 0.85


def test_sweep_on_the_local_cloud_then_its_leaderboard_from_the_local_copy(tmp_path) -> None:
    sweep = tmp_path / "sweep.json"
    sweep.write_text(
        json.dumps(
            {
                "base": moons(
                    (8, 1), ("tanh", "sigmoid"), epochs=12, learning_rate=0.01, optimizer="adam", batch_size=64
                ),
                "space": {"learning_rate": [0.001, 0.05], "neurons.layer1": [4, 8]},
                "strategy": "grid",
                "max_concurrency": 2,
                "sweep_id": "cli-sweep",
                "early_stopping": {"asha": {"min_epochs": 3, "reduction_factor": 2}},
            }
        )
    )
    done = _cli("sweep", str(sweep), runs_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "sweep cli-sweep: ENDED" in done.stdout and "best: trial" in done.stdout
    assert (tmp_path / "cli-sweep" / "best.npz").stat().st_size > 0
    shown = _cli("sweep", "status", "cli-sweep", "--json", runs_dir=tmp_path)
    status = json.loads(shown.stdout)
    assert [row["rank"] for row in status["leaderboard"]] == [1, 2, 3, 4]
    assert status["summary"]["best_model"] == str(tmp_path / "cli-sweep" / "best.npz")
    assert "best_model_uri" not in status["summary"]  # the bucket of a cloud that is gone
    assert sum(status["by_state"].values()) == 4 and set(status["by_state"]) <= {"SUCCEEDED", "STOPPED"}
    accuracies = [row["validation_accuracy"] for row in status["leaderboard"]]
    assert accuracies == sorted(accuracies, reverse=True)
    refused = _cli("sweep", "status", "no-such-sweep", runs_dir=tmp_path)
    assert refused.returncode == 2 and "no sweep 'no-such-sweep'" in refused.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"base": {"dataset": "moons"}, "space": {"optimizer": []}, "strategy": "grid"}))
    refused = _cli("sweep", str(bad), runs_dir=tmp_path)
    assert refused.returncode == 2 and "space.optimizer: an empty list of values" in refused.stderr


def test_a_running_train_can_be_seen_and_cancelled_from_another_terminal(tmp_path) -> None:
    """`lnn status` and `lnn cancel` reach the cloud of a `train` that another process follows."""
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"dataset": "moons", "seed": 1, **_long_moons()}))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "TABLE_NAME"}
    environment["LNN_RUNS_DIR"] = str(tmp_path)
    train = subprocess.Popen(
        [sys.executable, "-m", "trainer", "train", str(request), "--json"],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_id = _followed_run(tmp_path, train)
        shown = {}
        for _ in range(600):  # until the chain has recorded a step
            done = _cli("status", run_id, runs_dir=tmp_path)
            assert done.returncode == 0, done.stderr
            shown = json.loads(done.stdout)
            if shown.get("percent"):
                break
        assert shown["status"] == "RUNNING" and 0 < shown["percent"] < 100
        assert shown["source"].startswith("the local cloud of the train following it")
        assert _cli("cancel", run_id, runs_dir=tmp_path).returncode == 0
        out, err = train.communicate(timeout=300)
    finally:
        train.kill()
    assert json.loads(out.strip().splitlines()[-1])["status"] == "CANCELLED", err


def _long_moons() -> dict:
    return {
        "neurons": {"layer1": 16, "layer2": 1},
        "activations": {"layer1": "tanh", "layer2": "sigmoid"},
        "epochs": 100_000,
        "learning_rate": 0.01,
        "optimizer": "adam",
        "batch_size": 64,
    }


def _followed_run(runs_dir: Path, train: subprocess.Popen) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = [p.parent.name for p in runs_dir.glob("*/FOLLOWER")]
        if found:
            return found[0]
        assert train.poll() is None, train.communicate()
        time.sleep(0.1)
    raise AssertionError("train never started following its run")


def _train_process(request: Path, runs_dir: Path) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "TABLE_NAME"}
    environment["LNN_RUNS_DIR"] = str(runs_dir)
    return subprocess.Popen(
        [sys.executable, "-m", "trainer", "train", str(request), "--json"],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# Many short invocations, so that the signal, sent as soon as the run is followed, lands mid-run.
INTERRUPTED_REQUEST = {"dataset": "moons", "seed": 3, **_long_moons(), "epochs": 400, "max_steps_per_invocation": 100}


@pytest.fixture(scope="module")
def calm_interrupted_request(tmp_path_factory) -> str:
    """The model the interrupted run's request gives undisturbed."""
    runs = tmp_path_factory.mktemp("calm")
    request = runs / "request.json"
    request.write_text(json.dumps(INTERRUPTED_REQUEST))
    calm = _cli("train", str(request), "--json", runs_dir=runs)
    assert calm.returncode == 0, calm.stderr
    return json.loads(calm.stdout.strip().splitlines()[-1])["model"]


def test_an_interrupted_train_keeps_its_run_and_resume_ends_it_bit_identical(
    tmp_path, calm_interrupted_request
) -> None:
    """Ctrl-C. SIGTERM becomes the same KeyboardInterrupt (workspace.sigterm_as_interrupt, whose
    unit test sends both signals), so it takes this path from there."""
    import signal

    import numpy as np

    request = tmp_path / "request.json"
    request.write_text(json.dumps(INTERRUPTED_REQUEST))
    calm_model = calm_interrupted_request

    runs = tmp_path / "runs"
    train = _train_process(request, runs)
    try:
        run_id = _followed_run(runs, train)
        train.send_signal(signal.SIGINT)
        out, err = train.communicate(timeout=300)
    finally:
        train.kill()
    assert train.returncode == 130, err
    assert f"`lnn resume {run_id}` continues it" in out
    assert "Traceback" not in err
    kept = json.loads((runs / run_id / "run.json").read_text())
    assert kept["run"]["status"] == "FAILED" and "interrupted by the user" in kept["run"]["failure_reason"]
    assert 0 < len(kept["epochs"]) < 400
    resumed = _cli("resume", run_id, runs_dir=runs)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "SUCCEEDED"
    with np.load(calm_model) as one, np.load(runs / run_id / "model.npz") as other:
        assert sorted(one.files) == sorted(other.files)
        for name in one.files:
            assert np.array_equal(one[name], other[name]), name


def test_a_running_sweep_can_be_seen_and_an_interrupted_one_keeps_its_record(tmp_path) -> None:
    import signal

    sweep = tmp_path / "sweep.json"
    base = {"dataset": "moons", **_long_moons(), "epochs": 5000}
    sweep.write_text(
        json.dumps({"base": base, "space": {"learning_rate": [0.01, 0.02]}, "strategy": "grid", "sweep_id": "seen"})
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "TABLE_NAME"}
    environment["LNN_RUNS_DIR"] = str(tmp_path)
    running = subprocess.Popen(
        [sys.executable, "-m", "trainer", "sweep", str(sweep)],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _followed_run(tmp_path, running) == "seen"
        shown = _cli("sweep", "status", "seen", "--json", runs_dir=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["status"] == "RUNNING"
        running.send_signal(signal.SIGTERM)  # as Ctrl-C
        _, err = running.communicate(timeout=300)
    finally:
        running.kill()
    assert running.returncode == 130, err
    assert "Traceback" not in err
    kept = json.loads((tmp_path / "seen" / "sweep.json").read_text())
    assert kept["status"] == "CANCELLED" and len(kept["leaderboard"]) == 2
    refused = _cli("sweep", "cancel", "nosuch", runs_dir=tmp_path)
    assert refused.returncode == 2 and not (tmp_path / "nosuch").exists()
