"""The README's usage blocks, run as a user pastes them: each `lnn` line of "Usage" and "Sweeps" in
order, on one runs folder, with the ids the first line printed put in for RUN_ID and SWEEP_ID."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.support.paths import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
LNN = str(Path(sys.executable).parent / "lnn")


def block(heading: str) -> list[str]:
    text = README.split(heading, 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in text.splitlines() if line.startswith("lnn ")]


def run_lines(lines: list[str], ids: dict[str, str], cwd: Path) -> dict[str, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LNN_")) and k != "TABLE_NAME"}
    env |= {
        "LNN_RUNS_DIR": str(cwd / "lnn-runs"),
        "LNN_CLOUD_DIR": str(cwd / "no-cloud"),
        "PATH": f"{Path(LNN).parent}:{env['PATH']}",
    }
    done = {}
    for line in lines:
        for name, value in ids.items():
            line = line.replace(name, value)
        done[line] = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        ids = ids | _ids(cwd / "lnn-runs")  # what the first line (train, or sweep) made
    return done


def _ids(runs: Path) -> dict[str, str]:
    """The run's or sweep's id, from the folder the command left."""
    return {
        ("SWEEP_ID" if (folder / "sweep.json").exists() else "RUN_ID"): folder.name
        for folder in (runs.iterdir() if runs.is_dir() else [])
    }


def test_the_usage_block_runs_verbatim(tmp_path: Path) -> None:
    # The README's paths are the repository's (its example files): the folder the lines run in has them.
    (tmp_path / "trainer").symlink_to(REPO_ROOT / "trainer")
    lines = block("## Usage")
    done = run_lines(lines, {}, tmp_path)
    by_command = {line.split()[1]: result for line, result in done.items()}
    for command in ("train", "runs", "status", "plot", "predict", "export", "delete"):
        assert by_command[command].returncode == 0, (command, by_command[command].stderr)
    # resume and cancel of a run that SUCCEEDED are refused, plainly.
    for command in ("resume", "cancel"):
        assert by_command[command].returncode == 2 and "Traceback" not in by_command[command].stderr
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "preds.csv").read_text().startswith("prediction\n")
    assert (tmp_path / "model.onnx").stat().st_size > 0
    assert "SUCCEEDED" in by_command["runs"].stdout
    assert json.loads(by_command["status"].stdout)["status"] == "SUCCEEDED"
    assert not any((tmp_path / "lnn-runs").iterdir())  # deleted by the last line


def test_the_sweeps_block_runs_verbatim(tmp_path: Path) -> None:
    (tmp_path / "trainer").symlink_to(REPO_ROOT / "trainer")
    done = run_lines(block("### Sweeps"), {}, tmp_path)
    by_command = {" ".join(line.split()[1:3]): result for line, result in done.items()}
    first = next(iter(done.values()))
    assert first.returncode == 0, first.stderr
    assert re.search(r"sweep \S+: ENDED", first.stdout)
    assert by_command[next(k for k in by_command if k.startswith("sweep status"))].returncode == 0
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    cancel = by_command[next(k for k in by_command if k.startswith("sweep cancel"))]
    assert cancel.returncode == 2 and "over already" in cancel.stderr


def local_cloud_lines() -> list[str]:
    """The `make up` block's commands, continuations joined and comments dropped, as pasted."""
    text = README.split("### The local cloud: `make up` / `make down`", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [c.split("  #", 1)[0].strip() for c in text.replace("\\\n", " ").splitlines()]
    return [c for c in commands if c and not c.startswith("#")]


def test_the_local_cloud_block_runs_verbatim(tmp_path: Path) -> None:
    """`eval "$(make -s up)"` in the clone, the AWS CLI and `lnn` lines in a folder of the user's with
    their request.json, `make down` in the clone: every line as the README prints it. The AWS CLI
    here is v1 (the dev lock's), so its v1 form of the invoke runs and v2's is only parsed."""
    up, *lines = local_cloud_lines()
    v2 = [line for line in lines if "--cli-binary-format" in line]
    lines = [line for line in lines if line not in v2]
    assert up == 'eval "$(make -s up)"' and len(v2) == 1 and lines[-1] == "make down"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LNN_")) and k != "TABLE_NAME"}
    env |= {"LNN_CLOUD_DIR": str(tmp_path / "cloud"), "PATH": f"{Path(LNN).parent}:{env['PATH']}"}
    request = {
        "dataset": "moons",
        "neurons": {"layer1": 8, "layer2": 1},
        "activations": {"layer1": "relu", "layer2": "sigmoid"},
        "epochs": 30,
        "learning_rate": 0.5,
    }
    (tmp_path / "request.json").write_text(json.dumps(request))

    def bash(line: str, cwd: Path, environment: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-c", line], cwd=cwd, env=environment, capture_output=True, text=True, timeout=600
        )

    started = bash(f"{up} && env -0", REPO_ROOT, env)
    try:
        assert started.returncode == 0, started.stderr
        exported = dict(entry.split("=", 1) for entry in started.stdout.split("\0") if "=" in entry)
        assert {"AWS_ENDPOINT_URL", "LAUNCH_FUNCTION_NAME", "TABLE_NAME", "MODEL_BUCKET"} <= set(exported)
        status: dict = {}
        for line in lines[:-1]:
            line = line.replace("RUN_ID", status.get("run_id", "RUN_ID"))
            done = bash(line, tmp_path, exported)
            deadline = time.monotonic() + 300
            while line.startswith("lnn status") and json.loads(done.stdout)["status"] == "RUNNING":
                assert time.monotonic() < deadline, done.stdout
                time.sleep(0.5)  # the user asks again
                done = bash(line, tmp_path, exported)
            assert done.returncode == 0, (line, done.stderr)
            if line.startswith("aws lambda invoke"):
                status = json.loads((tmp_path / "out.json").read_text())
            if line.startswith("lnn status"):
                status = json.loads(done.stdout)
                assert status["source"] == f"DynamoDB table {exported['TABLE_NAME']}"
    finally:
        stopped = bash(lines[-1], REPO_ROOT, env)
    assert stopped.returncode == 0, stopped.stderr
    assert status["status"] == "SUCCEEDED"
    with np.load(tmp_path / "model.npz") as model:  # `aws s3 cp` brought the model
        assert "W1" in model.files
    assert not (tmp_path / "cloud" / "state.json").exists()  # `make down` stopped the cloud
