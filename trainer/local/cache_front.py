"""The auth front of a local cache node: what makes a real redis-server answer as an ElastiCache node
with IAM authentication.

redis-server cannot verify a SigV4-signed token, so each node's redis-server listens on a private
Unix socket only, and this front listens at the node's endpoint: it terminates TLS (the node's
certificate), reads the client's commands until one authenticates -- AUTH <user> <token>, or HELLO
with AUTH -- and has `authenticate` judge the token (trainer.local.cache_tokens: signature, user,
cache, expiry). An accepted one is passed on with the user's password of the private server, a
refused one with a user that does not exist there, so redis-server itself answers either (+OK, or
Redis's `-WRONGPASS invalid username-password pair or user is disabled.`) and replies keep their
order. A command before authentication is passed on unchanged: redis-server answers NOAUTH. Once
authenticated the connection is a byte relay both ways, and redis-server's ACL applies the user's
access string to every command.

Threads, not an event loop: one accepts at the endpoint, and each connection has one that does its
TLS handshake and then moves its bytes both ways with non-blocking sockets. OpenSSL reads and writes
the socket itself with the GIL released (asyncio's TLS, memory BIOs and copies in Python, carried
~70 MB/s in the cloud's busy process), and a single thread per connection because an SSL socket is
not safe to read and write from two threads at once. `stop` closes the listening socket and every
connection (a dead node's endpoint refuses connections) and waits for their threads; `start` opens
the endpoint again; `reset` ends every connection and keeps listening (a network fault, not a node's).
"""

from __future__ import annotations

import contextlib
import secrets
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

RELAY_CHUNK = 1 << 20  # what one pass reads from a socket: large, so a tensor moves in few passes
RELAY_BACKLOG = 4 * RELAY_CHUNK  # bytes held for a slow side before its source is read no more
SEND_CHUNK = 1 << 18
HANDSHAKE_TIMEOUT_S = 60.0  # asyncio's default: a client that never finishes TLS holds no thread forever
DRAIN_TIMEOUT_S = 5.0  # the replies already read when the server ended a connection still reach the client
JOIN_TIMEOUT_S = 10.0
MAX_PREAUTH_COMMAND = 64 * 1024  # an AUTH (a token is ~1 KB) or any command before it
REFUSED_USER = "lnn-refused"  # no such user on the private server: AUTH as it is always WRONGPASS
WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)


class ProtocolError(ValueError):
    pass


def read_command(buffer: bytes | bytearray) -> tuple[list[bytes], int] | None:
    """The first command in `buffer` (its words, and its length in bytes), RESP array or inline;
    None while it is not complete. ProtocolError for what no client sends before authentication."""
    end = buffer.find(b"\r\n", 0, MAX_PREAUTH_COMMAND)
    if end < 0:
        if len(buffer) >= MAX_PREAUTH_COMMAND:
            raise ProtocolError("unterminated or oversized command")
        return None
    line = bytes(buffer[: end + 2])
    if not line.startswith(b"*"):
        return line.split(), end + 2
    position, words, budget = end + 2, [], MAX_PREAUTH_COMMAND
    for _ in range(int(line[1:-2])):
        if position < len(buffer) and buffer[position : position + 1] != b"$":
            raise ProtocolError("expected a bulk string")
        header_end = buffer.find(b"\r\n", position, position + 32)
        if header_end < 0:
            if len(buffer) - position >= 32:
                raise ProtocolError("expected a bulk string")
            return None
        size = int(buffer[position + 1 : header_end])
        budget -= size
        if size < 0 or budget < 0:
            raise ProtocolError("oversized command before authentication")
        body = header_end + 2
        if len(buffer) < body + size + 2:
            return None
        words.append(bytes(buffer[body : body + size]))
        position = body + size + 2
    return words, position


def encode(words: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


class Gate:
    """The client's bytes on their way to the server: whole commands, each passed through `admit`
    (which rewrites an AUTH), until one authenticates; from then on the bytes as they are."""

    def __init__(self, admit: Callable[[list[bytes], bytes], tuple[bytes, bool]]) -> None:
        self.admit = admit
        self.open = False
        self.held = bytearray()

    def pass_on(self, data: bytes) -> bytes:
        if self.open:
            return data
        self.held += data
        out = bytearray()
        while not self.open and (command := read_command(self.held)) is not None:
            words, size = command
            passed, self.open = self.admit(words, bytes(self.held[:size]))
            out += passed
            del self.held[:size]
        if self.open:
            out += self.held
            self.held.clear()
        elif len(self.held) > 2 * MAX_PREAUTH_COMMAND:  # many small words: no command is that long
            raise ProtocolError("oversized command before authentication")
        return bytes(out)


class Outbox:
    """Bytes on their way out of one non-blocking socket. A TLS write that would block must be tried
    again with the same bytes (OpenSSL's rule), so a try's length is kept until it goes through."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = bytearray()
        self.trying = 0

    def flush(self) -> None:
        while self.data:
            size = self.trying or min(len(self.data), SEND_CHUNK)
            try:
                with memoryview(self.data) as view:
                    sent = self.sock.send(view[:size])
            except WOULD_BLOCK:
                self.trying = size
                return
            self.trying = 0
            del self.data[:sent]


def receive(sock: socket.socket, buffer: memoryview) -> bytes | None:
    """What the socket has now, up to the buffer's size: b"" at its end, None when it has nothing.
    A TLS read returns one record (16 KB) at a time, so it reads until the socket has no more."""
    filled = 0
    while filled < len(buffer):
        try:
            count = sock.recv_into(buffer[filled:])
        except WOULD_BLOCK:
            break
        if count == 0:
            if filled == 0:
                return b""
            break
        filled += count
    return bytes(buffer[:filled]) if filled else None


def watch(selector: selectors.BaseSelector, sock: socket.socket, reading: bool, writing: bool) -> None:
    events = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if writing else 0)
    registered = selector.get_map().get(sock)
    if registered is None:
        if events:
            selector.register(sock, events)
    elif not events:
        selector.unregister(sock)
    elif registered.events != events:
        selector.modify(sock, events)


class Connection:
    """One client's connection: its sockets, which `stop` and `reset` shut down from other threads
    (a shutdown, not a close, wakes the connection's thread; that thread closes them)."""

    def __init__(self, client: ssl.SSLSocket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.thread: threading.Thread | None = None

    def abort(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    # socket.socket's own shutdown: SSLSocket's drops its SSL object under the thread using it.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                sock.close()


class CacheFront:
    def __init__(
        self,
        host: str,
        port: int,
        cert_file: Path,
        key_file: Path,
        upstream: Path,
        authenticate: Callable[[str, str], str | None],
    ) -> None:
        """`authenticate(user, token)` returns the user's password on the private server for an
        accepted token, None for a refused one; `upstream` is that server's Unix socket."""
        self.host, self.port, self.upstream = host, port, upstream
        self.authenticate = authenticate
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(cert_file, key_file)
        self._refused_password = secrets.token_urlsafe(24).encode()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._connections: set[Connection] = set()
        self._count = 0

    def start(self) -> CacheFront:
        """Listen at the endpoint; OSError when the address is taken."""
        listener = socket.create_server((self.host, self.port), backlog=128)
        with self._lock:
            self._listener = listener
            self._acceptor = threading.Thread(
                target=self._accept, args=(listener,), name=f"cache-front-{self.host}", daemon=True
            )
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Close the endpoint and every connection through it, and wait for their threads."""
        with self._lock:
            listener, acceptor = self._listener, self._acceptor
            self._listener = self._acceptor = None
        if listener is None or acceptor is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (a close alone does not)
        acceptor.join(timeout=JOIN_TIMEOUT_S)
        listener.close()
        for connection in self._abort_all():
            if connection.thread is not None:
                connection.thread.join(timeout=JOIN_TIMEOUT_S)

    def reset(self) -> int:
        """Reset every connection through the front, as a network fault would, the endpoint still
        listening: the clients meet a reset socket at their next command and connect again (with a
        fresh token). How many connections there were."""
        return len(self._abort_all())

    def _abort_all(self) -> list[Connection]:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.abort()
        return connections

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:  # the listener was shut down: the front stopped
                return
            # Without Nagle's algorithm: a reply's last small TLS record waits for no acknowledgement.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection(self.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False))
            with self._lock:
                if self._listener is not listener:  # stopped between the accept and here
                    connection.close()
                    return
                self._count += 1
                connection.thread = threading.Thread(
                    target=self._serve, args=(connection,), name=f"cache-front-{self.host}-{self._count}", daemon=True
                )
                self._connections.add(connection)
            connection.thread.start()

    def _serve(self, connection: Connection) -> None:
        try:
            connection.client.settimeout(HANDSHAKE_TIMEOUT_S)
            connection.client.do_handshake()
            connection.upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.upstream.connect(str(self.upstream))  # refused when the node's redis-server is down
            self._relay(connection.client, connection.upstream, Gate(self._admit))
        except (OSError, ValueError):  # TLS or network errors, ProtocolError, a shut-down socket: the end
            pass
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()

    def _relay(self, client: ssl.SSLSocket, upstream: socket.socket, gate: Gate) -> None:
        """Move bytes both ways until either side ends; what the server sent before it ended still
        reaches the client. Each pass reads what both sides have and writes what each can take."""
        client.setblocking(False)
        upstream.setblocking(False)
        to_upstream, to_client = Outbox(upstream), Outbox(client)
        buffer = memoryview(bytearray(RELAY_CHUNK))
        upstream_open, drain_until = True, float("inf")
        with selectors.DefaultSelector() as selector:
            while upstream_open or to_client.data:
                moved = False
                if len(to_upstream.data) < RELAY_BACKLOG:
                    data = receive(client, buffer)
                    if data == b"":  # the client left
                        return
                    if data:
                        to_upstream.data += gate.pass_on(data)
                        moved = True
                if upstream_open and len(to_client.data) < RELAY_BACKLOG:
                    data = receive(upstream, buffer)
                    if data == b"":
                        upstream_open, drain_until = False, time.monotonic() + DRAIN_TIMEOUT_S
                    elif data:
                        to_client.data += data
                        moved = True
                to_upstream.flush()
                to_client.flush()
                reading_client = len(to_upstream.data) < RELAY_BACKLOG
                reading_upstream = upstream_open and len(to_client.data) < RELAY_BACKLOG
                if moved or (reading_client and client.pending()):
                    continue
                if time.monotonic() > drain_until:
                    return
                # Wait only for what this thread would do now: a side it does not read must not wake it.
                watch(selector, client, reading=reading_client, writing=bool(to_client.data))
                watch(selector, upstream, reading=reading_upstream, writing=bool(to_upstream.data))
                selector.select(timeout=None if upstream_open else DRAIN_TIMEOUT_S)

    def _admit(self, words: list[bytes], raw: bytes) -> tuple[bytes, bool]:
        """A command before authentication as it goes to the server, and whether it authenticates."""
        name = words[0].upper() if words else b""
        # One without its user or token authenticates nothing: redis-server answers it with its syntax error.
        if name == b"AUTH" and len(words) in (2, 3):
            accepted, words = self._judge(words, user_at=1, token_at=2 if len(words) == 3 else None)
        elif name == b"HELLO" and len(words) > 4 and words[2].upper() == b"AUTH":
            accepted, words = self._judge(words, user_at=3, token_at=4)
        else:
            return raw, False
        return encode(words), accepted

    def _judge(self, words: list[bytes], user_at: int, token_at: int | None) -> tuple[bool, list[bytes]]:
        """The command with the private server's password for an accepted token, with a user the
        server does not have otherwise (the default user, AUTH <password>, is off as on ElastiCache)."""
        words = list(words)
        if token_at is None:  # AUTH <password>: the default user, which is off
            words[user_at:user_at] = [REFUSED_USER.encode()]
            token_at = user_at + 1
            password = None
        else:
            try:
                password = self.authenticate(words[user_at].decode(), words[token_at].decode())
            except UnicodeDecodeError:
                password = None
        if password is None:
            words[user_at], words[token_at] = REFUSED_USER.encode(), self._refused_password
            return False, words
        words[token_at] = password.encode()
        return True, words
