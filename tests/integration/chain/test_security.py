"""Security (issue 6, item 6), each point against the real servers of the local cloud: the stack's
cache (an ElastiCache replication group, a TLS redis-server), its functions in their own execution
environments, their logs where Lambda's go (the environments' log files):

- Redis speaks TLS and IAM authentication only: a token the function signs with its own role for
  the stack's cache user, fresh for each connection; no password exists in the environment, the
  logs or a command line; the local runner and the tests use this very path.
- Nothing is deserialised with pickle (datasets, cache values, the package's own code).
- A dataset is data only: an .h5 whose arrays HDF5 would read from other files (external raw
  storage, virtual layouts, links) is refused, as is a dataset that declares more bytes than the
  launch may hold; nothing of the function's own machine reaches a run.
- Requests cannot reach outside their run (dataset location: the bucket's datasets/ prefix only,
  run ids, Redis keys).
- Logs are one JSON object per line with run id and step, without data or secrets.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
import secrets
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest
import redis
from botocore.credentials import Credentials
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.chain import ChainStack, dead_letters, deliver_all
from tests.support.processes import command_line
from tests.support.requests import moons
from trainer import services as services_mod
from trainer.aws import client as aws_client
from trainer.data.builtin import BUILTIN
from trainer.errors import EventError, RequestError, TooLarge
from trainer.handlers import launch as launch_handler
from trainer.local.cloud_runner import LaunchRefused
from trainer.local.servers import RedisServer
from trainer.request import parse
from trainer.settings import Settings
from trainer.statemachine import parse_event
from trainer.stores import codec
from trainer.stores.cache_token import IamCredentials, sign
from trainer.stores.codec import CodecError

REPO_ROOT = Path(__file__).resolve().parents[3]
NO_RETRY = Retry(NoBackoff(), 0)  # a refusal is the answer under test, not a blip to retry


# -- helpers ---------------------------------------------------------------------------------


@dataclass
class Cache:
    """The stack's cache as the functions reach it: the endpoint of the replication group (the local
    cloud's auth front), its IAM user, a token signed now with this process's key, and the
    redis-server behind it (its process, its private folder, the password only the front knows)."""

    host: str
    port: int
    user_id: str
    group_id: str
    ca_file: str
    pid: int
    workdir: Path

    def token(self, user: str | None = None) -> str:
        key = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])  # the cloud's
        return sign(key, self.group_id, user or self.user_id, "us-east-1")

    @property
    def internal_password(self) -> str:
        """The redis-server's own password (in its 0600 config): the front's alone."""
        conf = (self.workdir / "redis.conf").read_text()
        return re.search(r"^requirepass (\S+)$", conf, re.M).group(1)


@pytest.fixture(scope="module")
def cache(stack: ChainStack) -> Cache:
    settings = stack.services.settings
    node = stack.cloud.nodes()[stack.env["REPLICATION_GROUP_ID"]]
    assert (node["address"], node["port"]) == (settings.redis_host, settings.redis_port)
    return Cache(
        settings.redis_host,
        settings.redis_port,
        stack.env["REDIS_USER_ID"],
        stack.env["REPLICATION_GROUP_ID"],
        settings.redis_ca_file,
        node["pid"],
        Path(psutil.Process(node["pid"]).cwd()),
    )


def small_request(**overrides) -> dict:
    payload = moons(
        (4, 1),
        ("tanh", "sigmoid"),
        epochs=2,
        learning_rate=0.05,
        batch_size=100,
        max_steps_per_invocation=4,
        run_id="sec-" + secrets.token_hex(6),
    )
    payload.update(overrides)
    return payload


def written_state(svc: services_mod.Services) -> tuple[int, int, int]:
    """(Redis keys, DynamoDB items, S3 objects): what a refused request must leave unchanged."""
    # Completion claims of earlier runs are leases that expire on their own (1 s here): they would
    # make the count move with the clock, and a refused launch never writes one.
    keys = sum(1 for key in svc.tensor_store.client.scan_iter(count=5000) if b":handoff:" not in key)
    items = aws_client("dynamodb").scan(TableName=svc.settings.table_name, Select="COUNT")["Count"]
    objects = aws_client("s3").list_objects_v2(Bucket=svc.settings.model_bucket).get("KeyCount", 0)
    return keys, items, objects


@dataclass
class Refusal:
    """A LaunchLambda refusal: its message and the problems it lists (one "  - " line each)."""

    message: str

    @property
    def problems(self) -> list[str]:
        return [line[4:] for line in self.message.splitlines() if line.startswith("  - ")]


def refused(stack: ChainStack, payload) -> Refusal:
    """Launch `payload` through LaunchLambda, expect a refusal, and check that nothing was written
    anywhere and no trainer event was sent."""
    stack.drop_all()
    before = written_state(stack.services)
    with pytest.raises(LaunchRefused) as info:
        stack.launch(payload)
    assert written_state(stack.services) == before, "a refused request wrote something"
    assert not stack.held(), "a refused request invoked the trainer"
    return Refusal(str(info.value))


def run_small(stack: ChainStack, payload: dict, before_delivery: Callable[[], None] | None = None) -> dict:
    """Launch through LaunchLambda, deliver every hand-off in order (calling `before_delivery`
    before each); the run must succeed."""
    stack.drop_all()
    launched = stack.launch(payload)
    while stack.held():
        if before_delivery:
            before_delivery()
        delivery = stack.deliver()
        assert not delivery.failed, delivery.errors
    run = stack.services.run_store.get_run(launched["run_id"])
    assert run["status"] == "SUCCEEDED", run
    return launched


def _log_files(stack: ChainStack) -> list[Path]:
    """The execution environments' logs of the stack's two functions (where Lambda's logs go)."""
    names = (stack.trainer, stack.env["LAUNCH_FUNCTION_NAME"])
    return [p for p in (Path(stack.cloud.workdir) / "logs").glob("*.log") if p.name.rsplit("-", 1)[0] in names]


@contextlib.contextmanager
def function_logs(stack: ChainStack, level: str = "INFO"):
    """What the functions log while the block runs (their environments at `level`): yields a
    callable answering the text written so far."""
    offsets = {path: path.stat().st_size for path in _log_files(stack)}

    def text() -> str:
        parts = []
        for path in sorted(_log_files(stack)):
            with path.open("rb") as handle:
                handle.seek(offsets.get(path, 0))
                parts.append(handle.read().decode("utf-8", "replace"))
        return "".join(parts)

    stack.configure(LNN_LOG_LEVEL=level)  # new environments, as Lambda starts for a new configuration
    try:
        yield text
    finally:
        stack.calm()


# -- 1. TLS and AUTH -------------------------------------------------------------------------


def test_the_stacks_cache_is_tls_with_iam_authentication(cache: Cache):
    assert Path(cache.ca_file).is_file()
    client = redis.Redis(
        host=cache.host,
        port=cache.port,
        username=cache.user_id,
        password=cache.token(),
        ssl=True,
        ssl_ca_certs=cache.ca_file,
        ssl_check_hostname=True,
    )
    assert client.ping() is True
    assert client.connection_pool.connection_class is redis.connection.SSLConnection


def test_plaintext_connection_is_refused(cache: Cache):
    token = cache.token()
    client = redis.Redis(
        host=cache.host,
        port=cache.port,
        username=cache.user_id,
        password=token,
        socket_timeout=3,
        socket_connect_timeout=3,
        retry=NO_RETRY,
    )
    with pytest.raises(redis.ConnectionError):
        client.ping()
    # At the wire: a plaintext AUTH + PING never gets an answer, only a closed connection.
    with socket.create_connection((cache.host, cache.port), timeout=3) as sock:
        sock.sendall(f"AUTH {cache.user_id} {token}\r\nPING\r\n".encode())
        reply = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(256):
                reply += chunk
    assert b"PONG" not in reply and b"+OK" not in reply


def _tls_exchange(cache: Cache, command: bytes) -> bytes:
    context = ssl.create_default_context(cafile=cache.ca_file)
    with (
        socket.create_connection((cache.host, cache.port), timeout=3) as raw,
        context.wrap_socket(raw, server_hostname=cache.host) as sock,
    ):
        sock.sendall(command)
        return sock.recv(256)


def test_tls_without_a_valid_token_is_refused(cache: Cache):
    """No AUTH, a password, the redis-server's own password, another user's token, the default
    user: Redis's own refusals, and nothing is served."""
    assert _tls_exchange(cache, b"PING\r\n").startswith(b"-NOAUTH")
    assert _tls_exchange(cache, b"GET lnn:{x}:cursor\r\n").startswith(b"-NOAUTH")
    assert _tls_exchange(cache, b"AUTH not-the-password\r\n").startswith(b"-WRONGPASS")
    for user, password in (
        (cache.user_id, "not-a-token"),
        (cache.user_id, cache.internal_password),  # only the front knows it, and it takes tokens only
        (cache.user_id, cache.token("someone-else")),
        ("default", cache.internal_password),
        ("default", cache.token("default")),
    ):
        assert _tls_exchange(cache, f"AUTH {user} {password}\r\nPING\r\n".encode()).startswith(b"-WRONGPASS")
    client = redis.Redis(host=cache.host, port=cache.port, ssl=True, ssl_ca_certs=cache.ca_file, retry=NO_RETRY)
    with pytest.raises(redis.AuthenticationError):
        client.ping()


def test_tls_client_verifies_the_server(cache: Cache):
    """A client that does not trust the server's CA refuses to talk (no silent unverified TLS)."""
    client = redis.Redis(
        host=cache.host,
        port=cache.port,
        username=cache.user_id,
        password=cache.token(),
        ssl=True,
        socket_connect_timeout=3,
        retry=NO_RETRY,
    )
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        client.ping()


def test_no_password_anywhere_and_the_servers_files_are_private(stack: ChainStack, cache: Cache):
    # An invocation first, so that the trainer has execution environments to look at.
    run_small(stack, small_request(epochs=1))
    assert "redis-server" in command_line(cache.pid)
    # The redis-server's own password is on no command line of this machine that we can see.
    for proc in psutil.process_iter(["cmdline"]):
        assert cache.internal_password not in " ".join(proc.info["cmdline"] or []), proc
    assert cache.workdir.stat().st_mode & 0o077 == 0
    for name in ("redis.conf", "server.key"):
        assert (cache.workdir / name).stat().st_mode & 0o777 == 0o600, name
    assert "PRIVATE KEY" not in Path(cache.ca_file).read_text()
    # The functions' configuration names the user and the group only: they sign a token per connection.
    variables = stack._variables()
    assert (variables["REDIS_USER_ID"], variables["REDIS_REPLICATION_GROUP_ID"]) == (cache.user_id, cache.group_id)
    assert not [k for k in variables if "SECRET" in k or "PASSWORD" in k or "TOKEN" in k], variables
    # As the cloud lists them: a forked environment's /proc/<pid>/environ shows its fork server's.
    environments = stack.cloud.environments(stack.trainer)
    assert environments, "the trainer has no execution environment"
    for env in environments:
        environ = "\0".join(f"{k}={v}" for k, v in env["environment"].items())
        assert "AWS_LAMBDA_RUNTIME_API" in env["environment"]  # the whole environment, not the function's part
        assert cache.internal_password not in environ and "X-Amz-Signature" not in environ, env["pid"]


def test_adapter_from_settings_signs_a_token_per_connection(stack: ChainStack, cache: Cache, monkeypatch):
    """The Lambda path: Settings.from_env() + services.build() with REDIS_USER_ID and
    REDIS_REPLICATION_GROUP_ID, TLS on by default; no password anywhere, a token signed for each new
    connection. Then the trainer in its execution environment: another user, or TLS off, and its
    invocation fails against the cache; the right configuration and the same event goes through."""
    for key in [k for k in os.environ if "REDIS" in k and k not in ("REDIS_HOST",)]:
        monkeypatch.delenv(key)
    env = {
        "TABLE_NAME": stack.env["TABLE_NAME"],
        "MODEL_BUCKET": stack.env["MODEL_BUCKET"],
        "SNS_TOPIC_ARN": stack.env["SNS_TOPIC_ARN"],
        "TRAINER_FUNCTION_ARN": stack.env["TRAINER_FUNCTION_ARN"],
        "REDIS_HOST": cache.host,
        "REDIS_PORT": str(cache.port),
        "REDIS_USER_ID": cache.user_id,
        "REDIS_REPLICATION_GROUP_ID": cache.group_id,
        "REDIS_CA_FILE": cache.ca_file,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    assert settings.redis_tls is True  # the default
    svc = services_mod.build(settings, invoker=stack.services.invoker)
    pool = svc.tensor_store.client.connection_pool
    assert issubclass(pool.connection_class, redis.connection.SSLConnection)
    assert pool.connection_kwargs["password"] is None
    provider = pool.connection_kwargs["credential_provider"]
    assert isinstance(provider, IamCredentials)
    signed: list[str] = []
    original = provider.get_credentials
    monkeypatch.setattr(
        provider, "get_credentials", lambda: signed.append(original()[1]) or (cache.user_id, signed[-1])
    )
    first, second = pool.get_connection(), pool.get_connection()  # two connections: each signs its token
    pool.release(first)
    pool.release(second)
    assert len(signed) == 2 and all(t.startswith(f"{cache.group_id}/?Action=connect&User=") for t in signed)
    svc.tensor_store.client.set("lnn:{sec-probe}:cursor", "-1", ex=5)
    assert svc.tensor_store.cursor("sec-probe") == -1
    svc.tensor_store.client.delete("lnn:{sec-probe}:cursor")

    # Another user (its token signed for a user the cache does not have): refused by the server.
    monkeypatch.setenv("REDIS_USER_ID", "someone-else")
    bad = services_mod.build(Settings.from_env(), invoker=stack.services.invoker)
    with pytest.raises(redis.AuthenticationError):
        bad.tensor_store.client.ping()
    # TLS switched off against a TLS-only server: no connection at all.
    monkeypatch.setenv("REDIS_USER_ID", cache.user_id)
    monkeypatch.setenv("REDIS_TLS", "false")
    plain = services_mod.build(Settings.from_env(), invoker=stack.services.invoker)
    plain.tensor_store.client.connection_pool.connection_kwargs.update(socket_timeout=2)
    with pytest.raises(redis.ConnectionError):
        plain.tensor_store.client.ping()

    # The same in the trainer's execution environment: its first event kept held, delivered under
    # each configuration (with Lambda's retries), then under the stack's own.
    stack.drop_all()
    run_id = stack.launch(small_request(epochs=1))["run_id"]
    (event,) = stack.held()
    try:
        stack.configure(REDIS_USER_ID="someone-else")
        delivery = stack.deliver(event["request_id"], keep=True)
        assert delivery.failed and all("AuthenticationError" in e for e in delivery.errors), delivery.errors
        stack.configure(REDIS_TLS="false")
        delivery = stack.deliver(event["request_id"], keep=True)
        assert delivery.failed and all("ConnectionError" in e for e in delivery.errors), delivery.errors
    finally:
        stack.calm()
    assert not dead_letters(deliver_all(stack))
    assert stack.services.run_store.get_run(run_id)["status"] == "SUCCEEDED"


def test_local_runner_trains_over_tls(tmp_path: Path):
    """`python -m trainer train` (a local cloud of its own) works against its TLS-only cache with IAM
    authentication: the local runner uses the functions' path too."""
    request = small_request()
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REDIS_"))}
    env["LNN_RUNS_DIR"] = str(tmp_path / "runs")
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "train", str(path), "--json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "SUCCEEDED"
    assert RedisServer().tls is True  # a plain redis-server of the tests is TLS by default too


def test_tokens_passwords_and_data_never_reach_the_logs(stack: ChainStack, cache: Cache):
    data = BUILTIN["moons"]()
    with function_logs(stack) as logged:
        run_small(stack, small_request())
        # A failing step logs its exception too (each of Lambda's attempts): that path must not leak either.
        stack.services.invoker.invoke_async(
            {"state": "start", "run_id": "../x", "epoch": 0, "layer": 0, "batch": 0, "seq": 0}
        )
        delivery = stack.deliver()
        assert delivery.failed and all(e.startswith("EventError") for e in delivery.errors), delivery.errors
        text = logged()
    assert text.strip(), "the functions logged nothing at INFO"
    assert "EventError" in text, "the failing step's exception is not in the logs"
    assert cache.internal_password not in text and "X-Amz-Signature" not in text
    for value in (*data["train_set_x"][:5].ravel(), *data["test_set_x"][:5].ravel()):
        for form in (repr(float(value)), f"{value:.6f}", f"{value:.4f}"):
            assert form not in text, f"a data value ({form}) is in the logs"


# -- 2. No pickle ----------------------------------------------------------------------------


class _Boom:
    """Unpickling this would create the marker file: proof that nothing was unpickled."""

    marker: str = ""

    def __reduce__(self):
        return (Path(self.marker).touch, ())


def _arrays(m: int = 120) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "train_set_x": rng.normal(size=(m, 3)),
        "train_set_y": (rng.random(m) > 0.5).astype(np.int64),
        "test_set_x": rng.normal(size=(m // 2, 3)),
        "test_set_y": (rng.random(m // 2) > 0.5).astype(np.int64),
    }


@contextlib.contextmanager
def in_bucket(stack: ChainStack, name: str, body: bytes) -> Iterator[str]:
    """A dataset file in the stack's bucket (the functions read datasets from S3), removed after."""
    bucket, key = stack.env["MODEL_BUCKET"], f"datasets/{name}"
    aws_client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    try:
        yield f"s3://{bucket}/{key}"
    finally:
        aws_client("s3").delete_object(Bucket=bucket, Key=key)


def test_pickled_npz_is_refused_and_nothing_runs(stack, tmp_path: Path):
    # The marker is on this machine's disk, where LaunchLambda's environments run too.
    marker = tmp_path / "unpickled"
    _Boom.marker = str(marker)
    boom = np.empty(120, dtype=object)
    boom[:] = [_Boom() for _ in range(120)]
    arrays = {**_arrays(), "train_set_x": boom}
    object_npz = io.BytesIO()
    np.savez(object_npz, **arrays)
    with in_bucket(stack, "object.npz", object_npz.getvalue()) as source:
        error = refused(stack, small_request(dataset=source))
    assert any(p.startswith("dataset:") and "train_set_x" in p and "numeric" in p for p in error.problems), (
        error.problems
    )
    # A bare pickle renamed .npz.
    with in_bucket(stack, "raw.npz", pickle.dumps(_Boom())) as source:
        error = refused(stack, small_request(dataset=source))
    assert any(p.startswith("dataset:") and "unreadable" in p for p in error.problems), error.problems
    # The object array read in this process too (validate on a local file: np.load on a path).
    local = tmp_path / "object.npz"
    local.write_bytes(object_npz.getvalue())
    with pytest.raises(RequestError) as info:
        launch_handler.validate(small_request(dataset=str(local)), stack.services)
    assert any("train_set_x" in p and "numeric" in p for p in info.value.problems), info.value.problems
    assert not marker.exists(), "an object in a dataset was unpickled"


def test_h5_reads_only_numeric_expected_datasets(stack, tmp_path: Path):
    arrays = _arrays()
    strings = io.BytesIO()
    with h5py.File(strings, "w") as handle:
        for key, value in arrays.items():
            if key == "test_set_x":
                handle.create_dataset(key, data=np.array([b"x"] * 60, dtype=object), dtype=h5py.string_dtype())
            else:
                handle.create_dataset(key, data=value)
    with in_bucket(stack, "strings.h5", strings.getvalue()) as source:
        error = refused(stack, small_request(dataset=source))
    assert any("test_set_x" in p and "numeric" in p for p in error.problems), error.problems
    # Extra, non-numeric datasets next to the expected ones are never read.
    extra = tmp_path / "extra.h5"
    with h5py.File(extra, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)
        handle.create_dataset("list_classes", data=np.array([b"a", b"b"], dtype=object), dtype=h5py.string_dtype())
    _, dataset = launch_handler.validate(small_request(dataset=str(extra)), stack.services)
    assert dataset.examples == 120


def test_tensor_store_refuses_a_forged_cache_value(stack):
    store = stack.services.tensor_store
    run_id = "sec-forged-" + secrets.token_hex(3)
    key = f"lnn:{{{run_id}}}:t:W1"
    header = json.dumps({"dtype": "|O", "shape": [1]}).encode()
    store.client.set(key, codec.MAGIC + len(header).to_bytes(2, "little") + header + pickle.dumps(_Boom()), ex=60)
    try:
        with pytest.raises(CodecError):
            store.snapshot(run_id, ["W1"])
    finally:
        store.client.delete(key)


# -- 3. Requests cannot reach outside their run ------------------------------------------------


def test_dataset_in_another_bucket_is_refused(stack):
    error = refused(stack, small_request(dataset="s3://other-bucket/datasets/cats.h5"))
    assert any(
        p.startswith("dataset:") and "other-bucket" in p and stack.env["MODEL_BUCKET"] in p for p in error.problems
    ), error.problems
    for uri in ("s3://", "s3:///key.npz", "s3://bucket-only", f"s3://{stack.env['MODEL_BUCKET']}evil/x.npz"):
        error = refused(stack, small_request(dataset=uri))
        assert any(p.startswith("dataset:") for p in error.problems), (uri, error.problems)


def test_dataset_in_the_configured_bucket_is_read(stack, tmp_path: Path):
    buffer = io.BytesIO()
    np.savez(buffer, **_arrays())
    aws_client("s3").put_object(Bucket=stack.env["MODEL_BUCKET"], Key="datasets/ok.npz", Body=buffer.getvalue())
    try:
        _, dataset = launch_handler.validate(
            small_request(dataset=f"s3://{stack.env['MODEL_BUCKET']}/datasets/ok.npz"), stack.services
        )
        assert dataset.examples == 120
    finally:
        aws_client("s3").delete_object(Bucket=stack.env["MODEL_BUCKET"], Key="datasets/ok.npz")
    error = refused(stack, small_request(dataset=f"s3://{stack.env['MODEL_BUCKET']}/datasets/missing.npz"))
    assert any(p.startswith("dataset:") for p in error.problems), error.problems


def test_datasets_are_read_from_the_datasets_prefix_only(stack):
    """An object elsewhere in the bucket (a model, a checkpoint, any upload) is no dataset, even a
    valid one: whoever may upload datasets needs no access to the rest of the bucket."""
    buffer = io.BytesIO()
    np.savez(buffer, **_arrays())
    bucket = stack.env["MODEL_BUCKET"]
    for key in ("uploads/ok.npz", "models/someone/model.npz", "datasets/../models/x.npz"):
        aws_client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
        try:
            error = refused(stack, small_request(dataset=f"s3://{bucket}/{key}"))
        finally:
            aws_client("s3").delete_object(Bucket=bucket, Key=key)
        assert any(
            p.startswith("dataset:") and "not under 'datasets/', the bucket's prefix for datasets" in p
            for p in error.problems
        ), (key, error.problems)


def test_an_h5_with_external_storage_reads_nothing_of_the_functions_machine(stack, tmp_path: Path):
    """External raw storage names a file of the machine that opens the dataset (the launch's own
    environment, with its credentials, on AWS): refused before a byte of it is read, nothing written."""
    marker = tmp_path / "environ"  # on this machine's disk, where LaunchLambda's environments run too
    marker.write_bytes(b"LNN-SECRET-MARKER" * 64)
    arrays = {**_arrays(1), "test_set_x": _arrays(2)["test_set_x"]}
    body = io.BytesIO()
    with h5py.File(body, "w") as handle:
        for key, value in arrays.items():
            if key == "train_set_x":
                handle.create_dataset(key, shape=(1, 3), dtype="u1", external=[(str(marker), 0, 3)])
            else:
                handle.create_dataset(key, data=value)
    with in_bucket(stack, "external.h5", body.getvalue()) as source:
        error = refused(stack, small_request(dataset=source, normalize="minmax", batch_size=None))
    assert any(
        p.startswith("dataset:") and "'train_set_x' keeps its data in external files" in p for p in error.problems
    ), error.problems
    assert "LNN" not in error.message


def test_an_object_longer_than_the_limit_is_not_read(stack):
    store = stack.services.blob_store
    store.put("datasets/long.npz", b"x" * 3000)
    try:
        with pytest.raises(TooLarge, match="3000 bytes, more than the 1000 bytes allowed"):
            store.read(store.bucket, "datasets/long.npz", limit=1000)
        assert store.read(store.bucket, "datasets/long.npz", limit=3000) == b"x" * 3000
    finally:
        aws_client("s3").delete_object(Bucket=store.bucket, Key="datasets/long.npz")


def test_local_paths_must_exist(stack, tmp_path: Path):
    for source in (
        str(tmp_path / "missing.npz"),
        str(tmp_path),
        "../../../etc/shadow.h5",
        "/dev/zero",
        "moons.npz",
        "nul\0byte.npz",
    ):
        error = refused(stack, small_request(dataset=source))
        assert any(p.startswith("dataset:") for p in error.problems), (source, error.problems)
    # On Lambda a path on the function's own machine is no dataset: only the bucket's objects are
    # (and their arrays' bytes must be in the object itself: see the external storage test).
    present = tmp_path / "present.npz"
    np.savez(present, **_arrays())
    error = refused(stack, small_request(dataset=str(present)))
    assert any(p.startswith("dataset:") and "s3://" in p for p in error.problems), error.problems


BAD_RUN_IDS = [
    "..",
    "../other",
    "a/b",
    "run*",
    "run{x}",
    "{run}",
    "a b",
    " run",
    "run\n",
    "a" * 65,
    "",
    "-run",
    "_run",
    "run:1",
    "lnn:{x}",
    "run\\x",
    "ru\u00efn",
    "run.1",
    "*",
    "?",
    "run[1]",
    "a\0b",
]


@pytest.mark.parametrize("run_id", BAD_RUN_IDS)
def test_bad_run_ids_are_refused_by_request_and_event(run_id):
    request, problems = parse(small_request(run_id=run_id))
    assert request is None and any(p.startswith("run_id") for p in problems), problems
    with pytest.raises(EventError, match="run_id"):
        parse_event({"state": "start", "run_id": run_id, "epoch": 0, "layer": 0, "batch": 0, "seq": 0})


def test_bad_run_ids_write_nothing(stack):
    for run_id in ("../x", "a" * 65, "x}:y", "run\n"):
        error = refused(stack, small_request(run_id=run_id))
        assert any(p.startswith("run_id") for p in error.problems), error.problems


def test_good_run_ids_are_accepted():
    for run_id in ("a", "A1", "2024-01-01_run", "x" * 64):
        request, problems = parse(small_request(run_id=run_id))
        assert request is not None and not problems, problems
        assert (
            parse_event({"state": "start", "run_id": run_id, "epoch": 0, "layer": 0, "batch": 0, "seq": 0}).run_id
            == run_id
        )


def test_redis_keys_hold_only_the_validated_run_id(stack):
    client = stack.services.tensor_store.client
    before = set(client.scan_iter(match="*", count=1000))
    payload = small_request()
    run_id = payload["run_id"]
    pattern = re.compile(rb"^lnn:\{" + re.escape(run_id.encode()) + rb"\}:[a-z]+(:[A-Za-z0-9_]+)?$")
    seen: set[bytes] = set()

    def snapshot() -> None:
        seen.update(set(client.scan_iter(match="*", count=1000)) - before)

    run_small(stack, payload, before_delivery=snapshot)
    snapshot()
    assert seen, "the run wrote no keys"
    bad = sorted(k for k in seen if not pattern.match(k))
    assert not bad, bad
    assert any(k.endswith(b":cursor") for k in seen) and any(b":t:" in k for k in seen)


def test_a_refusal_reaches_a_synchronous_caller_without_a_stack_trace(stack):
    """The caller learns what was refused (the error's type and message); where in the image it was
    refused (a trace of file paths) stays in the function's log."""
    lam = aws_client("lambda")
    calls = (
        (stack.env["LAUNCH_FUNCTION_NAME"], small_request(epochs=-1), "RequestError", "epochs"),
        (stack.trainer, {"state": "nowhere", "run_id": "sec-x"}, "EventError", "state"),
    )
    with function_logs(stack) as logs:
        for function, payload, error_type, named in calls:
            resp = lam.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
            body = json.loads(resp["Payload"].read())
            assert resp.get("FunctionError") == "Unhandled", body
            assert body["errorType"] == error_type and named in body["errorMessage"], body
            assert body.get("stackTrace", []) == [] and ".py" not in json.dumps(body), body
        text = logs()
    assert "Traceback" in text and "trainer/handlers/launch.py" in text and "trainer/handlers/trainer.py" in text


# -- 4. Structured logs --------------------------------------------------------------------------


def test_logs_are_json_lines_with_run_and_step(stack):
    payload = small_request()
    with function_logs(stack) as logged:
        launched = run_small(stack, payload)
        text = logged()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    records = []
    for line in lines:
        record = json.loads(line)  # one object per line, nothing else
        assert isinstance(record, dict), line
        assert {"level", "message", "timestamp", "service"} <= set(record), record
        records.append(record)
    steps = [r for r in records if r["message"] == "steps applied"]
    assert len(steps) >= 2, [r["message"] for r in records]
    for record in steps:
        assert record["run_id"] == payload["run_id"]
        assert record["level"] == "INFO"
        assert isinstance(record["first_seq"], int) and isinstance(record["last_seq"], int)
        assert record["first_seq"] <= record["last_seq"] and record["steps"] >= 1
        assert isinstance(record["duration_ms"], (int, float)) and record["duration_ms"] >= 0
    assert steps[-1]["last_seq"] == launched["total_steps"] - 1
    assert sum(r["steps"] for r in steps) == launched["total_steps"]  # seq 0 (start) .. finish, each once
    launched_records = [r for r in records if r["message"] == "run launched"]
    assert launched_records and launched_records[0]["run_id"] == payload["run_id"]
    # No tensor-like values: no lists of numbers, no long strings.
    for record in records:
        for key, value in record.items():
            assert not isinstance(value, (list, dict)) or key in ("exception",), (key, value)
            assert not isinstance(value, str) or len(value) < 2000, key
