"""The README's usage blocks, run as a user pastes them: each `lnn` line of "Usage" and "Sweeps" in
order, on one runs folder, with the ids the first line printed put in for RUN_ID and SWEEP_ID."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

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
