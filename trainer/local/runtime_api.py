"""The AWS Lambda Runtime API: the HTTP protocol a function's runtime client (awslambdaric) speaks
to the execution environment it runs in. One server per execution environment, one event at a time.

    GET  /2018-06-01/runtime/invocation/next            -> the next event (blocks until there is one)
    POST /2018-06-01/runtime/invocation/{id}/response   <- the handler's result
    POST /2018-06-01/runtime/invocation/{id}/error      <- a function error
    POST /2018-06-01/runtime/init/error                 <- the handler could not be loaded

`submit()` hands an event to the runtime and returns a `Pending` whose `done` is set when the
runtime has answered; `invoke()` waits for it, like a synchronous `lambda invoke`. The duration is
Lambda's "Duration": from the moment the runtime picked the event up to its answer.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


def new_trace_id(lineage: str | None = None) -> str:
    """An X-Ray trace header as Lambda hands it to the runtime (Lambda-Runtime-Trace-Id)."""
    root = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"
    return f"{root};Lineage={lineage}" if lineage else root


@dataclass
class Outcome:
    request_id: str
    ok: bool
    payload: Any  # the decoded response body, or the error document
    error_type: str | None
    duration_s: float  # picked up by the runtime -> response received
    body: bytes = b""  # the bytes the runtime posted, as a synchronous invoke returns them


@dataclass
class Pending:
    request_id: str
    body: bytes
    function_arn: str
    deadline_ms: int
    trace_id: str
    done: threading.Event = field(default_factory=threading.Event)
    picked_up: threading.Event = field(default_factory=threading.Event)
    picked_up_at: float | None = None
    outcome: Outcome | None = None


class _Handler(BaseHTTPRequestHandler):
    """One request of the runtime to its environment's API."""

    server: _Server

    protocol_version = "HTTP/1.1"
    # A reply goes out as headers then body: with Nagle's algorithm the body waits for the
    # client's delayed ACK of the headers (about 40 ms, twice per invocation).
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        api = self.server.api
        if self.path != f"{PREFIX}/invocation/next":
            self._reply(404, b'{"errorMessage":"not found"}')
            return
        api.first_poll.set()
        pending = api._queue.get()  # long poll, as the real API does
        pending.picked_up_at = time.monotonic()
        pending.picked_up.set()
        self._reply(
            200,
            pending.body,
            {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": pending.request_id,
                "Lambda-Runtime-Deadline-Ms": str(pending.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": pending.function_arn,
                "Lambda-Runtime-Trace-Id": pending.trace_id,
            },
        )

    def do_POST(self) -> None:
        api, body = self.server.api, self._body()
        if self.path == f"{PREFIX}/init/error":
            self._init_error(api, body)
            return
        parts = self.path[len(PREFIX) :].strip("/").split("/")
        if len(parts) != 3 or parts[0] != "invocation" or parts[2] not in ("response", "error"):
            self._reply(404, b'{"errorMessage":"not found"}')
            return
        pending = api._pending.get(parts[1])
        if pending is None or pending.outcome is not None:
            self._reply(400, b'{"errorMessage":"unknown or finished request id"}')
            return
        ok = parts[2] == "response"
        duration = time.monotonic() - (pending.picked_up_at or time.monotonic())
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = body.decode("utf-8", "replace")
        pending.outcome = Outcome(
            request_id=pending.request_id,
            ok=ok,
            payload=payload,
            error_type=None if ok else self.headers.get("Lambda-Runtime-Function-Error-Type"),
            duration_s=duration,
            body=body,
        )
        self._reply(202, b'{"status":"OK"}')
        api._pending.pop(pending.request_id, None)
        pending.done.set()

    def _init_error(self, api: RuntimeAPI, body: bytes) -> None:
        api.init_errors.append(
            {"error_type": self.headers.get("Lambda-Runtime-Function-Error-Type"), "body": json.loads(body or b"{}")}
        )
        api.init_error_event.set()
        self._reply(202, b'{"status":"OK"}')


class _Server(ThreadingHTTPServer):
    api: RuntimeAPI


class RuntimeAPI:
    def __init__(self, function_arn: str, timeout_s: int = 900) -> None:
        self.function_arn = function_arn
        self.timeout_s = timeout_s
        self._queue: queue.Queue[Pending] = queue.Queue()
        self._pending: dict[str, Pending] = {}
        self.init_errors: list[dict[str, Any]] = []
        self.init_error_event = threading.Event()
        self.first_poll = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self._server.daemon_threads = True
        # A short poll interval: stopping an execution environment waits for one.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> RuntimeAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def submit(
        self, body: bytes, timeout_s: float | None = None, trace_id: str | None = None, request_id: str | None = None
    ) -> Pending:
        """Queue one event for the runtime; its deadline is `timeout_s` (the function's timeout) from now."""
        pending = Pending(
            request_id=request_id or str(uuid.uuid4()),
            body=body,
            function_arn=self.function_arn,
            deadline_ms=int((time.time() + (timeout_s or self.timeout_s)) * 1000),
            trace_id=trace_id or new_trace_id(),
        )
        self._pending[pending.request_id] = pending
        self._queue.put(pending)
        return pending

    def invoke(self, event: Any, process: subprocess.Popen | None = None, timeout_s: float = 120) -> Outcome:
        pending = self.submit(json.dumps(event).encode())
        deadline = time.monotonic() + timeout_s
        while not pending.done.wait(0.1):
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the runtime exited with code {process.returncode} during {pending.request_id}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no response to {pending.request_id} within {timeout_s} s")
        assert pending.outcome is not None
        return pending.outcome
