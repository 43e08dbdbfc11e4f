"""The local cloud for the integration tests: one `python -m trainer.local.cloud` process whose
execution environments run the image's own Python environment (3.12, built from requirements.lock
as tests/infra/images builds it), and stacks provisioned in it through the AWS APIs."""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra" / "images"))

from imageenv import ImageEnv, build

from trainer.local.children import running
from trainer.local.cloud import CloudProcess
from trainer.local.cloud_runner import aws_environment
from trainer.local.fleet import PINNED_X86_64
from trainer.local.provision import provision_stack

RETRY_DELAY_S = 0.2  # Lambda waits a minute, then two, between async attempts; the tests do not
REGION = "us-east-1"


def descendants(pid: int) -> set[int]:
    """pid and every process below it."""
    try:
        return {pid} | {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return {pid}


def command_line(pid: int) -> str:
    """A process's command line as one string ('' once it is gone): redis-server rewrites its own
    into a title naming its address."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def still_running(pids: set[int], grace_s: float = 10.0) -> list[int]:
    """The pids still running after a grace period (a killed process with much memory takes a
    moment to exit on a loaded machine); a process truly left behind stays in the list."""
    deadline = time.monotonic() + grace_s
    left = [pid for pid in pids if running(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [pid for pid in left if running(pid)]
    return left


@pytest.fixture(scope="session")
def cloud_image() -> Iterator[ImageEnv]:
    env = build()
    # Test-only handlers beside the trainer package (the image itself never contains them).
    shutil.copy(Path(__file__).with_name("functions.py"), env.task_root / "lnn_test_functions.py")
    yield env
    shutil.rmtree(env.root, ignore_errors=True)


def cloud_args_for(image: ImageEnv) -> tuple[str, ...]:
    """A local cloud running the functions from `image`, the test functions installed beside the
    trainer package (lnn_test_functions.py) allowed besides the project's own handlers."""
    return ("--image-root", str(image.root), "--python", str(image.python), "--allow-handler", "lnn_test_functions.*")


@pytest.fixture(scope="session")
def cloud(cloud_image: ImageEnv, tmp_path_factory) -> Iterator[CloudProcess]:
    log = tmp_path_factory.mktemp("cloud") / "cloud.log"
    process = CloudProcess(
        args=(*cloud_args_for(cloud_image), "--retry-delay", str(RETRY_DELAY_S), "--concurrency", "4"),
        log_path=log,
    )
    seen: set[int] = set()
    with process:
        yield process
        assert process.process is not None
        seen = descendants(process.process.pid)
    # Stopping the cloud stops every execution environment and redis-server it started.
    assert still_running(seen) == []


@pytest.fixture(scope="module")
def cloud_env(cloud: CloudProcess) -> Iterator[dict[str, str]]:
    """This process's AWS clients point at the local cloud (the one endpoint for every service)
    while a module of these tests runs; restored afterwards."""
    with aws_environment(cloud.aws_env, REGION) as values:
        yield values


def aws(service: str, cloud_env: dict[str, str]) -> Any:
    return boto3.client(
        service,
        endpoint_url=cloud_env["AWS_ENDPOINT_URL"],
        region_name=REGION,
        aws_access_key_id=cloud_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=cloud_env["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def stack(cloud_env: dict[str, str]) -> dict[str, str]:
    return provision_stack("it" + secrets.token_hex(3), trainer_memory_mb=2048)


@pytest.fixture
def chaos_stack(cloud_env: dict[str, str], stack: dict[str, str]) -> dict[str, str]:
    """The stack with a short completion lease (a killed holder's retry takes over within a
    second or two, not the default 30 s) and a queue subscribed to its topic."""
    lam = aws("lambda", cloud_env)
    function = stack["TRAINER_FUNCTION_NAME"]
    variables = lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    lam.update_function_configuration(
        FunctionName=function, Environment={"Variables": {**variables, "HANDOFF_CLAIM_TTL_S": "2"}}
    )
    sqs = aws("sqs", cloud_env)
    url = sqs.create_queue(QueueName=f"{function}-messages")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws("sns", cloud_env).subscribe(
        TopicArn=stack["SNS_TOPIC_ARN"], Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    return {**stack, "MESSAGES_QUEUE_URL": url}


def run_item(cloud_env: dict[str, str], table: str, run_id: str) -> dict[str, Any]:
    item = aws("dynamodb", cloud_env).get_item(
        TableName=table, Key={"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "RUN"}}, ConsistentRead=True
    )["Item"]
    return {k: next(iter(v.values())) for k, v in item.items()}


def wait_for_status(
    cloud_env: dict[str, str], table: str, run_id: str, timeout_s: float = 180, settle: bool = False
) -> dict[str, Any]:
    """The run item once it leaves RUNNING (or, with `settle`, once its progress stops moving)."""
    deadline = time.monotonic() + timeout_s
    last, still = None, 0
    while time.monotonic() < deadline:
        item = run_item(cloud_env, table, run_id)
        if item["status"] != "RUNNING":
            return item
        if settle:
            still = still + 1 if item.get("last_seq") == last else 0
            last = item.get("last_seq")
            if still >= 20:
                return item
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} still RUNNING after {timeout_s:.0f} s")


def invoke(cloud_env: dict[str, str], function: str, payload: Any, invocation_type: str = "RequestResponse"):
    resp = aws("lambda", cloud_env).invoke(
        FunctionName=function, InvocationType=invocation_type, Payload=json.dumps(payload).encode()
    )
    body = resp["Payload"].read()
    return resp, (json.loads(body) if body else None)


def assert_sent_once(cloud_env: dict[str, str], table: str, run_id: str, kinds: dict[str, list]) -> None:
    """Each message of a run (kind -> epochs, as messages_by_run gives them) arrived once, or more
    often only where more than one holder of its claim passed the fence right before the publish
    (run_store.fence_notice counts them as `sends`): a holder that vanished after its fence and
    before its 'sent' mark, the one window no record beside SNS can close. A claim merely taken
    over (`claims`) does not excuse a repeat: any other repeat is a defect."""
    items = aws("dynamodb", cloud_env).query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :notice)",
        ExpressionAttributeValues={":pk": {"S": f"RUN#{run_id}"}, ":notice": {"S": "NOTICE#"}},
        ConsistentRead=True,
    )["Items"]
    sends = {tuple(i["sk"]["S"].split("#", 2)[1:]): int(i.get("sends", {"N": "0"})["N"]) for i in items}
    keyed = {"SUCCEEDED": "run", "CANCELLED": "run", "SWEEP_ENDED": "sweep", "SWEEP_CANCELLED": "sweep"}
    for kind, epochs in kinds.items():
        if kind not in keyed and kind != "PROGRESS":
            continue  # FAILED: one per failed step, keyed by the step, which the message does not carry
        for epoch in set(epochs):
            key = keyed.get(kind, f"epoch-{epoch}")
            sent = epochs.count(epoch)
            assert sent <= max(1, sends.get((kind, key), 0)), f"{run_id}: {kind} {key} sent {sent} times, {sends}"


def messages_by_run(cloud_env: dict[str, str], url: str) -> dict[str, dict[str, list]]:
    """The messages in a queue subscribed to the topic, drained: run id -> kind -> epochs."""
    sqs, by_run = aws("sqs", cloud_env), {}
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in got:
            body = json.loads(message["Body"])
            by_run.setdefault(body["run_id"], {}).setdefault(body["kind"], []).append(body.get("epoch"))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return by_run


# A mixed fleet as Lambda's x86_64 fleet has one (trainer.local.fleet): Intel hosts with and
# without AVX-512, and AMD hosts. Without the functions' pin, SkylakeX and Haswell alone give the
# tests' networks different weights.
FLEET = ("SkylakeX", "Haswell", "Zen")


def assert_ran_pinned_on_a_mixed_fleet(stats: dict[str, Any]) -> None:
    """The environments started on at least two kinds of host, and every one ran the functions'
    pinned kernel (the Lambda service's counts)."""
    assert len(stats["hosts"]) >= 2, stats["hosts"]
    assert set(stats["kernels"]) == {PINNED_X86_64["OPENBLAS_CORETYPE"]}, stats["kernels"]
