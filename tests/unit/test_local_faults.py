"""The local cloud's AWS-side fault injector, without servers: real botocore clients whose requests
are handed to the injector instead of a network, so the test sees what a function's SDK sees of
an injected fault (the error code it parses, whether it retries)."""

from __future__ import annotations

import io
from urllib.parse import urlsplit

import boto3
import botocore.endpoint
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

from trainer.local.faults import FaultInjector, FaultPlan

TRACE = "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0;Lineage=abcd1234:3"


# What the client gets when a request passes: an empty success document in the service's protocol.
PASSED = {
    "dynamodb": b"{}",
    "sns": b"<PublishResponse><PublishResult><MessageId>m</MessageId></PublishResult></PublishResponse>",
    "s3": b"",
}


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = io.BytesIO(body)

    def stream(self, **_: object):
        yield self._body.read()


def wsgi_environ(request) -> dict:
    url = urlsplit(request.url)
    body = request.body or b""
    body = body.encode() if isinstance(body, str) else body.read() if hasattr(body, "read") else bytes(body)
    environ = {
        "REQUEST_METHOD": request.method,
        "PATH_INFO": url.path,
        "QUERY_STRING": url.query,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    for name, value in request.headers.items():
        value = value.decode() if isinstance(value, bytes) else value
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def client(service: str, injector: FaultInjector, seen: list[dict]):
    """A client whose every request the injector answers (or a 200 with an empty document)."""
    # One retry (botocore's max_attempts counts retries): two attempts a call.
    config = Config(retries={"mode": "standard", "max_attempts": 1}, s3={"addressing_style": "path"})
    made = boto3.client(
        service,
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        config=config,
    )

    def send(request, **_):
        environ = wsgi_environ(request)
        seen.append(environ)
        answer = injector.intercept(environ)
        status, headers, body = answer or (200, [], PASSED[service])
        return AWSResponse(request.url, status, dict(headers), _Raw(body))

    made.meta.events.register("before-send", send)
    return made


@pytest.fixture
def in_a_function(monkeypatch) -> None:
    """The variables Lambda gives a function: botocore then sends the trace header with its calls.
    The SDK's backoff is skipped: the test is about which answers it retries, not when."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "trainer")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE)
    monkeypatch.setattr(botocore.endpoint.time, "sleep", lambda _s: None)


def test_every_fault_parses_as_the_services_error_and_retries_as_botocore_decides(in_a_function) -> None:
    injector, seen = FaultInjector(), []
    injector.set_plan(FaultPlan(seed=3, fraction=1.0))
    dynamodb, sns = client("dynamodb", injector, seen), client("sns", injector, seen)
    s3 = client("s3", injector, seen)
    codes: dict[str, set[str]] = {"dynamodb": set(), "sns": set(), "s3": set()}
    for _ in range(30):
        for name, call in (
            ("dynamodb", lambda: dynamodb.get_item(TableName="t", Key={"pk": {"S": "a"}})),
            ("sns", lambda: sns.publish(TopicArn="arn:aws:sns:us-east-1:123456789012:t", Message="m")),
            ("s3", lambda: s3.put_object(Bucket="b", Key="k/1", Body=b"x")),
        ):
            with pytest.raises(ClientError) as raised:
                call()
            codes[name].add(raised.value.response["Error"]["Code"])
    assert codes == {
        "dynamodb": {"ThrottlingException", "ProvisionedThroughputExceededException", "InternalServerError"},
        "sns": {"Throttled", "InternalError"},
        "s3": {"SlowDown", "InternalError"},
    }
    stats = injector.snapshot()
    # Each DynamoDB and S3 call was tried twice (one retry); SNS's Throttled is no
    # throttling code to botocore, so only its InternalError answers were retried.
    assert stats["requests"]["dynamodb"] == stats["requests"]["s3"] == 60
    assert stats["sdk_retries"]["dynamodb"] == stats["sdk_retries"]["s3"] == 30
    throttled = stats["injected"].get("sns:Throttled", 0)
    assert 0 < stats["sdk_retries"]["sns"] < 30 and stats["requests"]["sns"] == 30 + stats["sdk_retries"]["sns"]
    assert stats["injected"].get("sns:InternalError", 0) >= stats["sdk_retries"]["sns"]
    assert throttled + stats["injected"]["sns:InternalError"] == stats["requests"]["sns"]
    assert stats["injected_total"] == sum(stats["requests"].values())
    assert all("HTTP_X_AMZN_TRACE_ID" in environ for environ in seen)


def test_only_the_planned_fraction_of_the_functions_data_plane_fails(in_a_function, monkeypatch) -> None:
    injector, seen = FaultInjector(), []
    injector.set_plan(FaultPlan(seed=5, fraction=0.2, services=("dynamodb",)))
    dynamodb, sns = client("dynamodb", injector, seen), client("sns", injector, seen)
    failed = 0
    for _ in range(200):
        try:
            dynamodb.put_item(TableName="t", Item={"pk": {"S": "a"}})
        except ClientError:
            failed += 1
    for _ in range(20):
        dynamodb.describe_table(TableName="t")
        sns.publish(TopicArn="arn:aws:sns:us-east-1:123456789012:t", Message="m")  # not in the plan's services
    stats = injector.snapshot()
    attempts = stats["requests"]["dynamodb"]
    assert attempts == 200 + stats["sdk_retries"]["dynamodb"]
    assert 0.1 < stats["injected_total"] / attempts < 0.3
    assert failed == pytest.approx(200 * 0.2 * 0.2, abs=12)  # both attempts drawn a fault
    assert stats["requests"]["sns"] == 20 and "sns" not in str(stats["injected"])

    # Outside a function (a person's or a test's own call: no Lineage in the trace) nothing fails.
    monkeypatch.delenv("_X_AMZN_TRACE_ID")
    injector.reset_stats()
    injector.set_plan(FaultPlan(seed=5, fraction=1.0))
    for _ in range(10):
        dynamodb.put_item(TableName="t", Item={"pk": {"S": "a"}})
    assert injector.snapshot()["injected_total"] == 0


def test_a_service_can_have_its_own_fraction(in_a_function) -> None:
    injector, seen = FaultInjector(), []
    injector.set_plan(FaultPlan(seed=9, fraction=0.0, fractions={"sns": 1.0}))
    dynamodb, sns = client("dynamodb", injector, seen), client("sns", injector, seen)
    for _ in range(10):
        dynamodb.get_item(TableName="t", Key={"pk": {"S": "a"}})
        with pytest.raises(ClientError):
            sns.publish(TopicArn="arn:aws:sns:us-east-1:123456789012:t", Message="m")
    injected = injector.snapshot()["injected"]
    assert set(injected) <= {"sns:Throttled", "sns:InternalError"} and sum(injected.values()) >= 10


def test_a_plan_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError):
        FaultPlan(services=("lambda",))
    with pytest.raises(ValueError):
        FaultPlan(fraction=1.5)
    with pytest.raises(ValueError):
        FaultPlan(fractions={"s3": -0.1})
