"""The local cloud as the integration tests use it: its arguments, clients on its endpoint, and
what a run left there (its item, its messages)."""

from __future__ import annotations

import functools
import json
import secrets
import time
from typing import Any

import boto3

from tests.support.imageenv import ImageEnv
from trainer.aws import client
from trainer.local.cloud import CloudProcess
from trainer.local.faults import FaultPlan
from trainer.local.fleet import PINNED_X86_64
from trainer.local.lambda_service import Chaos
from trainer.local.provision import provision_stack
from trainer.local.waiting import pauses

RETRY_DELAY_S = 0.2  # Lambda waits a minute, then two, between async attempts; the tests do not
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
SETTLED_S = 2.0  # a RUNNING run whose progress has not moved for this long has settled (wait_for_status)


def cloud_args_for(image: ImageEnv) -> tuple[str, ...]:
    """A local cloud running the functions from `image`, the test functions installed beside the
    trainer package (lnn_test_functions.py) allowed besides the project's own handlers."""
    return ("--image-root", str(image.root), "--python", str(image.python), "--allow-handler", "lnn_test_functions.*")


def aws(service: str, cloud_env: dict[str, str]) -> Any:
    return _client(
        service, cloud_env["AWS_ENDPOINT_URL"], cloud_env["AWS_ACCESS_KEY_ID"], cloud_env["AWS_SECRET_ACCESS_KEY"]
    )


@functools.cache
def _client(service: str, endpoint: str, key: str, secret: str) -> Any:
    # One client per cloud and service, its connections kept: a poll then costs a request, not a
    # client's construction as well (boto3 clients may be shared between threads).
    return boto3.client(
        service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key, aws_secret_access_key=secret
    )


def make_function(cloud_env, handler: str, timeout: int = 3, env: dict | None = None, memory: int = 256) -> str:
    name = f"fn-{handler.split('.')[-1]}-{secrets.token_hex(3)}"
    lam = aws("lambda", cloud_env)
    role = f"arn:aws:iam::{ACCOUNT}:role/lnn-test-functions"
    aws("iam", cloud_env).create_role(
        RoleName=f"r-{name}",
        AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}',
    )
    lam.create_function(
        FunctionName=name,
        Role=role.replace("lnn-test-functions", f"r-{name}"),
        PackageType="Image",
        Code={"ImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/test:latest"},
        ImageConfig={"Command": [f"lnn_test_functions.{handler}"]},
        Timeout=timeout,
        MemorySize=memory,
        Environment={"Variables": env or {}},
    )
    return name


def subscribe_queue(topic_arn: str, name: str) -> str:
    """An SQS queue subscribed to the topic (raw delivery): the messages a user would receive."""
    sqs = client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return url


def free_stack(prefix: str, **variables: str) -> dict[str, str]:
    """A stack whose events the Lambda service delivers itself (as on AWS), the trainer's
    `variables` on top of its own, and a queue subscribed to its topic (MESSAGES_QUEUE_URL: the
    messages a user receives)."""
    stack = provision_stack(prefix + secrets.token_hex(3), trainer_memory_mb=2048)
    function = stack["TRAINER_FUNCTION_NAME"]
    if variables:
        lam = client("lambda")
        own = lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
        lam.update_function_configuration(FunctionName=function, Environment={"Variables": {**own, **variables}})
    return {**stack, "MESSAGES_QUEUE_URL": subscribe_queue(stack["SNS_TOPIC_ARN"], f"{function}-messages")}


def calm(cloud: CloudProcess, stack: dict[str, str]) -> dict[str, str]:
    """The cloud calm (no chaos, no AWS faults) and idle, the stack's queues empty: what an earlier
    user of a shared stack left is gone. Its warm environments stay warm, as on Lambda."""
    cloud.set_chaos(Chaos())
    cloud.set_faults(FaultPlan())
    cloud.wait_idle(timeout_s=300)
    sqs = client("sqs")
    for url in (stack["MESSAGES_QUEUE_URL"], stack["FAILURE_QUEUE_URL"]):
        # Received and deleted: SQS allows one PurgeQueue a minute.
        while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in got:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return stack


def retire_environments(function: str) -> None:
    """The function's warm execution environments retire (a configuration change does, as on
    Lambda): its next events start new ones, under the cloud's chaos settings of the moment (a
    mixed fleet's hosts go to new environments only)."""
    lam = client("lambda")
    variables = lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    variables["LNN_COLD_START"] = secrets.token_hex(4)
    lam.update_function_configuration(FunctionName=function, Environment={"Variables": variables})


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
    last, moved_at = None, time.monotonic()
    waits = pauses()
    while time.monotonic() < deadline:
        item = run_item(cloud_env, table, run_id)
        if item["status"] != "RUNNING":
            return item
        if settle:
            if item.get("last_seq") != last:
                last, moved_at = item.get("last_seq"), time.monotonic()
            if time.monotonic() - moved_at >= SETTLED_S:
                return item
        time.sleep(next(waits))
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
            continue  # FAILED: one per chain, keyed by the resume, which the message does not carry
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
