"""`make up` / `make down`: the local cloud in the background, for the AWS CLI and `python -m trainer`.

    python -m trainer.local.up up      start it, provision the stack, print the exports
    python -m trainer.local.up down    stop it and everything it started (functions, redis-server)

The state (the cloud's pid, its endpoint and the stack's names) is kept in $LNN_CLOUD_DIR
(default .build/cloud); `up` writes the exports to env.sh there as well.
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

from trainer.local.children import running
from trainer.local.cloud import LOCAL_CREDENTIALS, REPO_ROOT

STATE_DIR = Path(os.environ.get("LNN_CLOUD_DIR") or REPO_ROOT / ".build" / "cloud")
REGION = "us-east-1"


def exports(state: dict) -> dict[str, str]:
    env = state["stack"]
    return {
        "AWS_ENDPOINT_URL": state["endpoint_url"],
        **{k: LOCAL_CREDENTIALS[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "LAUNCH_FUNCTION_ARN": env["LAUNCH_FUNCTION_ARN"],
        "TRAINER_FUNCTION_ARN": env["TRAINER_FUNCTION_ARN"],
        "LAUNCH_FUNCTION_NAME": env["LAUNCH_FUNCTION_NAME"],
        "TABLE_NAME": env["TABLE_NAME"],
        "MODEL_BUCKET": env["MODEL_BUCKET"],
        "SNS_TOPIC_ARN": env["SNS_TOPIC_ARN"],
    }


def current() -> dict | None:
    """The `make up` cloud's state while it is up; None when it is not."""
    state_file = STATE_DIR / "state.json"
    if not state_file.exists():
        return None
    state = json.loads(state_file.read_text())
    return state if running(state["pid"]) else None


def up() -> int:
    if current() is not None:
        print(
            f"the local cloud is up already (`make down` stops it); exports in {STATE_DIR / 'env.sh'}", file=sys.stderr
        )
        print((STATE_DIR / "env.sh").read_text(), end="")
        return 0
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    ready_file = STATE_DIR / "ready.json"
    ready_file.unlink(missing_ok=True)
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
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
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
    ready = json.loads(ready_file.read_text())
    from trainer.local.cloud_runner import aws_environment
    from trainer.local.provision import provision_stack

    with aws_environment(ready["endpoint_url"], REGION):
        stack = provision_stack(f"lnn-{secrets.token_hex(3)}")
    state = {"pid": process.pid, "endpoint_url": ready["endpoint_url"], "stack": stack}
    (STATE_DIR / "state.json").write_text(json.dumps(state, indent=1))
    text = "".join(f"export {k}={v}\n" for k, v in exports(state).items())
    (STATE_DIR / "env.sh").write_text(text)
    print(f"# the local cloud is up (pid {process.pid}); `make down` stops it. Exports:", file=sys.stderr)
    print(text, end="")
    return 0


def down() -> int:
    state_file = STATE_DIR / "state.json"
    if not state_file.exists():
        print("the local cloud is not up (nothing to stop)", file=sys.stderr)
        return 0
    pid = json.loads(state_file.read_text())["pid"]
    if running(pid):
        os.kill(pid, signal.SIGTERM)  # it stops its execution environments and redis-servers first
        deadline = time.monotonic() + 30
        while running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if running(pid):
            os.killpg(pid, signal.SIGKILL)
    for name in ("state.json", "env.sh", "ready.json"):
        (STATE_DIR / name).unlink(missing_ok=True)
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
