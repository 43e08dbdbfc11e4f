"""`CloudProcess`: the local cloud (`python -m trainer.local.cloud`) as a child process, and its
/_lnn/ controls called as the tests call them; stop() ends it and everything it started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from trainer.local import children
from trainer.local.access import KEY_VARIABLES, new_credentials, signed_headers
from trainer.local.faults import FaultPlan
from trainer.local.lambda_service import Chaos
from trainer.local.waiting import pauses

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class CloudProcess:
    """The local cloud as a child process; stop() ends it and everything it started."""

    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen | None = None
    endpoint_url: str = ""
    workdir: str = ""
    # The cloud's access key: every client of this cloud signs with it (`aws_env`).
    credentials: dict[str, str] = field(default_factory=new_credentials)

    @property
    def aws_env(self) -> dict[str, str]:
        """What an AWS client needs to reach this cloud: its endpoint and its key."""
        return {"AWS_ENDPOINT_URL": self.endpoint_url, **self.credentials}

    def start(self, timeout_s: float = 60) -> CloudProcess:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        # A child of ours: if this process is killed, the cloud (and so all it started) goes too.
        self.process = children.popen(
            [sys.executable, "-m", "trainer.local.cloud", *self.args],
            cwd=REPO_ROOT,
            env={
                **os.environ,
                "PYTHONPATH": str(REPO_ROOT),
                **self.env,
                **{KEY_VARIABLES[name]: value for name, value in self.credentials.items()},
            },
            stdout=subprocess.PIPE,
            stderr=log,
            # Out of the terminal's process group: a Ctrl-C reaches the command that started the
            # cloud, which stops its run cleanly and then stops the cloud, instead of the cloud first.
            start_new_session=True,
        )
        assert self.process.stdout is not None
        ready: dict[str, Any] = {}

        def read() -> None:
            line = self.process.stdout.readline()  # type: ignore[union-attr]
            if line:
                ready.update(json.loads(line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not ready:
            self.stop()
            raise RuntimeError(f"the local cloud did not start within {timeout_s:.0f} s")
        self.endpoint_url, self.workdir = ready["endpoint_url"], ready["workdir"]
        return self

    def _call(self, path: str, body: Any = None, timeout_s: float = 10) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.endpoint_url}{path}",
            data=data,
            method="POST" if data else "GET",
            headers=signed_headers(self.credentials, "POST" if data else "GET", f"{self.endpoint_url}{path}", data),
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return json.loads(resp.read())

    def hold(self, function: str, on: bool = True) -> None:
        """Hold the function's asynchronous events until `deliver` or `drop` names them."""
        self._call("/_lnn/hold", {"function": function, "hold": on})

    def held(self, function: str) -> list[dict[str, Any]]:
        return self._call(f"/_lnn/held?function={quote(function)}")["held"]

    def deliver(self, request_id: str, copies: int = 1, keep: bool = False, timeout_s: float = 900) -> dict[str, Any]:
        return self._call("/_lnn/deliver", {"request_id": request_id, "copies": copies, "keep": keep}, timeout_s)

    def drop(self, request_id: str) -> None:
        self._call("/_lnn/drop", {"request_id": request_id})

    def stats(self) -> dict[str, Any]:
        return self._call("/_lnn/stats")

    def environments(self, function: str | None = None) -> list[dict[str, Any]]:
        """The execution environments (pid, function, the variables they were started with), of one
        function or of all."""
        listing = self._call("/_lnn/environments")["environments"]
        return [env for env in listing if function is None or env["function"] == function]

    def set_chaos(self, chaos: Chaos) -> dict[str, Any]:
        return self._call("/_lnn/chaos", asdict(chaos))

    def set_faults(self, plan: FaultPlan) -> dict[str, Any]:
        return self._call("/_lnn/faults", asdict(plan))

    def set_handler_faults(self, function: str, plan: dict[str, Any] | None) -> None:
        """The fault plan the function's handler reads from its next invocation on (None clears it);
        unlike a change of the function's variables, the warm environments stay."""
        self._call("/_lnn/handler-faults", {"function": function, "plan": plan})

    def reset_stats(self) -> None:
        self._call("/_lnn/reset-stats", {})

    def nodes(self) -> dict[str, dict[str, Any]]:
        """Each replication group's node: status, endpoint, pid, replacements so far."""
        return self._call("/_lnn/nodes")

    def replace_node(
        self, replication_group_id: str, delay_s: float | None = None, wait: bool = True, timeout_s: float = 60
    ) -> dict[str, Any]:
        """Kill the group's node, as a failed ElastiCache node; with `wait`, return once its
        replacement (same endpoint, empty memory) answers."""
        before = self.nodes()[replication_group_id]["replacements"]
        request: dict[str, Any] = {"replication_group_id": replication_group_id}
        if delay_s is not None:
            request["delay_s"] = delay_s
        node = self._call("/_lnn/replace-node", request)
        return self.wait_node_replaced(replication_group_id, before + 1, timeout_s) if wait else node

    def reset_connections(self, replication_group_id: str) -> int:
        """Reset every connection to the group's node (a network fault; the node keeps its data)."""
        return int(self._call("/_lnn/reset-connections", {"replication_group_id": replication_group_id})["connections"])

    def wait_node_replaced(self, replication_group_id: str, replacements: int, timeout_s: float = 60) -> dict[str, Any]:
        """Wait until the group's node is available after `replacements` replacements in all."""
        deadline = time.monotonic() + timeout_s
        waits = pauses()
        while True:
            node = self.nodes()[replication_group_id]
            if node["status"] == "available" and node["replacements"] >= replacements:
                return node
            if time.monotonic() > deadline:
                raise TimeoutError(f"{replication_group_id}'s node was not replaced within {timeout_s:.0f} s: {node}")
            time.sleep(next(waits))

    def idle(self) -> bool:
        """Nothing queued and nothing in flight in the Lambda service."""
        return bool(self._call("/_lnn/idle")["idle"])

    def wait_idle(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        waits = pauses()
        while not self.idle():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Lambda service still has queued events after {timeout_s:.0f} s")
            time.sleep(next(waits))

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process and self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> CloudProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
