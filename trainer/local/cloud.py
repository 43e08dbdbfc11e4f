"""The local cloud: one endpoint that answers as AWS does, for the SDKs, the AWS CLI and Terraform.

    python -m trainer.local.cloud [--port P] [--image-root DIR | --python PY] [--chaos-seed ...]

One process serves:
- moto's control and data planes (DynamoDB, S3, SNS, SQS, Secrets Manager, IAM, ECR, EC2, Lambda's
  control plane...), with the patches the stack needs (function recursion config, replication group
  members, deletes) and ElastiCache replication groups that are real redis-servers
  (trainer.local.elasticache);
- Lambda's Invoke, executed for real by trainer.local.lambda_service (DeleteFunction also ends the
  function's execution environments: trainer.local.moto_lambda);
- the cloud's own controls under /_lnn/, for tests (trainer.local.controls, listed in
  trainer/local/README.md): counters, chaos, held delivery, fault plans, node replacement;
- AWS-side faults answered instead of moto (trainer.local.faults, which also says which of the
  cloud's fault systems injects what).

Only its owner can use it (trainer.local.access): every request must be signed with the cloud's
own access key, a browser's request is refused, and a function runs one of the allowed handlers.

When ready it prints one JSON line ({"endpoint_url": ..., "pid": ...}) on stdout. SIGTERM or SIGINT
stops every execution environment and redis-server it started, then the process.

`CloudProcess` (trainer.local.cloud_process) starts it as a child process (the demo, `make up`, the
tests).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from trainer.local.access import KEY_VARIABLES, PROJECT_HANDLERS, new_credentials, refusal, signed_headers
from trainer.local.cloud_process import REPO_ROOT, CloudProcess
from trainer.local.controls import Controls
from trainer.local.faults import FaultInjector
from trainer.local.handler_faults import HANDLER_FAULTS_VARIABLE, HandlerFaultPlans
from trainer.local.lambda_service import Chaos, FunctionConfig, LambdaService, Runtime, venv_runtime
from trainer.local.moto_lambda import (
    forget_deleted_functions,
    moto_function_config,
    moto_reserved_total,
    sqs_destination,
)
from trainer.local.servers import free_port

if TYPE_CHECKING:
    from trainer.local.elasticache import LocalElastiCache
    from trainer.local.http_server import KeepAliveServer

# What the rest of the code and the tests import from here.
__all__ = ["KEY_VARIABLES", "REPO_ROOT", "CloudProcess", "LocalCloud", "main", "new_credentials", "signed_headers"]

DYNAMODB_TARGET = "DynamoDB_"  # X-Amz-Target of every DynamoDB operation (DynamoDB_20120810.UpdateItem)
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/invocations/?$")
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d+/(?P<region>[a-z0-9-]+)/")
Served = list[bytes]


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
        self.elasticache: LocalElastiCache | None = None
        self.faults = FaultInjector()
        self.handler_faults = HandlerFaultPlans(workdir / "handler-faults")
        self.controls: Controls  # the /_lnn/ controls, once started
        self._server: KeepAliveServer | None = None
        self._dynamodb_lock = threading.Lock()

    def start(self) -> LocalCloud:
        os.environ["MOTO_PORT"] = str(self.port)  # moto builds queue URLs and the like from it
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        from trainer.local.elasticache import LocalElastiCache
        from trainer.local.http_server import KeepAliveServer
        from trainer.local.moto_patched import apply_patches

        apply_patches()
        self.elasticache = LocalElastiCache(
            self.workdir / "elasticache-ca.pem", self.node_replacement_delay_s, secret_for=self._secret_for
        )
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
        forget_deleted_functions(self.service)
        self._server = server = KeepAliveServer("127.0.0.1", self.port, self._app(moto_app))
        threading.Thread(target=server.serve_forever, args=(0.05,), name="local-cloud-http", daemon=True).start()
        return self

    def _secret_for(self, access_key_id: str) -> str | None:
        """The secret of an access key this cloud issued: its own, the one every request and every
        execution environment signs with (moto's IAM keys are never accepted: see access.py)."""
        if access_key_id == self.credentials["AWS_ACCESS_KEY_ID"]:
            return self.credentials["AWS_SECRET_ACCESS_KEY"]
        return None

    def _config(self, function: str) -> FunctionConfig:
        return moto_function_config(function, self._region)

    _region = "us-east-1"

    def _app(self, moto_app: Any) -> Callable[[dict[str, Any], Any], Served]:
        def app(environ: dict[str, Any], start_response: Any) -> Served:
            path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
            refused = refusal(environ, path, method, self.credentials["AWS_ACCESS_KEY_ID"], self.allowed_handlers)
            if refused is not None:
                return self._refuse(refused, start_response)
            if path.startswith("/_lnn/"):
                status, document = self.controls.serve(method, path, environ)
                return answer(start_response, status, [("Content-Type", "application/json")], json.dumps(document))
            match = INVOKE_PATH.match(path)
            if method == "POST" and match:
                return self._invoke(unquote(match.group("function")), environ, start_response)
            fault = self.faults.intercept(environ)
            if fault is not None:
                status, headers, body = fault
                return answer(start_response, status, headers, body)
            if environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET):
                # DynamoDB applies each request atomically: a condition is checked and the write
                # made as one step. moto checks, then writes, on the server's request threads, so
                # two racing conditional writes could both pass (a resume and a cancel of one
                # FAILED run both answered OK). One request at a time restores DynamoDB's rule.
                with self._dynamodb_lock:
                    return list(moto_app(environ, start_response))
            return moto_app(environ, start_response)

        return app

    @staticmethod
    def _refuse(refused: tuple[int, str, str], start_response: Any) -> Served:
        status, code, message = refused
        headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
        return answer(
            start_response, status, headers, json.dumps({"__type": code, "message": message, "Message": message})
        )

    def _invoke(self, function: str, environ: dict[str, Any], start_response: Any) -> Served:
        """Lambda's Invoke, in the region the request is signed for."""
        scope = CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        region = scope.group("region") if scope else self._region
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        assert self.service is not None
        result = self.service.invoke(
            function,
            environ.get("HTTP_X_AMZ_INVOCATION_TYPE", "RequestResponse"),
            body,
            environ.get("HTTP_X_AMZN_TRACE_ID"),
            configs=lambda name: moto_function_config(name, region),
        )
        return answer(start_response, result.status, list(result.headers.items()), result.body)

    def stop(self) -> None:
        if self.service is not None:
            self.service.close()
        if self.elasticache is not None:
            self.elasticache.stop_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def answer(start_response: Any, status: int, headers: list[tuple[str, str]], body: str | bytes) -> Served:
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [body.encode() if isinstance(body, str) else body]


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


def arguments() -> argparse.ArgumentParser:
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
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
    announce(ready, args.ready_file)
    try:
        while not stop.wait(0.05):
            pass
    finally:
        cloud.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def announce(ready: dict[str, Any], ready_file: Path | None) -> None:
    """The ready line, on stdout (and in the ready file: only its owner may read the key in it)."""
    if ready_file:
        # Written aside, then renamed: a starter waiting for the file to exist (`make up`) must
        # never read it created but still empty.
        partial = ready_file.with_name(ready_file.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(ready) + "\n")
        os.replace(partial, ready_file)
    print(json.dumps(ready), flush=True)


if __name__ == "__main__":
    sys.exit(main())
