"""The local cloud: one endpoint that answers as AWS does, for the SDKs, the AWS CLI and Terraform.

    python -m trainer.local.cloud [--port P] [--image-root DIR | --python PY] [--chaos-seed ...]

One process serves:
- moto's control and data planes (DynamoDB, S3, SNS, SQS, Secrets Manager, IAM, ECR, EC2, Lambda's
  control plane...), with the patches the stack needs (function recursion config, replication group
  members, deletes) and ElastiCache replication groups that are real redis-servers
  (trainer.local.elasticache);
- Lambda's Invoke, executed for real by trainer.local.lambda_service (DeleteFunction also ends the
  function's execution environments);
- /_lnn/stats (GET), /_lnn/chaos (POST, JSON of lambda_service.Chaos), /_lnn/reset-stats (POST),
  /_lnn/idle (GET): the service's counters and controls, for tests;
- /_lnn/replace-node (POST {"replication_group_id", "delay_s"}), /_lnn/nodes (GET): ElastiCache's
  node replacement (trainer.local.elasticache): the group's redis-server is killed and, after the
  delay, a new one answers at the same endpoint with empty memory; a server that dies on its own
  is replaced too. The nodes are also under "elasticache" in /_lnn/stats;
- /_lnn/faults (POST, JSON of faults.FaultPlan; GET for its counts): AWS-side faults, a seeded
  fraction of the functions' DynamoDB, SNS and S3 requests answered with AWS's throttling and
  internal errors (trainer.local.faults). Their counts are also under "aws_faults" in /_lnn/stats.

Only its owner can use it, although it listens on loopback, where every local process (and, through
a browser, every web page) can reach it:
- every request must be signed with the cloud's access key (SigV4's Credential, or a presigned
  URL's), /_lnn/* and Invoke included: anything else is refused with 403. The key is random per
  start: given in LNN_CLOUD_ACCESS_KEY_ID / LNN_CLOUD_SECRET_ACCESS_KEY (the starter's environment,
  never a command line), or made and printed in the ready line. Only the key id is compared (it is
  sent with every request; the signature itself is not recomputed);
- a request with an Origin header (a browser's) is refused with 403;
- a function runs one of the project's handlers only (PROJECT_HANDLERS, and those the starter allows
  with --allow-handler): CreateFunction and UpdateFunctionConfiguration naming another are refused;
  and PYTHON* and LD_* variables never reach an execution environment (lambda_service).

When ready it prints one JSON line ({"endpoint_url": ..., "pid": ...}) on stdout. SIGTERM or SIGINT
stops every execution environment and redis-server it started, then the process.

`CloudProcess` starts it as a child process (the demo, `make up`, the tests).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from trainer.local import children
from trainer.local.controls import Controls
from trainer.local.faults import FaultInjector, FaultPlan
from trainer.local.handler_faults import HANDLER_FAULTS_VARIABLE, HandlerFaultPlans
from trainer.local.lambda_service import (
    Chaos,
    FunctionConfig,
    FunctionNotFound,
    LambdaService,
    Runtime,
    venv_runtime,
)
from trainer.local.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/invocations/?$")
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d+/(?P<region>[a-z0-9-]+)/")
SIGV4_ACCESS_KEY = re.compile(r"Credential=(?P<key>[^/,\s]+)/")
# Lambda's control plane: CreateFunction and UpdateFunctionConfiguration (any API version moto routes).
CREATE_FUNCTION_PATH = re.compile(r"^/[^/]+/functions/?$")
UPDATE_CONFIGURATION_PATH = re.compile(r"^/[^/]+/functions/[^/]+/configuration/?$")
PROJECT_HANDLERS = ("trainer.handlers.launch.handler", "trainer.handlers.trainer.handler")
# The starter gives the cloud its key in these variables of its environment (never in argv, which
# every local user can read).
KEY_VARIABLES = {"AWS_ACCESS_KEY_ID": "LNN_CLOUD_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "LNN_CLOUD_SECRET_ACCESS_KEY"}


def new_credentials() -> dict[str, str]:
    """A random access key for one local cloud (AWS's shape: a 20-character id and a secret)."""
    return {
        "AWS_ACCESS_KEY_ID": "LNNL" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
    }


def request_access_key(environ: dict[str, Any]) -> str | None:
    """The access key id a request is signed with: SigV4's Credential (header or presigned URL) or
    SigV2's (S3's older form); None when it is not signed."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    if found := SIGV4_ACCESS_KEY.search(authorization):
        return found.group("key")
    if authorization.startswith("AWS ") and ":" in authorization:
        return authorization[4:].split(":", 1)[0]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "X-Amz-Credential" in query:
        return query["X-Amz-Credential"][0].split("/", 1)[0]
    if "AWSAccessKeyId" in query:
        return query["AWSAccessKeyId"][0]
    return None


def handler_allowed(handler: str, allowed: tuple[str, ...]) -> bool:
    """`allowed` holds handler names, and `module.*` for every handler of a module."""
    return any(handler == a or (a.endswith(".*") and handler.startswith(a[:-1])) for a in allowed)


def moto_function_config(function: str, region: str) -> FunctionConfig:
    """The function's configuration from moto's Lambda control plane (in this process)."""
    from moto.awslambda.exceptions import UnknownFunctionException
    from moto.awslambda.models import lambda_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    name = function
    if function.startswith("arn:"):
        parts = function.split(":")
        region, name = parts[3], parts[6]
    name = name.split(":")[0]
    try:
        fn = lambda_backends[DEFAULT_ACCOUNT_ID][region].get_function(name)
    except UnknownFunctionException as exc:
        raise FunctionNotFound(f"arn:aws:lambda:{region}:{DEFAULT_ACCOUNT_ID}:function:{name}") from exc
    invoke_config = fn.event_invoke_config[0].config if fn.event_invoke_config else {}
    on_failure = ((invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    command = list(fn.image_config.cmd or [])
    reserved = fn.reserved_concurrency
    return FunctionConfig(
        name=fn.function_name,
        arn=fn.function_arn,
        handler=command[0] if command else str(fn.handler),
        environment=tuple(sorted((str(k), str(v)) for k, v in (fn.environment_vars or {}).items())),
        timeout_s=int(fn.timeout),
        memory_mb=int(fn.memory_size),
        max_retry_attempts=int(invoke_config.get("MaximumRetryAttempts", 2)),
        max_event_age_s=int(invoke_config.get("MaximumEventAgeInSeconds", 21600)),
        on_failure=on_failure or None,
        recursive_loop=getattr(fn, "lnn_recursive_loop", "Terminate"),
        reserved_concurrency=int(reserved) if reserved not in (None, "") else None,
    )


def moto_reserved_total(region: str) -> int:
    """The concurrency the region's functions have reserved, from moto's Lambda control plane."""
    from moto.awslambda.models import lambda_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    functions = lambda_backends[DEFAULT_ACCOUNT_ID][region].list_functions()
    return sum(int(fn.reserved_concurrency) for fn in functions if fn.reserved_concurrency not in (None, ""))


def sqs_destination(endpoint_url: str, credentials: dict[str, str]):
    def send(destination_arn: str, record: dict[str, Any]) -> None:
        import boto3

        if ":sqs:" not in destination_arn:
            print(f"local cloud: on-failure destination {destination_arn} is not an SQS queue; dropped", flush=True)
            return
        _, _, _, region, account, queue = destination_arn.split(":", 5)
        sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        )
        url = sqs.get_queue_url(QueueName=queue, QueueOwnerAWSAccountId=account)["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))

    return send


class LocalCloud:
    def __init__(
        self,
        port: int,
        runtime: Runtime,
        workdir: Path,
        chaos: Chaos | None = None,
        retry_delay_s: float = 1.0,
        concurrency: int = 8,
        node_replacement_delay_s: float = 1.0,
        credentials: dict[str, str] | None = None,
        allowed_handlers: tuple[str, ...] = (),
    ) -> None:
        self.port = port
        self.credentials = credentials or new_credentials()
        self.allowed_handlers = PROJECT_HANDLERS + tuple(allowed_handlers)
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self.workdir = workdir
        self.runtime = runtime
        self.chaos = chaos
        self.retry_delay_s = retry_delay_s
        self.concurrency = concurrency
        self.node_replacement_delay_s = node_replacement_delay_s
        self.service: LambdaService | None = None
        self.elasticache = None
        self.faults = FaultInjector()
        self.handler_faults = HandlerFaultPlans(workdir / "handler-faults")
        self.controls: Controls  # the /_lnn/ controls, once started
        self._server = None

    def start(self) -> LocalCloud:
        os.environ["MOTO_PORT"] = str(self.port)  # moto builds queue URLs and the like from it
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        from trainer.local.elasticache import LocalElastiCache
        from trainer.local.moto_patched import apply_patches

        apply_patches()
        self.elasticache = LocalElastiCache(self.workdir / "elasticache-ca.pem", self.node_replacement_delay_s)
        self.elasticache.patch_moto()
        moto_app = DomainDispatcherApplication(create_backend_app)
        cloud_env = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            **self.credentials,
            "REDIS_CA_FILE": str(self.elasticache.ca_bundle),
            HANDLER_FAULTS_VARIABLE: str(self.handler_faults.folder),
        }
        self.service = LambdaService(
            runtime=self.runtime,
            configs=self._config,
            cloud_env=cloud_env,
            send_to_destination=sqs_destination(self.endpoint_url, self.credentials),
            log_dir=self.workdir / "logs",
            account_concurrency=self.concurrency,
            retry_delay_s=self.retry_delay_s,
            chaos=self.chaos,
            reserved_total=lambda: moto_reserved_total(self._region),
        )
        self.controls = Controls(self.service, self.faults, self.handler_faults, self.elasticache)
        self._forget_deleted_functions()
        self._server = make_server(
            "127.0.0.1", self.port, self._app(moto_app), threaded=True, request_handler=MotoRequestHandler
        )
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="local-cloud-http", daemon=True).start()
        return self

    def _forget_deleted_functions(self) -> None:
        """DeleteFunction (moto's control plane) also ends the function's execution environments,
        as on AWS: a destroyed stack leaves no process of its functions behind."""
        from moto.awslambda import models

        service = self.service
        original = models.LambdaBackend.delete_function

        def delete_function(backend: Any, function_name: str, qualifier: str | None = None) -> None:
            original(backend, function_name, qualifier)
            if service is not None and qualifier in (None, "$LATEST"):
                name = function_name.split(":")[6] if function_name.startswith("arn:") else function_name
                service.forget(name.split(":")[0])

        models.LambdaBackend.delete_function = delete_function

    def _config(self, function: str) -> FunctionConfig:
        return moto_function_config(function, self._region)

    _region = "us-east-1"

    def _app(self, moto_app: Any):
        cloud = self

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
            refusal = cloud._refusal(environ, path, method)
            if refusal is not None:
                status, code, message = refusal
                start_response(
                    f"{status} {HTTPStatus(status).phrase}",
                    [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)],
                )
                return [json.dumps({"__type": code, "message": message, "Message": message}).encode()]
            if path.startswith("/_lnn/"):
                status, document = cloud.controls.serve(method, path, environ)
                start_response(f"{status} {HTTPStatus(status).phrase}", [("Content-Type", "application/json")])
                return [json.dumps(document).encode()]
            match = INVOKE_PATH.match(path)
            if method == "POST" and match:
                scope = CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = environ["wsgi.input"].read(length) if length else b""
                function = unquote(match.group("function"))
                region = scope.group("region") if scope else cloud._region
                assert cloud.service is not None

                def configs(name: str) -> FunctionConfig:
                    return moto_function_config(name, region)

                answer = cloud.service.invoke(
                    function,
                    environ.get("HTTP_X_AMZ_INVOCATION_TYPE", "RequestResponse"),
                    body,
                    environ.get("HTTP_X_AMZN_TRACE_ID"),
                    configs=configs,
                )
                reason = HTTPStatus(answer.status).phrase
                start_response(f"{answer.status} {reason}", list(answer.headers.items()))
                return [answer.body]
            fault = cloud.faults.intercept(environ)
            if fault is not None:
                status, headers, body = fault
                start_response(f"{status} {HTTPStatus(status).phrase}", headers)
                return [body]
            return moto_app(environ, start_response)

        return app

    def _refusal(self, environ: dict[str, Any], path: str, method: str) -> tuple[int, str, str] | None:
        """(status, error code, message) for a request the cloud does not serve; None to serve it."""
        if environ.get("HTTP_ORIGIN") is not None:
            return 403, "AccessDeniedException", "the local cloud serves no browser (the request has an Origin header)"
        if request_access_key(environ) != self.credentials["AWS_ACCESS_KEY_ID"]:
            return 403, "UnrecognizedClientException", "the request is not signed with this local cloud's access key"
        if (method == "POST" and CREATE_FUNCTION_PATH.match(path)) or (
            method == "PUT" and UPDATE_CONFIGURATION_PATH.match(path)
        ):
            return self._handler_refusal(environ)
        return None

    def _handler_refusal(self, environ: dict[str, Any]) -> tuple[int, str, str] | None:
        """A function's handler must be one of the project's: the local cloud runs it as its owner."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)  # moto reads it next
        try:
            config = json.loads(body or b"{}")
        except ValueError:
            return None  # moto answers a malformed body
        command = ((config.get("ImageConfig") or {}).get("Command") or []) if isinstance(config, dict) else []
        handlers = [str(h) for h in (command[:1] if command else [config.get("Handler")]) if h is not None]
        refused = [h for h in handlers if not handler_allowed(h, self.allowed_handlers)]
        if refused:
            return (
                400,
                "InvalidParameterValueException",
                f"handler {refused[0]!r} is not one of this local cloud's: {', '.join(self.allowed_handlers)}",
            )
        return None

    def stop(self) -> None:
        if self.service is not None:
            self.service.close()
        if self.elasticache is not None:
            self.elasticache.stop_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def signed_headers(credentials: dict[str, str], method: str, url: str, data: bytes | None) -> dict[str, str]:
    """SigV4 headers for a request to the cloud's own /_lnn/ controls, as an SDK signs its calls."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=data or b"")
    key = Credentials(credentials["AWS_ACCESS_KEY_ID"], credentials["AWS_SECRET_ACCESS_KEY"])
    SigV4Auth(key, "lambda", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def image_runtime(image_root: Path, python: str) -> Runtime:
    """The image's file system as tests/infra/images lays it out (root/opt/deps, root/var/task)."""
    deps, task = image_root / "opt" / "deps", image_root / "var" / "task"
    environ = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(image_root),
        "PYTHONPATH": f"{deps}{os.pathsep}{task}",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "LAMBDA_TASK_ROOT": str(task),
    }
    return Runtime(python=python, environ=environ, cwd=str(task))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.local.cloud", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="listen port (default: a free one)")
    parser.add_argument("--python", default=sys.executable, help="the execution environments' interpreter")
    parser.add_argument("--image-root", type=Path, help="run the functions from this image file system")
    parser.add_argument("--workdir", type=Path, help="logs and the CA bundle (default: a temporary folder)")
    parser.add_argument("--concurrency", type=int, default=8, help="account concurrency limit")
    parser.add_argument("--retry-delay", type=float, default=1.0, help="seconds before an async retry")
    parser.add_argument(
        "--node-replacement-delay", type=float, default=1.0, help="seconds before a dead cache node is replaced"
    )
    parser.add_argument("--chaos", type=str, default=None, help="chaos settings as JSON (lambda_service.Chaos)")
    parser.add_argument("--ready-file", type=Path, help="also write the ready line here (for a detached start)")
    parser.add_argument(
        "--allow-handler",
        action="append",
        default=[],
        help="a handler (or module.* for a module's) that functions may run besides the project's own",
    )
    args = parser.parse_args(argv)
    given = {name: os.environ.pop(variable, "") for name, variable in KEY_VARIABLES.items()}
    credentials = given if all(given.values()) else new_credentials()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lnn-cloud-"))
    workdir.mkdir(parents=True, exist_ok=True)
    runtime = image_runtime(args.image_root, args.python) if args.image_root else venv_runtime(REPO_ROOT, args.python)
    chaos = Chaos(**json.loads(args.chaos)) if args.chaos else None
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request would drown the logs
    cloud = LocalCloud(
        args.port or free_port(),
        runtime,
        workdir,
        chaos,
        args.retry_delay,
        args.concurrency,
        node_replacement_delay_s=args.node_replacement_delay,
        credentials=credentials,
        allowed_handlers=tuple(args.allow_handler),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cloud.start()
    ready = {"endpoint_url": cloud.endpoint_url, "pid": os.getpid(), "workdir": str(workdir)}
    if not all(given.values()):  # a key of its own: its starter learns it here
        ready["credentials"] = credentials
    if args.ready_file:
        fd = os.open(args.ready_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(ready) + "\n")
    print(json.dumps(ready), flush=True)
    try:
        while not stop.wait(0.05):
            pass
    finally:
        cloud.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


@dataclass
class CloudProcess:
    """The local cloud as a child process; stop() ends it and everything it started."""

    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen | None = None
    endpoint_url: str = ""
    workdir: str = ""
    # The cloud's access key: every client of this cloud signs with it (`aws_env`).
    credentials: dict[str, str] = field(default_factory=new_credentials)

    @property
    def aws_env(self) -> dict[str, str]:
        """What an AWS client needs to reach this cloud: its endpoint and its key."""
        return {"AWS_ENDPOINT_URL": self.endpoint_url, **self.credentials}

    def start(self, timeout_s: float = 60) -> CloudProcess:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        # A child of ours: if this process is killed, the cloud (and so all it started) goes too.
        self.process = children.popen(
            [sys.executable, "-m", "trainer.local.cloud", *self.args],
            cwd=REPO_ROOT,
            env={
                **os.environ,
                "PYTHONPATH": str(REPO_ROOT),
                **self.env,
                **{KEY_VARIABLES[name]: value for name, value in self.credentials.items()},
            },
            stdout=subprocess.PIPE,
            stderr=log,
            # Out of the terminal's process group: a Ctrl-C reaches the command that started the
            # cloud, which stops its run cleanly and then stops the cloud, instead of the cloud first.
            start_new_session=True,
        )
        assert self.process.stdout is not None
        ready: dict[str, Any] = {}

        def read() -> None:
            line = self.process.stdout.readline()  # type: ignore[union-attr]
            if line:
                ready.update(json.loads(line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not ready:
            self.stop()
            raise RuntimeError(f"the local cloud did not start within {timeout_s:.0f} s")
        self.endpoint_url, self.workdir = ready["endpoint_url"], ready["workdir"]
        return self

    def _call(self, path: str, body: Any = None, timeout_s: float = 10) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.endpoint_url}{path}",
            data=data,
            method="POST" if data else "GET",
            headers=signed_headers(self.credentials, "POST" if data else "GET", f"{self.endpoint_url}{path}", data),
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return json.loads(resp.read())

    def hold(self, function: str, on: bool = True) -> None:
        """Hold the function's asynchronous events until `deliver` or `drop` names them."""
        self._call("/_lnn/hold", {"function": function, "hold": on})

    def held(self, function: str) -> list[dict[str, Any]]:
        return self._call(f"/_lnn/held?function={quote(function)}")["held"]

    def deliver(self, request_id: str, copies: int = 1, keep: bool = False, timeout_s: float = 900) -> dict[str, Any]:
        return self._call("/_lnn/deliver", {"request_id": request_id, "copies": copies, "keep": keep}, timeout_s)

    def drop(self, request_id: str) -> None:
        self._call("/_lnn/drop", {"request_id": request_id})

    def stats(self) -> dict[str, Any]:
        return self._call("/_lnn/stats")

    def set_chaos(self, chaos: Chaos) -> dict[str, Any]:
        return self._call("/_lnn/chaos", asdict(chaos))

    def set_faults(self, plan: FaultPlan) -> dict[str, Any]:
        return self._call("/_lnn/faults", asdict(plan))

    def set_handler_faults(self, function: str, plan: dict[str, Any] | None) -> None:
        """The fault plan the function's handler reads from its next invocation on (None clears it);
        unlike a change of the function's variables, the warm environments stay."""
        self._call("/_lnn/handler-faults", {"function": function, "plan": plan})

    def reset_stats(self) -> None:
        self._call("/_lnn/reset-stats", {})

    def nodes(self) -> dict[str, dict[str, Any]]:
        """Each replication group's node: status, endpoint, pid, replacements so far."""
        return self._call("/_lnn/nodes")

    def replace_node(
        self, replication_group_id: str, delay_s: float | None = None, wait: bool = True, timeout_s: float = 60
    ) -> dict[str, Any]:
        """Kill the group's node, as a failed ElastiCache node; with `wait`, return once its
        replacement (same endpoint, empty memory) answers."""
        before = self.nodes()[replication_group_id]["replacements"]
        request: dict[str, Any] = {"replication_group_id": replication_group_id}
        if delay_s is not None:
            request["delay_s"] = delay_s
        node = self._call("/_lnn/replace-node", request)
        return self.wait_node_replaced(replication_group_id, before + 1, timeout_s) if wait else node

    def wait_node_replaced(self, replication_group_id: str, replacements: int, timeout_s: float = 60) -> dict[str, Any]:
        """Wait until the group's node is available after `replacements` replacements in all."""
        deadline = time.monotonic() + timeout_s
        while True:
            node = self.nodes()[replication_group_id]
            if node["status"] == "available" and node["replacements"] >= replacements:
                return node
            if time.monotonic() > deadline:
                raise TimeoutError(f"{replication_group_id}'s node was not replaced within {timeout_s:.0f} s: {node}")
            time.sleep(0.05)

    def idle(self) -> bool:
        """Nothing queued and nothing in flight in the Lambda service."""
        return bool(self._call("/_lnn/idle")["idle"])

    def wait_idle(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.idle():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Lambda service still has queued events after {timeout_s:.0f} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process and self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> CloudProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
