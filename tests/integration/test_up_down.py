"""`make up`, the README's commands with the real AWS CLI (awscli v1 from the dev lock), `make down`:
the run id comes back from `aws lambda invoke`, the run reaches SUCCEEDED, the SNS summary is read
back through an SQS queue subscribed to the topic, the model downloads, and no process is left."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT
from tests.support.processes import descendants, still_running
from tests.support.requests import REQUEST

PYTHON = str(REPO_ROOT / ".venv" / "bin" / "python")


def running_pid(pid: int) -> bool:
    from trainer.local.children import running

    return running(pid)


def user_env(cloud_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LNN_")) and k != "TABLE_NAME"}
    env["LNN_CLOUD_DIR"] = str(cloud_dir)
    env["PATH"] = f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(args: list[str], env: dict[str, str], cwd: Path = REPO_ROOT, timeout: float = 300) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def readme_lines(*starts: str) -> list[str]:
    """The README's `make up` lines that begin with each of `starts` (the invoke without v2's
    flag), comments and continuations resolved, as a user would paste them."""
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("### The local cloud: `make up` / `make down`", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = block.replace("\\\n", " ").splitlines()
    found = []
    for start in starts:
        lines = [c.split("  #", 1)[0].strip() for c in commands if c.startswith(start)]
        lines = [line for line in lines if "--cli-binary-format" not in line]
        assert len(lines) == 1, (start, lines)
        found.append(lines[0])
    return found


# What `up` recorded of a cloud, as older versions kept it (the pid alone) and as it keeps it now.
RECORDED_FORMS = ({}, {"started": 1.0, "cmdline": [PYTHON, "-m", "trainer.local.cloud", "--ready-file", "x"]})


def stale_state(cloud_dir: Path, pid: int, recorded: dict) -> None:
    """The state a crashed `up` leaves, naming `pid`: after a reboot, anyone's."""
    cloud_dir.mkdir(parents=True, exist_ok=True)
    state = {"pid": pid, "endpoint_url": "http://127.0.0.1:9", "stack": {}, **recorded}
    (cloud_dir / "state.json").write_text(json.dumps(state))


def test_a_stale_state_naming_an_unrelated_process_leaves_it_running(tmp_path: Path) -> None:
    env = user_env(tmp_path / "cloud")
    unrelated = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        for recorded in RECORDED_FORMS:
            stale_state(tmp_path / "cloud", unrelated.pid, recorded)
            done = subprocess.run(
                [PYTHON, "-m", "trainer.local.up", "down"], env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0 and "no longer running" in done.stderr, done.stderr
            assert unrelated.poll() is None, "down signalled a process that is not the cloud"
            assert not (tmp_path / "cloud" / "state.json").exists()
    finally:
        unrelated.kill()
        unrelated.wait()


def test_make_up_then_the_aws_cli_then_make_down(tmp_path: Path) -> None:
    env = user_env(tmp_path / "cloud")
    # What a crash left: `up` starts a cloud of its own rather than take this process for it.
    unrelated = subprocess.Popen(["sleep", "300"], start_new_session=True)
    stale_state(tmp_path / "cloud", unrelated.pid, RECORDED_FORMS[1])
    out = run(["make", "-s", "up"], env)
    seen: set[int] = set()
    try:
        lines = [line.removeprefix("export ") for line in out.splitlines() if line.startswith("export ")]
        exports = dict(line.split("=", 1) for line in lines)
        assert {"AWS_ENDPOINT_URL", "AWS_REGION", "LAUNCH_FUNCTION_ARN", "TABLE_NAME", "SNS_TOPIC_ARN"} <= set(exports)
        cloud_pid = json.loads((tmp_path / "cloud" / "state.json").read_text())["pid"]
        assert cloud_pid != unrelated.pid
        # The exports hold the cloud's own key, new at each `up`: its owner's to read only.
        assert stat.S_IMODE((tmp_path / "cloud" / "env.sh").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "cloud" / "state.json").stat().st_mode) == 0o600
        assert len(exports["AWS_ACCESS_KEY_ID"]) == 20 and len(exports["AWS_SECRET_ACCESS_KEY"]) >= 40
        cli = {**env, **exports}
        # awscli v1's SQS commands set an endpoint of their own over AWS_ENDPOINT_URL: name it.
        sqs = ["aws", "sqs", "--endpoint-url", exports["AWS_ENDPOINT_URL"]]

        queue_url = json.loads(run([*sqs, "create-queue", "--queue-name", "lnn-summaries"], cli))["QueueUrl"]
        queue_arn = json.loads(
            run([*sqs, "get-queue-attributes", "--queue-url", queue_url, "--attribute-names", "QueueArn"], cli)
        )["Attributes"]["QueueArn"]
        run(
            [
                "aws",
                "sns",
                "subscribe",
                "--topic-arn",
                exports["SNS_TOPIC_ARN"],
                "--protocol",
                "sqs",
                "--notification-endpoint",
                queue_arn,
            ],
            cli,
        )

        # The README's own lines, run by bash as a user pastes them: its v1 form (the CLI here is v1,
        # which sends --payload as given; v2 needs --cli-binary-format raw-in-base64-out for that).
        version = subprocess.run(["aws", "--version"], env=cli, capture_output=True, text=True, check=True)
        assert (version.stdout + version.stderr).startswith("aws-cli/1."), version
        (tmp_path / "request.json").write_text(json.dumps(REQUEST))
        invoke_v1, copy_model = readme_lines("aws lambda invoke", "aws s3 cp")
        run(["bash", "-c", invoke_v1], cli, cwd=tmp_path)
        launched = json.loads((tmp_path / "out.json").read_text())
        run_id = launched["run_id"]
        assert launched["status"] == "RUNNING"

        deadline, status = time.monotonic() + 120, {}
        while time.monotonic() < deadline:
            seen |= descendants(cloud_pid)
            status = json.loads(run([PYTHON, "-m", "trainer", "status", run_id], cli))
            if status["status"] != "RUNNING":
                break
            time.sleep(0.3)
        assert status["status"] == "SUCCEEDED", status

        summaries = []
        deadline = time.monotonic() + 30
        while not summaries and time.monotonic() < deadline:
            received = json.loads(
                run([*sqs, "receive-message", "--queue-url", queue_url, "--wait-time-seconds", "1"], cli) or "{}"
            )
            summaries += [json.loads(json.loads(m["Body"])["Message"]) for m in received.get("Messages", [])]
        assert [(s["kind"], s["run_id"]) for s in summaries] == [("SUCCEEDED", run_id)]
        assert summaries[0]["test_accuracy"] == pytest.approx(status["test_accuracy"])

        run(["bash", "-c", copy_model.replace("RUN_ID", run_id)], cli, cwd=tmp_path)
        assert status["model_uri"].endswith(f"/models/{run_id}/model.npz")
        predicted = json.loads(run([PYTHON, "-m", "trainer", "predict", str(tmp_path / "model.npz"), "moons"], cli))
        assert predicted["accuracy"] == pytest.approx(status["test_accuracy"])
        seen |= descendants(cloud_pid)

        # `lnn train` uses the cloud that is up, says so, and `lnn status` (TABLE_NAME) reads its run there.
        trained = subprocess.run(
            ["lnn", "train", str(tmp_path / "request.json"), "--json"],
            cwd=tmp_path,
            env={**cli, "LNN_RUNS_DIR": str(tmp_path / "runs")},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert trained.returncode == 0, trained.stderr
        assert f"(cloud: the `make up` cloud at {exports['AWS_ENDPOINT_URL']})" in trained.stderr
        trained_id = json.loads(trained.stdout.strip().splitlines()[-1])["run_id"]
        shown = json.loads(run(["lnn", "status", trained_id], cli))
        assert shown["status"] == "SUCCEEDED" and shown["source"] == f"DynamoDB table {exports['TABLE_NAME']}"
        listed = json.loads(run(["lnn", "runs", "--json"], {**cli, "LNN_RUNS_DIR": str(tmp_path / "runs")}))
        assert {run_id, trained_id} <= {row["id"] for row in listed if row["where"] == exports["TABLE_NAME"]}
        assert running_pid(cloud_pid), "the `make up` cloud must outlive a train that used it"
        seen |= descendants(cloud_pid)
    finally:
        run(["make", "-s", "down"], env)
        assert unrelated.poll() is None
        unrelated.kill()
        unrelated.wait()
    assert len(seen) >= 4  # the cloud, its redis-server and the functions' execution environments
    assert still_running(seen) == []
    assert not (tmp_path / "cloud" / "state.json").exists()
