"""Execution environments forked from a process that has already imported their libraries.

An environment is `python -m awslambdaric <handler>`; before its handler does anything it has
imported numpy, redis-py and boto3, about 0.3 CPU-seconds of every cold start, and a local run or a
test session starts hundreds of environments on a machine of two cores. A fork server imports
them once; each environment is a child forked from it, which then becomes what the command would
have made: its own session, the function's environment variables, working directory and log, and
`runpy` runs awslambdaric's `__main__` as `-m` does. The handler's own modules are imported in the
child, so module state (a warm environment's cache, say) starts empty in each one.

What an import reads decides which fork server a child comes from: the interpreter, its working
directory, and the variables that take effect at start or at the libraries' import (Python's own,
the dynamic loader's, OpenBLAS's and numpy's — the emulated host kinds of fleet.py differ there).
The other variables are set in the child before awslambdaric starts.

Seen from outside, a child differs from a started process in two ways: /proc/<pid>/cmdline and
/proc/<pid>/environ show the fork server's (the kernel keeps a process's start-up block); the
cloud's `/_lnn/environments` says which process runs which function, with the variables it was given.

Linux only (pidfd_open); elsewhere environments start as plain processes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from trainer.local import children

MAIN = Path(__file__).with_name("forkserver_main.py")
STARTUP_PREFIXES = ("PYTHON", "LD_", "OPENBLAS_", "GOTO", "OMP_", "MKL_", "NPY_", "MALLOC_", "LC_")
STARTUP_NAMES = ("LANG", "PATH", "HOME")
AVAILABLE = sys.platform == "linux" and hasattr(os, "pidfd_open")


def startup_variables(environ: dict[str, str]) -> dict[str, str]:
    """The variables that take effect before the handler runs: a child's fork server has exactly these."""
    return {k: v for k, v in environ.items() if k.startswith(STARTUP_PREFIXES) or k in STARTUP_NAMES}


class Forked:
    """A forked environment's process, with the part of `subprocess.Popen` the service uses. It is
    the fork server's child: the fork server reaps it and reports how it ended."""

    def __init__(self, pid: int, args: list[str]) -> None:
        self.pid = pid
        self.args = args
        self.returncode: int | None = None
        self._ended = threading.Event()

    def ended(self, code: int) -> None:
        self.returncode = code
        self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """One fork server process and the children it reports on."""

    def __init__(self, python: str, cwd: str, environ: dict[str, str], log: Path) -> None:
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.process = children.popen(
            [python, str(MAIN)],
            cwd=cwd,
            env=environ,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # the state below
        self._writing = threading.Lock()  # one request at a time on the pipe
        # A request's answer, awaited: set when it comes, the child (or the error) in the list, and
        # the command the child stands for (what a TimeoutExpired names).
        self._waiting: dict[int, tuple[threading.Event, list[Any], list[str]]] = {}
        self._children: dict[int, Forked] = {}
        self.gone = False
        self._reader = threading.Thread(target=self._read, name="forkserver-answers", daemon=True)
        self._reader.start()

    def start(self, handler: str, environ: dict[str, str], cwd: str, log: Path, args: list[str]) -> Forked:
        answered, answer = threading.Event(), list[Any]()
        with self._lock:
            if self.gone:
                raise OSError("the fork server has ended")
            request_id = next(self._ids)
            self._waiting[request_id] = (answered, answer, args)
        request = {"id": request_id, "handler": handler, "environ": environ, "cwd": cwd, "log": str(log)}
        stdin: IO[bytes] = self.process.stdin  # type: ignore[assignment]
        try:
            with self._writing:
                stdin.write(json.dumps(request).encode() + b"\n")
                stdin.flush()
        except OSError:
            with self._lock:
                self._waiting.pop(request_id, None)
            raise
        answered.wait()
        result = answer[0]
        if isinstance(result, BaseException):
            raise result
        forked: Forked = result
        return forked

    def _read(self) -> None:
        stdout: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        for line in stdout:
            message = json.loads(line)
            with self._lock:
                if "exited" in message:
                    child = self._children.pop(message["exited"], None)
                    if child is not None:
                        child.ended(message["code"])
                    continue
                answered, answer, args = self._waiting.pop(message["id"])
                if "pid" in message:
                    child = self._children[message["pid"]] = Forked(message["pid"], args)
                    answer.append(child)
                else:
                    answer.append(OSError(f"the fork server could not start an environment: {message['error']}"))
                answered.set()
        # The fork server is gone: its children went with it (their parent-death signal).
        with self._lock:
            self.gone = True
            for child in self._children.values():
                child.ended(-signal.SIGKILL)
            self._children.clear()
            for answered, answer, _ in self._waiting.values():
                answer.append(OSError("the fork server ended"))
                answered.set()
            self._waiting.clear()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self._reader.join(timeout=5)
        self._log.close()


class ForkServers:
    """A fork server per interpreter, working directory and start-up variables, started when first needed."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._servers: dict[tuple[Any, ...], ForkServer] = {}
        self._lock = threading.Lock()
        self._closed = False

    def start(self, python: str, handler: str, environ: dict[str, str], cwd: str, log: IO[bytes]) -> Any:
        """A process running `python -m awslambdaric handler`, writing to `log` (a file): a `Forked`
        child, or a started process where forking is not available."""
        args = [python, "-m", "awslambdaric", handler]
        if not AVAILABLE:
            return children.popen(
                args, cwd=cwd, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        startup = startup_variables(environ)
        key = (python, cwd, tuple(sorted(startup.items())))
        with self._lock:
            if self._closed:
                raise OSError("the Lambda service is shutting down")
            server = self._servers.get(key)
            if server is None or server.gone:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                server = ForkServer(python, cwd, startup, self.log_dir / f"forkserver-{len(self._servers) + 1}.log")
                self._servers[key] = server
        return server.start(handler, environ, cwd, Path(log.name), args)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            servers = list(self._servers.values())
            self._servers.clear()
        for server in servers:
            server.stop()
