"""The cache front in front of a real redis-server: stopping it in the middle of a large reply ends
the connection and every thread it started, and the endpoint then refuses connections."""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from trainer.local.cache_front import CacheFront, encode
from trainer.local.servers import RedisServer, free_port, make_tls_files

BIG = 64 << 20  # far more than the socket buffers on the way hold: the relay is still under way
PASSWORD = secrets.token_urlsafe(16)


@pytest.fixture
def front(tmp_path: Path) -> Iterator[tuple[CacheFront, Path]]:
    server = RedisServer(tls=False, unix_socket=True, acl_users=(f"user tester on >{PASSWORD} ~* &* +@all",))
    server.start()
    assert server.socket_path is not None
    files = make_tls_files(tmp_path)
    front = CacheFront(
        "127.0.0.1",
        free_port(),
        files["cert"],
        files["key"],
        Path(server.socket_path),
        lambda user, token: PASSWORD if (user, token) == ("tester", "good") else None,
    )
    front.start()
    try:
        yield front, files["ca"]
    finally:
        front.stop()
        server.stop()


def front_threads(front: CacheFront) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"cache-front-{front.host}")]


def client(front: CacheFront, ca: Path) -> redis.Redis:
    return redis.Redis(
        host=front.host, port=front.port, ssl=True, ssl_ca_certs=str(ca), username="tester", password="good"
    )


def authenticated(front: CacheFront, ca: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca))
    tls = context.wrap_socket(socket.create_connection((front.host, front.port)), server_hostname=front.host)
    tls.settimeout(30)
    tls.sendall(encode([b"AUTH", b"tester", b"good"]))
    assert tls.recv(16) == b"+OK\r\n"
    return tls


def test_stop_ends_a_connection_in_the_middle_of_a_large_reply_and_every_thread(front) -> None:
    front, ca = front
    with client(front, ca) as writer:
        writer.set("big", secrets.token_bytes(BIG))
    with authenticated(front, ca) as tls:
        tls.sendall(encode([b"GET", b"big"]))
        received = len(tls.recv(1 << 16))
        assert len(front_threads(front)) >= 2  # the accepting thread and the connection's
        # The client reads no more: the front's thread waits to write the rest of the value.
        front.stop()
        assert front_threads(front) == []
        with contextlib.suppress(ConnectionResetError, ssl.SSLError):
            while chunk := tls.recv(1 << 20):
                received += len(chunk)
    assert received < BIG  # the reply was cut, not finished
    with pytest.raises(ConnectionRefusedError):  # a stopped node's endpoint refuses connections
        socket.create_connection((front.host, front.port), timeout=5).close()
    front.start()
    assert len(client(front, ca).get("big") or b"") == BIG


def test_reset_ends_every_connection_and_the_endpoint_keeps_listening(front) -> None:
    front, ca = front
    connections = [authenticated(front, ca) for _ in range(2)]
    assert front.reset() == 2
    for tls in connections:
        with tls, contextlib.suppress(ConnectionResetError, ssl.SSLError):  # a reset, or an end
            assert tls.recv(16) == b""
    with client(front, ca) as again:
        assert again.ping()


def test_an_auth_without_its_arguments_is_answered_by_redis_and_the_connection_goes_on(front) -> None:
    front, ca = front
    context = ssl.create_default_context(cafile=str(ca))
    with context.wrap_socket(socket.create_connection((front.host, front.port)), server_hostname=front.host) as tls:
        tls.settimeout(30)
        for command in ([b"AUTH"], [b"HELLO", b"3", b"AUTH"], [b"HELLO", b"3", b"AUTH", b"tester"]):
            tls.sendall(encode(command))
            assert tls.recv(256).startswith(b"-ERR")
        tls.sendall(encode([b"AUTH", b"tester", b"good"]) + encode([b"PING"]))
        replies = b""
        while not replies.endswith(b"+PONG\r\n"):
            replies += tls.recv(64)
        assert replies == b"+OK\r\n+PONG\r\n"
