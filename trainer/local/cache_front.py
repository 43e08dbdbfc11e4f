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

One asyncio loop in a thread of its own per front; `stop` closes the listening socket and every
connection (a dead node's endpoint refuses connections), `start` opens them again at the same
endpoint; `reset` ends every connection and keeps listening (a network fault, not a node's).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

RELAY_CHUNK = 1 << 18
MAX_PREAUTH_COMMAND = 64 * 1024  # an AUTH (a token is ~1 KB) or any command before it
REFUSED_USER = "lnn-refused"  # no such user on the private server: AUTH as it is always WRONGPASS


class ProtocolError(ValueError):
    pass


async def read_command(reader: asyncio.StreamReader) -> tuple[list[bytes], bytes] | None:
    """The next command (its words and its raw bytes), RESP array or inline; None at end of stream."""
    line = await reader.readline()
    if not line:
        return None
    if not line.endswith(b"\r\n") or len(line) > MAX_PREAUTH_COMMAND:
        raise ProtocolError("unterminated or oversized command")
    if not line.startswith(b"*"):
        return line.split(), line
    raw, words, budget = [line], [], MAX_PREAUTH_COMMAND
    for _ in range(int(line[1:-2])):
        header = await reader.readline()
        if not header.startswith(b"$") or not header.endswith(b"\r\n"):
            raise ProtocolError("expected a bulk string")
        size = int(header[1:-2])
        budget -= size
        if size < 0 or budget < 0:
            raise ProtocolError("oversized command before authentication")
        body = await reader.readexactly(size + 2)
        raw += [header, body]
        words.append(body[:-2])
    return words, b"".join(raw)


def encode(words: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> CacheFront:
        """Listen at the endpoint; OSError when the address is taken."""
        sock = socket.create_server((self.host, self.port), backlog=128)
        loop = asyncio.new_event_loop()
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._serve, sock=sock, ssl=self.context))
        except BaseException:
            sock.close()
            loop.close()
            raise
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"cache-front-{self.host}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the endpoint and every connection through it."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    def reset(self) -> int:
        """Reset every connection through the front, as a network fault would, the endpoint still
        listening: the clients meet a reset socket at their next command and connect again (with a
        fresh token). How many connections there were."""
        loop = self._loop
        if loop is None:
            return 0
        return asyncio.run_coroutine_threadsafe(self._reset(), loop).result(timeout=10)

    async def _reset(self) -> int:
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()
        return len(writers) // 2  # a client's and its upstream's, for each connection

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        # The connections' coroutines end here, not with the loop (no task left pending).
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # the front stopped: its connections end with it
            await self._session(client_reader, client_writer)

    async def _session(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._writers.add(client_writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(str(self.upstream))
        except OSError:  # the node's redis-server is down: as a refused connection
            self._writers.discard(client_writer)
            client_writer.transport.abort()
            return
        self._writers.add(upstream_writer)
        replies = asyncio.ensure_future(self._relay(upstream_reader, client_writer))
        try:
            if await self._until_authenticated(client_reader, upstream_writer):
                await self._relay(client_reader, upstream_writer)
        except (ProtocolError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            upstream_writer.close()
            await asyncio.wait([replies], timeout=5)
            for writer in (client_writer, upstream_writer):
                writer.transport.abort()
                self._writers.discard(writer)

    async def _until_authenticated(self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter) -> bool:
        """Pass commands on until one authenticates (True) or the client leaves (False)."""
        while (command := await read_command(reader)) is not None:
            words, raw = command
            name = words[0].upper() if words else b""
            if name == b"AUTH":
                accepted, words = self._judge(words, user_at=1, token_at=2 if len(words) == 3 else None)
            elif name == b"HELLO" and b"AUTH" in (w.upper() for w in words[2:3]):
                accepted, words = self._judge(words, user_at=3, token_at=4 if len(words) > 4 else None)
            else:
                upstream.write(raw)
                await upstream.drain()
                continue
            upstream.write(encode(words))
            await upstream.drain()
            if accepted:
                return True
        return False

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

    @staticmethod
    async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(RELAY_CHUNK):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()
