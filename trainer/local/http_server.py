"""The local cloud's HTTP server: werkzeug's threaded development server, keeping connections alive.

Werkzeug's server answers every request with `Connection: close`, so each AWS SDK call opened a TCP
connection and the server a thread for it. The SDKs (botocore's urllib3 pool) reuse a connection the
server keeps open: the cloud's CPU per DynamoDB GetItem went from 1.47 ms to 1.00, per UpdateItem
from 1.99 to 1.53, per request refused before moto from 0.44 to 0.17 (boto3, one client in a row).

Still a thread per connection, not a fixed pool: a synchronous Invoke holds its request for the
whole invocation while the function calls back to the cloud, so a pool could deadlock.

Werkzeug closes for a reason this server has to handle instead: after a response it discards
whatever the client sent past what the application read, which on a kept-alive connection would
be the client's next request. Here the body is delimited by its length (or its chunks), the
application reads it through a stream that stops there, and what it left unread is read and
dropped before the answer goes out. The answer is length-delimited too: the application's whole
body is collected first (the cloud's answers are in memory anyway) and its length sent.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import traceback
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import ThreadedWSGIServer
from werkzeug.wsgi import LimitedStream, get_content_length

# How long a connection may wait for its client's next request. The SDKs check a pooled
# connection before reusing it and open another if the server has closed it.
IDLE_S = 120.0
# Hop-by-hop headers: how this connection is framed and kept is the server's to say.
FRAMING = frozenset({"connection", "keep-alive", "transfer-encoding"})


class KeepAliveRequestHandler(MotoRequestHandler):
    """moto's handler (its underscore headers kept), answering HTTP/1.1 without closing."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_S  # on the socket: an idle connection, or a client stalled mid-request, ends
    # Two small writes per answer (headers, body): Nagle would hold the second for the client's
    # delayed ACK on a connection that stays open.
    disable_nagle_algorithm = True
    rfile: io.BufferedReader  # StreamRequestHandler's makefile("rb"): buffered, so it can peek

    def handle_one_request(self) -> None:
        try:
            self.rfile.peek(1)  # a timeout here is an idle connection ending, not an error to log
        except TimeoutError:
            self.close_connection = True
            return
        super().handle_one_request()

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        if self.request_version != "HTTP/1.1":
            self.close_connection = True  # an HTTP/1.0 client expects the end of the answer at the close
        body = environ["wsgi.input"]  # chunked: werkzeug's DechunkedInput ends at the last chunk
        if not environ.get("wsgi.input_terminated"):
            body = environ["wsgi.input"] = LimitedStream(self.rfile, get_content_length(environ) or 0)
        try:
            status, headers, chunks = self._call_app(environ)
        except Exception:
            self.server.log("error", f"Error on request {self.requestline!r}:\n{traceback.format_exc()}")
            status, headers, chunks = "500 Internal Server Error", [("Content-Type", "text/plain")], [b"error\n"]
            self.close_connection = True
        try:
            while body.read(65536):  # what the application left unread would be taken for the next request
                pass
        except Exception:  # the client went before sending all it announced: nobody to answer
            self.close_connection = True
            return
        self._send(status, headers, b"".join(chunks))

    def _call_app(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], list[bytes]]:
        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            # Nothing is sent before the application returns, so an error answer may always replace it.
            if started and exc_info is None:
                raise AssertionError("headers already set")
            started[:] = [status, headers]
            return chunks.append  # WSGI's write(): collected with the rest

        iterable = self.server.app(environ, start_response)
        try:
            chunks.extend(iterable)
        finally:
            if hasattr(iterable, "close"):
                iterable.close()
        if not started:
            raise AssertionError("the application did not call start_response")
        return started[0], started[1], chunks

    def _send(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        self.send_response(code, reason)
        length = None
        for key, value in headers:
            lowered = key.lower()
            if lowered in FRAMING:
                continue
            if lowered == "content-length":
                length = value.strip()
            self.send_header(key, value)
        if self.command == "HEAD" or 100 <= code < 200 or code in (204, 304):
            body = b""  # a HEAD's Content-Length is the GET's: kept as the application gave it
        elif length is None:
            self.send_header("Content-Length", str(len(body)))
        elif length != str(len(body)):
            self.close_connection = True  # a wrong length: only the close can tell the client where it ends
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class KeepAliveServer(ThreadedWSGIServer):
    """One thread per connection, each connection known so that closing the server ends them."""

    def __init__(self, host: str, port: int, app: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._closed = False
        super().__init__(host, port, app, handler=KeepAliveRequestHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            if self._closed:
                return
            self._connections.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def server_close(self) -> None:
        super().server_close()
        with self._connections_lock:
            self._closed = True
            connections = list(self._connections)
        # A kept-alive connection's thread waits for its client's next request, which could be
        # minutes away: a shut-down socket wakes it (end of stream), so it ends now.
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its client
                connection.shutdown(socket.SHUT_RDWR)
