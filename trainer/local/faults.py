"""The local cloud's faults: which system injects what (extend the one whose kind of fault you add).

- AWS API errors: throttling and internal errors, in each service's wire format, answering a seeded
  fraction of the functions' DynamoDB, SNS and S3 requests. This module (`FaultInjector`), set by
  `POST /_lnn/faults`.
- Lambda's delivery: duplicate and overlapping copies of an event, an environment killed in the
  middle of an invocation, delayed and reordered copies, the kind of host each new environment
  runs on. The Lambda service's chaos (trainer.local.lambda_service.chaos, `Chaos`), set by
  `POST /_lnn/chaos`; the settings change without retiring warm environments.
- Delivery placed by hand: an event held, then delivered as N copies side by side, delivered again
  later (`keep`), or dropped as a lost hand-off. The Lambda service's held delivery
  (trainer.local.lambda_service.held), `/_lnn/hold`, `/_lnn/deliver`, `/_lnn/drop`.
- A cache node lost: killed, and back empty at the same endpoint. trainer.local.elasticache,
  `POST /_lnn/replace-node`.
- Crashes, pauses and delays at a chosen call inside the handler (before or after a named adapter
  call): the tests' fault-injecting handler (tests/integration/functions.py, `trainer_with_faults`).
  It must run inside the function's process, so it is test code installed in the test image, not
  part of the cloud; the cloud keeps its plan per function (trainer.local.handler_faults,
  `POST /_lnn/handler-faults`, read at each invocation: warm environments stay), or the function's
  LNN_TEST_FAULTS variable gives it (a configuration change: new environments). It copies none of
  the above: none of them can stop a handler between two chosen calls.
- Lambda's own limits are not switched on: the function's timeout, memory size (an OOM kill),
  concurrency (throttling), maximum event age and recursion stop act as the configuration says.

AWS-side faults: a seeded fraction of the functions' DynamoDB, SNS and S3
data-plane requests is answered with an error that AWS itself returns under load or in a bad
moment, in that service's wire format, instead of reaching moto.

Only requests made from inside an execution environment are disturbed: they carry the X-Ray trace
header Lambda hands the invocation (botocore sends it back as X-Amzn-Trace-Id), and the `Lineage`
field the Lambda service adds marks them. A test's own reads and the control plane stay reliable,
as on AWS a person's console does not share the functions' throttling.

The errors are the ones the services document, with their status codes: some are retried by the
SDK itself (botocore's standard mode retries throttling codes and 5xx answers), the others reach
the handler and become a function error, which Lambda's asynchronous retry handles. The botocore
`amz-sdk-request: attempt=N` header tells which requests were SDK retries; `FaultStats` counts them.
"""

from __future__ import annotations

import io
import json
import random
import re
import threading
import uuid
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import parse_qs

CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d+/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/aws4_request")
SDK_ATTEMPT = re.compile(r"attempt=(\d+)")
LINEAGE = "Lineage="


class Service(Enum):
    DYNAMODB = "dynamodb"
    SNS = "sns"
    S3 = "s3"


# The data plane: what a run does at run time (the control plane builds the stack and stays calm).
DYNAMODB_DATA = {
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactGetItems",
    "TransactWriteItems",
}
SNS_DATA = {"Publish", "PublishBatch"}


@dataclass(frozen=True)
class Fault:
    status: int
    code: str
    message: str


# What each service answers when it is throttled or has an internal error, as documented.
FAULTS: dict[Service, tuple[Fault, ...]] = {
    Service.DYNAMODB: (
        Fault(400, "ThrottlingException", "Rate of requests exceeds the allowed throughput."),
        Fault(
            400,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded. "
            "Consider increasing your provisioning level with the UpdateTable API.",
        ),
        Fault(500, "InternalServerError", "Internal server error"),
    ),
    # SNS's throttling code is `Throttled` (429), which botocore does not count as throttling:
    # on AWS it reaches the caller, and so it does here.
    Service.SNS: (
        Fault(429, "Throttled", "Rate exceeded"),
        Fault(500, "InternalError", "Internal Error"),
    ),
    Service.S3: (
        Fault(503, "SlowDown", "Please reduce your request rate."),
        Fault(500, "InternalError", "We encountered an internal error. Please try again."),
    ),
}


@dataclass
class FaultPlan:
    """Settings of the injector (POST /_lnn/faults): `fraction` of the functions' data-plane
    requests to the listed services fail, or the service's own fraction in `fractions` (a run
    makes hundreds of DynamoDB calls and a handful of SNS ones); the choices come from one
    generator seeded with `seed`."""

    seed: int = 0
    fraction: float = 0.0
    services: tuple[str, ...] = tuple(s.value for s in Service)
    fractions: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.services = tuple(Service(s).value for s in self.services)  # refuses an unknown service
        self.fractions = {Service(s).value: float(f) for s, f in self.fractions.items()}
        for value in (self.fraction, *self.fractions.values()):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"a fraction must be within [0, 1], not {value}")

    def fraction_of(self, service: Service) -> float:
        if service.value not in self.services:
            return 0.0
        return self.fractions.get(service.value, self.fraction)


@dataclass
class FaultStats:
    requests: dict[str, int] = field(default_factory=dict)  # the functions' data-plane requests, by service
    sdk_retries: dict[str, int] = field(default_factory=dict)  # of which the SDK's own retries (attempt > 1)
    injected: dict[str, int] = field(default_factory=dict)  # "service:code" -> faults answered

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["injected_total"] = sum(self.injected.values())
        return out


@dataclass(frozen=True)
class Request:
    """What the injector needs to know of one HTTP request."""

    service: Service
    operation: str
    from_function: bool
    sdk_attempt: int


def classify(environ: dict[str, Any]) -> Request | None:
    """The data-plane request of a service the injector knows, or None. Reads (and puts back) the
    body of an SNS request: its action is a form field."""
    scope = CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if not scope:
        return None
    try:
        service = Service(scope.group("service"))
    except ValueError:
        return None
    method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
    if service is Service.DYNAMODB:
        operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
        if operation not in DYNAMODB_DATA:
            return None
    elif service is Service.SNS:
        operation = _form_action(environ)
        if operation not in SNS_DATA:
            return None
    else:
        bucket, _, key = path.lstrip("/").partition("/")
        if not (bucket and key) or method not in ("GET", "PUT", "HEAD", "DELETE", "POST"):
            return None  # bucket-level calls are the control plane
        operation = f"{method} object"
    attempt = SDK_ATTEMPT.search(environ.get("HTTP_AMZ_SDK_REQUEST", ""))
    return Request(
        service=service,
        operation=operation,
        from_function=LINEAGE in environ.get("HTTP_X_AMZN_TRACE_ID", ""),
        sdk_attempt=int(attempt.group(1)) if attempt else 1,
    )


def _form_action(environ: dict[str, Any]) -> str:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)  # moto reads it next
    action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
    if not action:
        action = parse_qs(environ.get("QUERY_STRING", "")).get("Action", [""])[0]
    return action


def error_response(service: Service, fault: Fault) -> tuple[int, list[tuple[str, str]], bytes]:
    """The fault in the service's own protocol (JSON 1.0 for DynamoDB, query XML for SNS, REST XML
    for S3), so that botocore parses the code as it would from AWS."""
    request_id = str(uuid.uuid4())
    if service is Service.DYNAMODB:
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{fault.code}", "message": fault.message})
        headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-RequestId", request_id)]
    elif service is Service.SNS:
        kind = "Receiver" if fault.status >= 500 else "Sender"
        body = (
            '<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
            f"<Error><Type>{kind}</Type><Code>{fault.code}</Code><Message>{fault.message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
    else:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{fault.code}</Code><Message>{fault.message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
    return fault.status, headers, body.encode()


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.plan = FaultPlan()
        self._rng = random.Random(0)
        self.stats = FaultStats()

    def set_plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self.plan = plan
            self._rng = random.Random(plan.seed)

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = FaultStats()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.stats.to_dict(), "plan": asdict(self.plan)}

    def decide(self, request: Request) -> Fault | None:
        """Count the request; the fault to answer it with, if the plan draws one."""
        if not request.from_function:
            return None
        name = request.service.value
        with self._lock:
            self.stats.requests[name] = self.stats.requests.get(name, 0) + 1
            if request.sdk_attempt > 1:
                self.stats.sdk_retries[name] = self.stats.sdk_retries.get(name, 0) + 1
            if self._rng.random() >= self.plan.fraction_of(request.service):
                return None
            fault = self._rng.choice(FAULTS[request.service])
            key = f"{name}:{fault.code}"
            self.stats.injected[key] = self.stats.injected.get(key, 0) + 1
            return fault

    def intercept(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """The error answer for this request, or None to let it through."""
        request = classify(environ)
        if request is None:
            return None
        fault = self.decide(request)
        return error_response(request.service, fault) if fault else None
