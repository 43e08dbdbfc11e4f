"""The local cloud's HTTP server keeps connections alive (trainer/local/http_server.py): one
connection serves request after request, a body the application left unread is not taken for the
next request, an HTTP/1.0 client gets its answer ended by the close, and stopping the server ends
the connections that wait for a next request."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from trainer.local.http_server import KeepAliveServer
from trainer.local.servers import free_port


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Echoes the method, path and client port; reads the body only when asked to (`/read`)."""
    body = b""
    if environ["PATH_INFO"] == "/read":
        body = environ["wsgi.input"].read()
    answer = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {environ['REMOTE_PORT']} {len(body)}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [answer]


@pytest.fixture
def server() -> Iterator[KeepAliveServer]:
    server = KeepAliveServer("127.0.0.1", free_port(), app)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def ask(connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> list[str]:
    connection.request(method, path, body=body)
    response = connection.getresponse()
    assert response.status == 200
    return response.read().decode().split()


def test_one_connection_serves_request_after_request(server: KeepAliveServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    answers = [ask(connection, "GET", f"/{n}") for n in range(3)]
    assert [a[:2] for a in answers] == [["GET", "/0"], ["GET", "/1"], ["GET", "/2"]]
    assert len({a[2] for a in answers}) == 1  # one client port: the same connection throughout


def test_a_body_left_unread_is_not_taken_for_the_next_request(server: KeepAliveServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    unread = ask(connection, "POST", "/ignore", body=b"GET /smuggled HTTP/1.1\r\n\r\n" * 100)
    assert unread[:2] == ["POST", "/ignore"]
    read = ask(connection, "POST", "/read", body=b"x" * 70_000)
    assert read[:2] == ["POST", "/read"] and read[3] == "70000"
    after = ask(connection, "GET", "/after")
    assert after[:2] == ["GET", "/after"] and after[2] == unread[2] == read[2]


def test_an_http_1_0_client_gets_its_answer_ended_by_the_close(server: KeepAliveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and body.startswith(b"GET /old")


def test_stopping_the_server_ends_the_connections_that_wait(server: KeepAliveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b"GET /first" not in received:  # the head and the body may come in two reads
            received += sock.recv(65536)
        assert b"Connection: close" not in received
        started = time.monotonic()
        server.shutdown()
        server.server_close()
        assert sock.recv(65536) == b""  # the end of the stream, not a wait for the idle timeout
        assert time.monotonic() - started < 5
