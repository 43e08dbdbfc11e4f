"""The fork server's own process (run by path, standard library only: it must not import the package
whose handlers it starts). It imports the libraries every execution environment imports, then forks
one child per request; each child becomes `python -m awslambdaric <handler>` with the request's
environment, working directory and log. See forkserver.py for why and for the protocol.

Requests arrive as JSON lines on stdin: {"id", "handler", "environ", "cwd", "log"}. Answers go out as
JSON lines on stdout: {"id", "pid"} (or {"id", "error"}) once a child runs, {"exited", "code"} when
it ends (the code as subprocess reports it: negative for a signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import runpy
import selectors
import signal
import sys
import traceback

_PR_SET_PDEATHSIG = 1
# What an environment imports before its handler runs anything: these, imported once here, cost a
# forked child nothing. Only libraries whose import reads no variable the key (forkserver.py) leaves
# out: numpy reads OpenBLAS's and its own, which are in the key; awslambdaric.bootstrap reads the
# function's log format at import, so it is imported in each child.
PRELOAD = (
    "numpy",
    "redis",
    "boto3",
    "boto3.s3.inject",
    "botocore.session",
    "botocore.client",
    "botocore.endpoint",
    "botocore.parsers",
    "botocore.serialize",
    "botocore.auth",
    "botocore.retries.standard",
    "urllib3",
    "dateutil.parser",
    "msgspec",
)


def main() -> int:
    # As `python -m` would have it: the working directory first on the path, not this file's folder.
    sys.path[0] = os.getcwd()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            continue  # a runtime without it: its children import what they need themselves
    requests = os.dup(0)
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # nothing of a child's may reach the answers
    libc = ctypes.CDLL(None, use_errno=True)
    selector = selectors.DefaultSelector()
    selector.register(requests, selectors.EVENT_READ, None)
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.data is None:
                chunk = os.read(requests, 65536)
                if not chunk:
                    return 0  # the cloud closed the pipe, or went: its children go with this process
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    request = json.loads(line)
                    answer = _start(request, libc)
                    if "pid" in answer:
                        pidfd = os.pidfd_open(answer["pid"])
                        selector.register(pidfd, selectors.EVENT_READ, answer["pid"])
                    answers.write(json.dumps(answer) + "\n")
            else:
                pid = key.data
                selector.unregister(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                answers.write(json.dumps({"exited": pid, "code": os.waitstatus_to_exitcode(status)}) + "\n")


def _start(request: dict, libc: ctypes.CDLL) -> dict:
    parent = os.getpid()
    try:
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        return {"id": request["id"], "error": str(exc)}
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(log)
        return {"id": request["id"], "error": str(exc)}
    if pid:
        os.close(log)
        return {"id": request["id"], "pid": pid}
    code = 1
    try:
        _become(request, libc, parent, log)
        runpy.run_module("awslambdaric", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int) and exc.code is not None:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a stream already gone: nothing left to say
                stream.flush()
        os._exit(code)
    return {}


def _become(request: dict, libc: ctypes.CDLL, parent: int, log: int) -> None:
    """In the child: what `subprocess.Popen([python, "-m", "awslambdaric", handler], env=..., cwd=...,
    stdout=log, stderr=STDOUT, start_new_session=True)` would have given it."""
    os.setsid()
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with the fork server, as it with the cloud
    if os.getppid() != parent:
        os._exit(1)
    os.dup2(log, 1)
    os.dup2(log, 2)
    # Nothing of the fork server's (its pipes, its children's pidfds) stays open in the child. The
    # objects that wrapped them stay referenced in main()'s frame until os._exit, so none closes a
    # descriptor number the handler has since reused.
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["environ"])
    sys.path[0] = os.getcwd()
    sys.argv = ["-m", request["handler"]]


if __name__ == "__main__":
    sys.exit(main())
