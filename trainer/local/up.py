"""`make up` / `make down`: the local cloud in the background, for the AWS CLI and `python -m trainer`.

    python -m trainer.local.up up      start it, provision the stack, print the exports
    python -m trainer.local.up down    stop it and everything it started (functions, redis-server)

The state (the cloud's pid, start time and command line, its endpoint and the stack's names) is
kept in $LNN_CLOUD_DIR (default .build/cloud); `up` writes the exports to env.sh there as well,
readable by its owner only: they hold the cloud's access key, new at every `up`. `up` and `down`
take the recorded pid for the cloud only while the process with that pid started when, and runs
the command line that, `up` recorded: after a reboot the pid may be anyone's.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from trainer.local.children import running
from trainer.local.cloud import KEY_VARIABLES, REPO_ROOT, new_credentials

STATE_DIR = Path(os.environ.get("LNN_CLOUD_DIR") or REPO_ROOT / ".build" / "cloud")
REGION = "us-east-1"


def exports(state: dict, credentials: dict[str, str]) -> dict[str, str]:
    env = state["stack"]
    return {
        "AWS_ENDPOINT_URL": state["endpoint_url"],
        **credentials,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "LAUNCH_FUNCTION_ARN": env["LAUNCH_FUNCTION_ARN"],
        "TRAINER_FUNCTION_ARN": env["TRAINER_FUNCTION_ARN"],
        "LAUNCH_FUNCTION_NAME": env["LAUNCH_FUNCTION_NAME"],
        "TABLE_NAME": env["TABLE_NAME"],
        "MODEL_BUCKET": env["MODEL_BUCKET"],
        "SNS_TOPIC_ARN": env["SNS_TOPIC_ARN"],
    }


def identity(pid: int) -> dict[str, object]:
    """What tells a process from a later one given the same pid: its start time and command line."""
    process = psutil.Process(pid)
    return {"pid": pid, "started": process.create_time(), "cmdline": process.cmdline()}


def recorded_cloud(state: dict) -> int | None:
    """The recorded cloud's pid while that very process runs; None once it is gone, whoever has
    its pid now."""
    pid = state.get("pid")
    if not isinstance(pid, int) or not running(pid):
        return None
    try:
        now = identity(pid)
    except psutil.Error:
        return None
    same = now["started"] == state.get("started") and now["cmdline"] == state.get("cmdline")
    return pid if same else None


def _write_private(path: Path, text: str) -> None:
    """Created readable by its owner only, before a byte of it is written."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _read_state(state_file: Path) -> dict:
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def current() -> dict | None:
    """The `make up` cloud's state while that very cloud is up; None when it is not."""
    state_file = STATE_DIR / "state.json"
    state = _read_state(state_file) if state_file.exists() else {}
    return state if state and recorded_cloud(state) is not None else None


def access(state: dict) -> dict[str, str]:
    """How to reach the `make up` cloud: its endpoint and its key, from the exports it wrote
    (readable by their owner only)."""
    found = {}
    for line in (STATE_DIR / "env.sh").read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            found[name] = value
    return {"AWS_ENDPOINT_URL": state["endpoint_url"], **found}


def up() -> int:
    state_file = STATE_DIR / "state.json"
    if state_file.exists() and recorded_cloud(_read_state(state_file)) is not None:
        print(
            f"the local cloud is up already (`make down` stops it); exports in {STATE_DIR / 'env.sh'}", file=sys.stderr
        )
        print((STATE_DIR / "env.sh").read_text(), end="")
        return 0
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    ready_file = STATE_DIR / "ready.json"
    ready_file.unlink(missing_ok=True)
    credentials = new_credentials()
    with open(STATE_DIR / "cloud.log", "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trainer.local.cloud",
                "--ready-file",
                str(ready_file),
                "--workdir",
                str(STATE_DIR / "work"),
            ],
            cwd=REPO_ROOT,
            env={
                **os.environ,
                "PYTHONPATH": str(REPO_ROOT),
                **{KEY_VARIABLES[name]: value for name, value in credentials.items()},
            },
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # outlives this command; `down` ends it
        )
    deadline = time.monotonic() + 60
    while not ready_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            print(f"the local cloud did not start; see {STATE_DIR / 'cloud.log'}", file=sys.stderr)
            return 1
        time.sleep(0.05)
    try:
        text = _provision(process, ready_file, credentials, state_file)
    except BaseException:
        # Until its state is written, nothing else can stop this cloud (it has a session of its
        # own): a failure to provision must not leave it running.
        process.terminate()
        process.wait(30)
        raise
    print(f"# the local cloud is up (pid {process.pid}); `make down` stops it. Exports:", file=sys.stderr)
    print(text, end="")
    return 0


def _provision(process: subprocess.Popen, ready_file: Path, credentials: dict[str, str], state_file: Path) -> str:
    """The stack in the new cloud, its state and exports written; the exports' text."""
    ready = json.loads(ready_file.read_text())
    from trainer.local.environment import aws_environment
    from trainer.local.provision import provision_stack

    with aws_environment({"AWS_ENDPOINT_URL": ready["endpoint_url"], **credentials}, REGION):
        stack = provision_stack(f"lnn-{secrets.token_hex(3)}")
    state = {**identity(process.pid), "endpoint_url": ready["endpoint_url"], "stack": stack}
    _write_private(state_file, json.dumps(state, indent=1))
    text = "".join(f"export {k}={v}\n" for k, v in exports(state, credentials).items())
    _write_private(STATE_DIR / "env.sh", text)
    return text


def down() -> int:
    state_file = STATE_DIR / "state.json"
    if not state_file.exists():
        print("the local cloud is not up (nothing to stop)", file=sys.stderr)
        return 0
    state = _read_state(state_file)
    pid = recorded_cloud(state)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)  # it stops its execution environments and redis-servers first
        deadline = time.monotonic() + 30
        while recorded_cloud(state) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if recorded_cloud(state) is not None:
            os.killpg(pid, signal.SIGKILL)
    for name in ("state.json", "env.sh", "ready.json"):
        (STATE_DIR / name).unlink(missing_ok=True)
    if pid is None:
        print(f"the local cloud (pid {state.get('pid')}) was no longer running; its state is cleared", file=sys.stderr)
    else:
        print(f"the local cloud (pid {pid}) is down", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv not in (["up"], ["down"]):
        print("usage: python -m trainer.local.up up|down", file=sys.stderr)
        return 2
    return up() if argv == ["up"] else down()


if __name__ == "__main__":
    sys.exit(main())
