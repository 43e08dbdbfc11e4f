"""Security (issue 6, item 6), each point against the real servers:

- Redis speaks TLS and AUTH only; the token comes from Secrets Manager, never from the environment,
  the logs or a command line; the local runner and the tests use this very path.
- Nothing is deserialised with pickle (datasets, cache values, the package's own code).
- Requests cannot reach outside their run (dataset location, run ids, Redis keys).
- Logs are one JSON object per line with run id and step, without data or secrets.
"""

from __future__ import annotations

import ast
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
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from trainer import secrets as secrets_mod
from trainer import services as services_mod
from trainer.aws import client as aws_client
from trainer.data.builtin import BUILTIN
from trainer.errors import EventError, RequestError
from trainer.handlers import launch as launch_handler
from trainer.handlers import trainer as trainer_handler
from trainer.local import runner
from trainer.local.servers import RedisServer
from trainer.request import parse
from trainer.settings import Settings
from trainer.statemachine import parse_event
from trainer.stores import codec
from trainer.stores.codec import CodecError

REPO_ROOT = Path(__file__).resolve().parents[3]
NO_RETRY = Retry(NoBackoff(), 0)  # a refusal is the answer under test, not a blip to retry
TRAINER_DIR = REPO_ROOT / "trainer"


# -- helpers ---------------------------------------------------------------------------------


def small_request(**overrides) -> dict:
    payload = {
        "dataset": "moons",
        "neurons": {"layer1": 4, "layer2": 1},
        "activations": {"layer1": "tanh", "layer2": "sigmoid"},
        "epochs": 2,
        "learning_rate": 0.05,
        "batch_size": 100,
        "max_steps_per_invocation": 4,
        "run_id": "sec-" + secrets.token_hex(6),
    }
    payload.update(overrides)
    return payload


def written_state(svc: services_mod.Services) -> tuple[int, int, int]:
    """(Redis keys, DynamoDB items, S3 objects): what a refused request must leave unchanged."""
    keys = svc.tensor_store.client.dbsize()
    items = aws_client("dynamodb").scan(TableName=svc.settings.table_name, Select="COUNT")["Count"]
    objects = aws_client("s3").list_objects_v2(Bucket=svc.settings.model_bucket).get("KeyCount", 0)
    return keys, items, objects


def refused(payload, svc: services_mod.Services) -> RequestError:
    """Launch `payload`, expect a RequestError, and check that nothing was written anywhere."""
    before = written_state(svc)
    queued = len(svc.invoker.queue)
    with pytest.raises(RequestError) as info:
        launch_handler.launch(payload, svc)
    assert written_state(svc) == before, "a refused request wrote something"
    assert len(svc.invoker.queue) == queued, "a refused request invoked the trainer"
    return info.value


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """What the handlers' JSON loggers write (their own stdout handlers), at INFO."""
    stream = io.StringIO()
    saved = []
    for logger in (trainer_handler.logger, launch_handler.logger):
        handler = logger.registered_handler
        saved.append((logger, handler, handler.setStream(stream), logger.log_level))
        logger.setLevel("INFO")
    try:
        yield stream
    finally:
        for logger, handler, old_stream, level in saved:
            handler.setStream(old_stream)
            logger.setLevel(level)


def run_small(stack: runner.LocalStack, payload: dict, before_invoke=None) -> dict:
    stack.invoker.queue.clear()
    launched = runner.launch(stack, payload)
    dead = runner.drain(stack, before_invoke=before_invoke)
    assert not dead, dead
    run = stack.services.run_store.get_run(launched["run_id"])
    assert run["status"] == "SUCCEEDED", run
    return launched


# -- 1. TLS and AUTH -------------------------------------------------------------------------


def test_session_redis_is_tls_with_password(redis_server: RedisServer):
    assert redis_server.tls is True
    assert redis_server.ca_file and Path(redis_server.ca_file).is_file()
    client = redis.Redis(
        host="127.0.0.1",
        port=redis_server.port,
        password=redis_server.password,
        ssl=True,
        ssl_ca_certs=redis_server.ca_file,
        ssl_check_hostname=True,
    )
    assert client.ping() is True
    assert client.connection_pool.connection_class is redis.connection.SSLConnection


def test_plaintext_connection_is_refused(redis_server: RedisServer):
    client = redis.Redis(
        host="127.0.0.1",
        port=redis_server.port,
        password=redis_server.password,
        socket_timeout=3,
        socket_connect_timeout=3,
        retry=NO_RETRY,
    )
    with pytest.raises(redis.ConnectionError):
        client.ping()
    # At the wire: a plaintext AUTH + PING never gets an answer, only a closed connection.
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=3) as sock:
        sock.sendall(f"AUTH {redis_server.password}\r\nPING\r\n".encode())
        reply = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(256):
                reply += chunk
    assert b"PONG" not in reply and b"+OK" not in reply


def _tls_exchange(redis_server: RedisServer, command: bytes) -> bytes:
    context = ssl.create_default_context(cafile=redis_server.ca_file)
    with (
        socket.create_connection(("127.0.0.1", redis_server.port), timeout=3) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(command)
        return sock.recv(256)


def test_tls_without_password_is_refused(redis_server: RedisServer):
    assert _tls_exchange(redis_server, b"PING\r\n").startswith(b"-NOAUTH")
    assert _tls_exchange(redis_server, b"GET lnn:{x}:cursor\r\n").startswith(b"-NOAUTH")
    assert _tls_exchange(redis_server, b"AUTH not-the-password\r\n").startswith(b"-WRONGPASS")
    client = redis.Redis(
        host="127.0.0.1", port=redis_server.port, ssl=True, ssl_ca_certs=redis_server.ca_file, retry=NO_RETRY
    )
    with pytest.raises(redis.AuthenticationError):
        client.ping()


def test_tls_client_verifies_the_server(redis_server: RedisServer):
    """A client that does not trust the server's CA refuses to talk (no silent unverified TLS)."""
    client = redis.Redis(
        host="127.0.0.1",
        port=redis_server.port,
        password=redis_server.password,
        ssl=True,
        socket_connect_timeout=3,
        retry=NO_RETRY,
    )
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        client.ping()


def test_password_is_not_on_any_command_line_and_files_are_private(redis_server: RedisServer):
    cmdline = Path(f"/proc/{redis_server.process.pid}/cmdline").read_bytes()
    assert redis_server.password.encode() not in cmdline
    # No process of this machine that we can see has it on its command line.
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                assert redis_server.password.encode() not in (proc / "cmdline").read_bytes(), proc
    workdir = Path(redis_server.workdir)
    assert workdir.stat().st_mode & 0o077 == 0
    for name in ("redis.conf", "server.key"):
        assert (workdir / name).stat().st_mode & 0o777 == 0o600, name
    assert "PRIVATE KEY" not in Path(redis_server.ca_file).read_text()
    assert not any(os.environ.get(k) == redis_server.password for k in os.environ)


def test_adapter_from_settings_reads_the_token_from_secrets_manager(redis_server, stack, monkeypatch):
    """The Lambda path: Settings.from_env() + services.build() with REDIS_AUTH_SECRET_ARN, TLS on
    by default; the password is in no environment variable."""
    for key in [k for k in os.environ if "REDIS" in k and k not in ("REDIS_HOST",)]:
        monkeypatch.delenv(key)
    env = {
        "TABLE_NAME": stack.env["TABLE_NAME"],
        "MODEL_BUCKET": stack.env["MODEL_BUCKET"],
        "SNS_TOPIC_ARN": stack.env["SNS_TOPIC_ARN"],
        "TRAINER_FUNCTION_ARN": stack.env["TRAINER_FUNCTION_ARN"],
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_server.port),
        "REDIS_AUTH_SECRET_ARN": stack.env["REDIS_AUTH_SECRET_ARN"],
        "REDIS_CA_FILE": redis_server.ca_file,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    assert settings.redis_tls is True  # the default
    assert redis_server.password not in repr(settings)
    assert not any(v == redis_server.password for v in os.environ.values())
    secrets_mod.secret_string.cache_clear()
    svc = services_mod.build(settings, invoker=stack.invoker)
    kwargs = svc.tensor_store.client.connection_pool.connection_kwargs
    assert svc.tensor_store.client.connection_pool.connection_class is redis.connection.SSLConnection
    assert kwargs["password"] == redis_server.password  # came from the secret
    assert svc.tensor_store.client.ping() is True
    svc.tensor_store.client.set("lnn:{sec-probe}:cursor", "-1", ex=5)
    assert svc.tensor_store.cursor("sec-probe") == -1
    svc.tensor_store.client.delete("lnn:{sec-probe}:cursor")

    # A wrong token in the secret: refused by the server, not silently unauthenticated.
    wrong = aws_client("secretsmanager").create_secret(
        Name=f"sec-wrong-{secrets.token_hex(3)}", SecretString="not-the-password"
    )["ARN"]
    monkeypatch.setenv("REDIS_AUTH_SECRET_ARN", wrong)
    bad = services_mod.build(Settings.from_env(), invoker=stack.invoker)
    with pytest.raises(redis.AuthenticationError):
        bad.tensor_store.client.ping()
    # TLS switched off against a TLS-only server: no connection at all.
    monkeypatch.setenv("REDIS_AUTH_SECRET_ARN", stack.env["REDIS_AUTH_SECRET_ARN"])
    monkeypatch.setenv("REDIS_TLS", "false")
    plain = services_mod.build(Settings.from_env(), invoker=stack.invoker)
    plain.tensor_store.client.connection_pool.connection_kwargs.update(socket_timeout=2)
    with pytest.raises(redis.ConnectionError):
        plain.tensor_store.client.ping()
    secrets_mod.secret_string.cache_clear()


def test_local_runner_trains_over_tls(tmp_path: Path):
    """`python -m trainer train` (its own redis-server and moto server) works against a TLS-only,
    password-protected redis-server: the local runner uses the TLS path too."""
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
    assert RedisServer().tls is True  # the local runner's server (runner.local_servers) is TLS by default


def test_password_and_data_never_reach_the_logs(stack, redis_server, monkeypatch):
    monkeypatch.setenv("LNN_LOG_LEVEL", "INFO")
    data = BUILTIN["moons"]()
    with captured_logs() as stream:
        run_small(stack, small_request())
        # A failing step logs its exception too: that path must not leak either.
        with pytest.raises(EventError):
            trainer_handler.run(
                {"state": "start", "run_id": "../x", "epoch": 0, "layer": 0, "batch": 0, "seq": 0},
                runner.LocalContext(),
                stack.services,
            )
    text = stream.getvalue()
    assert text.strip(), "the handlers logged nothing at INFO"
    assert redis_server.password not in text
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


def test_pickled_npz_is_refused_and_nothing_runs(stack, tmp_path: Path):
    marker = tmp_path / "unpickled"
    _Boom.marker = str(marker)
    boom = np.empty(120, dtype=object)
    boom[:] = [_Boom() for _ in range(120)]
    arrays = {**_arrays(), "train_set_x": boom}
    object_npz = tmp_path / "object.npz"
    np.savez(object_npz, **arrays)
    error = refused(small_request(dataset=str(object_npz)), stack.services)
    assert any(p.startswith("dataset:") and "train_set_x" in p and "numeric" in p for p in error.problems), (
        error.problems
    )
    # A bare pickle renamed .npz.
    raw_pickle = tmp_path / "raw.npz"
    raw_pickle.write_bytes(pickle.dumps(_Boom()))
    error = refused(small_request(dataset=str(raw_pickle)), stack.services)
    assert any(p.startswith("dataset:") and "unreadable" in p for p in error.problems), error.problems
    # The same object array as an s3 object in the configured bucket.
    aws_client("s3").put_object(
        Bucket=stack.env["MODEL_BUCKET"], Key="uploads/object.npz", Body=object_npz.read_bytes()
    )
    error = refused(small_request(dataset=f"s3://{stack.env['MODEL_BUCKET']}/uploads/object.npz"), stack.services)
    assert any("train_set_x" in p and "numeric" in p for p in error.problems), error.problems
    aws_client("s3").delete_object(Bucket=stack.env["MODEL_BUCKET"], Key="uploads/object.npz")
    assert not marker.exists(), "an object in a dataset was unpickled"


def test_h5_reads_only_numeric_expected_datasets(stack, tmp_path: Path):
    path = tmp_path / "strings.h5"
    arrays = _arrays()
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            if key == "test_set_x":
                handle.create_dataset(key, data=np.array([b"x"] * 60, dtype=object), dtype=h5py.string_dtype())
            else:
                handle.create_dataset(key, data=value)
    error = refused(small_request(dataset=str(path)), stack.services)
    assert any("test_set_x" in p and "numeric" in p for p in error.problems), error.problems
    # Extra, non-numeric datasets next to the expected ones are never read.
    extra = tmp_path / "extra.h5"
    with h5py.File(extra, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)
        handle.create_dataset("list_classes", data=np.array([b"a", b"b"], dtype=object), dtype=h5py.string_dtype())
    _, dataset = launch_handler.validate(small_request(dataset=str(extra)), stack.services)
    assert dataset.examples == 120


def test_codec_refuses_object_dtypes_and_wrong_lengths():
    good = codec.encode(np.arange(6, dtype=np.float64).reshape(2, 3))
    assert np.array_equal(codec.decode(good), np.arange(6, dtype=np.float64).reshape(2, 3))

    def forged(dtype: str, shape: list[int], body: bytes) -> bytes:
        header = json.dumps({"dtype": dtype, "shape": shape}).encode()
        return codec.MAGIC + len(header).to_bytes(2, "little") + header + body

    for dtype in ("|O", "O", "<U4", "|V8", "object", "<M8[s]"):
        with pytest.raises(CodecError):
            codec.decode(forged(dtype, [1], b"\0" * 8))
    with pytest.raises(CodecError, match="bytes"):
        codec.decode(forged("<f8", [2, 3], b"\0" * 47))
    with pytest.raises(CodecError, match="bytes"):
        codec.decode(forged("<f8", [2, 3], b"\0" * 49))
    with pytest.raises(CodecError):
        codec.decode(forged("<f8", [-1, 6], b"\0" * 48))
    with pytest.raises(CodecError):
        codec.decode(pickle.dumps(np.zeros(3)))
    with pytest.raises(CodecError):
        codec.decode(good[:5])
    with pytest.raises(CodecError):
        codec.encode(np.array([object()], dtype=object))


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


_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "jsonpickle"}


def test_no_module_imports_pickle_or_allows_it():
    offenders = []
    files = sorted(TRAINER_DIR.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                names = []
            offenders += [f"{path}:{node.lineno} imports {n}" for n in names if n in _PICKLE_MODULES]
            if (
                isinstance(node, ast.keyword)
                and node.arg in ("allow_pickle", "fix_imports")
                and not (isinstance(node.value, ast.Constant) and node.value.value is False)
            ):
                offenders.append(f"{path}:{node.value.lineno} passes {node.arg}={ast.unparse(node.value)}")
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("np.load", "numpy.load"):
                given = {k.arg: k.value for k in node.keywords}
                value = given.get("allow_pickle")
                if not (isinstance(value, ast.Constant) and value.value is False):
                    offenders.append(f"{path}:{node.lineno} calls np.load without allow_pickle=False")
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("loads", "load")
                and isinstance(node.value, ast.Name)
                and node.value.id in _PICKLE_MODULES
            ):
                offenders.append(f"{path}:{node.lineno} calls {node.value.id}.{node.attr}")
        assert "allow_pickle=True" not in path.read_text().replace(" ", ""), path
    assert not offenders, "\n".join(offenders)


# -- 3. Requests cannot reach outside their run ------------------------------------------------


def test_dataset_in_another_bucket_is_refused(stack):
    error = refused(small_request(dataset="s3://other-bucket/datasets/cats.h5"), stack.services)
    assert any(
        p.startswith("dataset:") and "other-bucket" in p and stack.env["MODEL_BUCKET"] in p for p in error.problems
    ), error.problems
    for uri in ("s3://", "s3:///key.npz", "s3://bucket-only", f"s3://{stack.env['MODEL_BUCKET']}evil/x.npz"):
        error = refused(small_request(dataset=uri), stack.services)
        assert any(p.startswith("dataset:") for p in error.problems), (uri, error.problems)


def test_dataset_in_the_configured_bucket_is_read(stack, tmp_path: Path):
    buffer = io.BytesIO()
    np.savez(buffer, **_arrays())
    aws_client("s3").put_object(Bucket=stack.env["MODEL_BUCKET"], Key="uploads/ok.npz", Body=buffer.getvalue())
    try:
        _, dataset = launch_handler.validate(
            small_request(dataset=f"s3://{stack.env['MODEL_BUCKET']}/uploads/ok.npz"), stack.services
        )
        assert dataset.examples == 120
    finally:
        aws_client("s3").delete_object(Bucket=stack.env["MODEL_BUCKET"], Key="uploads/ok.npz")
    error = refused(small_request(dataset=f"s3://{stack.env['MODEL_BUCKET']}/uploads/missing.npz"), stack.services)
    assert any(p.startswith("dataset:") for p in error.problems), error.problems


def test_local_paths_must_exist(stack, tmp_path: Path):
    for source in (
        str(tmp_path / "missing.npz"),
        str(tmp_path),
        "../../../etc/shadow.h5",
        "/dev/zero",
        "moons.npz",
        "nul\0byte.npz",
    ):
        error = refused(small_request(dataset=source), stack.services)
        assert any(p.startswith("dataset:") for p in error.problems), (source, error.problems)


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
        error = refused(small_request(run_id=run_id), stack.services)
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

    def snapshot(_event) -> None:
        seen.update(set(client.scan_iter(match="*", count=1000)) - before)

    run_small(stack, payload, before_invoke=snapshot)
    snapshot(None)
    assert seen, "the run wrote no keys"
    bad = sorted(k for k in seen if not pattern.match(k))
    assert not bad, bad
    assert any(k.endswith(b":cursor") for k in seen) and any(b":t:" in k for k in seen)


# -- 4. Structured logs --------------------------------------------------------------------------


def test_logs_are_json_lines_with_run_and_step(stack, monkeypatch):
    monkeypatch.setenv("LNN_LOG_LEVEL", "INFO")
    payload = small_request()
    with captured_logs() as stream:
        launched = run_small(stack, payload)
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
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
