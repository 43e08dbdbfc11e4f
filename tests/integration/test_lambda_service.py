"""The local Lambda service, driven through the AWS SDK as a user's code drives AWS Lambda: Invoke
is executed by real `python -m awslambdaric` processes configured by the control-plane calls."""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
import time
import urllib.error

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.support.chain import wait_for
from tests.support.cloud import REGION, aws, cloud_args_for, invoke, make_function, run_item, wait_for_status
from tests.support.processes import command_line, descendants, still_running
from tests.support.requests import moons
from trainer.local.cloud import CloudProcess
from trainer.local.cloud_runner import aws_environment
from trainer.local.fleet import PINNED_X86_64
from trainer.local.lambda_service import Chaos
from trainer.local.provision import provision_stack

SMALL_RUN = moons((8, 1), ("relu", "sigmoid"), epochs=5, learning_rate=0.5, seed=7, chain="per_step")


def failure_queue(cloud_env) -> tuple[str, str]:
    sqs = aws("sqs", cloud_env)
    url = sqs.create_queue(QueueName=f"dlq-{secrets.token_hex(3)}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def receive(cloud_env, url: str, count: int, timeout_s: float = 60) -> list[dict]:
    sqs, got = aws("sqs", cloud_env), []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            got.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return got


def test_the_configuration_decides_how_the_function_runs(cloud_env) -> None:
    name = make_function(cloud_env, "describe", timeout=7, env={"GREETING": "hello"}, memory=512)
    resp, body = invoke(cloud_env, name, {"x": 1})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp
    assert resp["ExecutedVersion"] == "$LATEST"
    assert body["event"] == {"x": 1}
    assert body["greeting"] == "hello" and int(body["memory_mb"]) == 512 and body["function_name"] == name
    assert 5000 < body["remaining_ms"] <= 7000  # the deadline is the function's timeout
    assert "Lineage=" in body["trace"]  # the X-Ray header Lambda hands the runtime
    # A configuration change reaches the next invocation (a new environment), as on AWS.
    aws("lambda", cloud_env).update_function_configuration(
        FunctionName=name, Environment={"Variables": {"GREETING": "changed"}}
    )
    _, again = invoke(cloud_env, name, {})
    assert again["greeting"] == "changed" and again["pid"] != body["pid"]


def test_an_environment_has_the_variables_folder_and_path_python_m_awslambdaric_would_give(cloud, cloud_env) -> None:
    """Environments are forked from a fork server that imported their libraries (forkserver.py): what
    the handler sees must still be what `python -m awslambdaric <handler>` would have given it."""
    name = make_function(cloud_env, "describe", env={"GREETING": "hello", "OPENBLAS_CORETYPE": "Haswell"})
    _, body = invoke(cloud_env, name, {})
    [listed] = cloud.environments(name)
    given = listed["environment"]
    assert listed["pid"] == body["pid"] and given["GREETING"] == "hello"
    # Exactly its variables (the runtime adds the invocation's trace id), none of its fork server's.
    assert {k: v for k, v in body["environ"].items() if k != "_X_AMZN_TRACE_ID"} == given
    assert body["cwd"] == given["LAMBDA_TASK_ROOT"] == body["sys_path"][0]
    assert body["argv"][1:] == ["lnn_test_functions.describe"]
    assert body["argv"][0].endswith(os.path.join("awslambdaric", "__main__.py"))
    # A second function with other start-up variables is forked elsewhere, with its own.
    other = make_function(cloud_env, "describe", env={"OPENBLAS_CORETYPE": "Sandybridge"})
    _, second = invoke(cloud_env, other, {})
    assert second["environ"]["OPENBLAS_CORETYPE"] == "Sandybridge" and "GREETING" not in second["environ"]


def test_warm_reuse_and_a_new_environment_when_all_are_busy(cloud_env) -> None:
    name = make_function(cloud_env, "sleep")
    _, first = invoke(cloud_env, name, {"seconds": 0})
    _, second = invoke(cloud_env, name, {"seconds": 0})
    assert first["pid"] == second["pid"]  # warm
    results: list[dict] = []
    threads = [
        threading.Thread(target=lambda: results.append(invoke(cloud_env, name, {"seconds": 1})[1])) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r["pid"] for r in results}) == 2  # both busy at once: two environments


def test_deleting_a_function_ends_its_execution_environments(cloud_env) -> None:
    """Idle ones at once, a busy one when its invocation ends: nothing of a deleted function runs."""
    name = make_function(cloud_env, "sleep", timeout=30)
    _, warm = invoke(cloud_env, name, {"seconds": 0})
    busy: list[dict] = []
    thread = threading.Thread(target=lambda: busy.append(invoke(cloud_env, name, {"seconds": 8})[1]))
    thread.start()
    time.sleep(0.5)  # the warm environment is taken: the next invocation starts a second one
    _, idle = invoke(cloud_env, name, {"seconds": 0})
    assert idle["pid"] != warm["pid"] and thread.is_alive()
    aws("lambda", cloud_env).delete_function(FunctionName=name)
    assert still_running({idle["pid"]}) == []
    assert still_running({warm["pid"]}, grace_s=0.5) == [warm["pid"]]  # still busy
    thread.join()
    assert busy == [{"pid": warm["pid"], "slept": 8, "tag": None}]  # the invocation finished normally
    assert still_running({warm["pid"]}) == []
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        invoke(cloud_env, name, {"seconds": 0})


def test_a_function_error_comes_back_as_aws_returns_it(cloud_env) -> None:
    name = make_function(cloud_env, "fail")
    resp, body = invoke(cloud_env, name, {"tag": "sync"})
    assert resp["StatusCode"] == 200 and resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "RuntimeError" and body["errorMessage"] == "failing on purpose: sync"


def test_past_its_timeout_the_environment_is_killed_and_the_invocation_fails(cloud, cloud_env) -> None:
    name = make_function(cloud_env, "sleep", timeout=1)
    _, warm = invoke(cloud_env, name, {"seconds": 0})  # the environment the next invocation reuses
    started = time.monotonic()
    resp, body = invoke(cloud_env, name, {"seconds": 30})
    elapsed = time.monotonic() - started
    assert resp["FunctionError"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in body["errorMessage"]
    assert elapsed < 10
    assert still_running({warm["pid"]}) == []  # the timed-out environment's process is gone
    _, after = invoke(cloud_env, name, {"seconds": 0})  # a fresh environment serves the next one
    assert after["slept"] == 0 and after["pid"] != warm["pid"]


def test_past_its_memory_size_the_environment_is_killed_and_the_invocation_fails(cloud_env) -> None:
    name = make_function(cloud_env, "allocate", timeout=10, memory=128)
    _, fits = invoke(cloud_env, name, {"mib": 32})
    resp, body = invoke(cloud_env, name, {"mib": 256, "hold_s": 3})
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")
    assert still_running({fits["pid"]}) == []  # the environment that passed its memory size is gone
    _, after = invoke(cloud_env, name, {"mib": 32})
    assert after["pid"] != fits["pid"]


def test_bad_input_is_answered_as_aws_answers_it(cloud_env) -> None:
    lam = aws("lambda", cloud_env)
    with pytest.raises(ClientError) as unknown:
        lam.invoke(FunctionName="no-such-function", Payload=b"{}")
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "Function not found" in str(unknown.value)
    name = make_function(cloud_env, "describe")
    with pytest.raises(ClientError) as malformed:
        lam.invoke(FunctionName=name, Payload=b"{not json")
    assert malformed.value.response["Error"]["Code"] == "InvalidRequestContentException"
    big = json.dumps({"blob": "x" * (6 * 1024 * 1024)}).encode()
    with pytest.raises(ClientError) as too_big:
        lam.invoke(FunctionName=name, Payload=big)
    assert too_big.value.response["Error"]["Code"] == "RequestTooLargeException"
    async_big = json.dumps({"blob": "x" * (1024 * 1024)}).encode()
    with pytest.raises(ClientError) as too_big_async:
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=async_big)
    assert too_big_async.value.response["Error"]["Code"] == "RequestTooLargeException"
    just_fits = json.dumps({"blob": "x" * (1024 * 1024 - 100)}).encode()
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=just_fits)["StatusCode"] == 202


def test_an_async_event_is_retried_then_sent_to_the_on_failure_destination(cloud, cloud_env) -> None:
    name = make_function(cloud_env, "fail")
    url, arn = failure_queue(cloud_env)
    aws("lambda", cloud_env).put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=1, DestinationConfig={"OnFailure": {"Destination": arn}}
    )
    resp, _ = invoke(cloud_env, name, {"tag": "async"}, "Event")
    assert resp["StatusCode"] == 202
    (record,) = receive(cloud_env, url, 1)
    assert record["version"] == "1.0"
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2  # one attempt + MaximumRetryAttempts
    assert record["requestContext"]["functionArn"].endswith(f"function:{name}:$LATEST")
    assert record["requestPayload"] == {"tag": "async"}
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorMessage"] == "failing on purpose: async"


def test_chaos_mode_duplicates_kills_and_retries_with_counts(cloud, cloud_env) -> None:
    name = make_function(cloud_env, "sleep")
    url, arn = failure_queue(cloud_env)
    aws("lambda", cloud_env).put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=2, DestinationConfig={"OnFailure": {"Destination": arn}}
    )
    cloud.reset_stats()
    cloud.set_chaos(Chaos(seed=3, duplicates=2, kill_probability=0.3, kill_window_s=0.1, max_delay_s=0.05))
    try:
        events = 8
        for tag in range(events):
            assert invoke(cloud_env, name, {"seconds": 0.3, "tag": tag}, "Event")[0]["StatusCode"] == 202
        cloud.wait_idle()
        stats = cloud.stats()
    finally:
        cloud.set_chaos(Chaos())
    assert stats["events_accepted"] == events and stats["duplicate_copies"] == events
    assert stats["kills"] > 0 and stats["retries"] >= stats["kills"] - stats["destination_records"]
    assert stats["deliveries"] == 2 * events + stats["retries"]
    assert stats["overlapping_deliveries"] > 0 and stats["max_concurrent_copies"] == 2
    # Every copy that exhausted its attempts left a destination record; none other did.
    assert len(receive(cloud_env, url, stats["destination_records"], timeout_s=5)) == stats["destination_records"]
    shown = ("deliveries", "duplicate_copies", "overlapping_deliveries", "kills", "retries", "destination_records")
    print(f"\n[chaos] {json.dumps({k: stats[k] for k in shown})}")


def test_a_training_chain_runs_through_the_lambda_api(cloud, cloud_env, stack) -> None:
    cloud.reset_stats()
    resp, launched = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], SMALL_RUN)
    assert "FunctionError" not in resp, launched
    item = wait_for_status(cloud_env, stack["TABLE_NAME"], launched["run_id"])
    assert item["status"] == "SUCCEEDED", item
    cloud.wait_idle()
    stats = cloud.stats()
    assert stats["events_accepted"] == launched["total_steps"]  # one async hand-off per step
    assert stats["deliveries"] == launched["total_steps"] and stats["function_errors"] == 0
    start = stats["environment_start_s"]
    print(f"\n[cloud] environments started {start['count']}, start-up mean {start['mean']} s, max {start['max']} s")


def test_without_the_recursion_setting_a_training_chain_dies_at_16_hops(cloud, cloud_env) -> None:
    # A stack of its own: the shared ones allow the chain's recursion, as the project's stack does.
    stack = provision_stack("rec" + secrets.token_hex(3), trainer_memory_mb=2048, allow_recursion=False)
    resp, launched = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], SMALL_RUN)
    assert "FunctionError" not in resp, launched
    (record,) = receive(cloud_env, stack["FAILURE_QUEUE_URL"], 1)
    assert record["requestContext"]["condition"] == "RecursiveInvocationException"
    # Launch is hop 1, so the trainer ran hops 2..16: 15 steps, seq 0..14, before Lambda stopped it.
    assert record["requestPayload"]["seq"] == 15
    item = run_item(cloud_env, stack["TABLE_NAME"], launched["run_id"])
    assert item["status"] == "RUNNING" and int(item["last_seq"]) == 14


def test_at_the_reserved_concurrency_a_sync_invoke_is_throttled(cloud, cloud_env) -> None:
    from botocore.config import Config

    name = make_function(cloud_env, "sleep")
    aws("lambda", cloud_env).put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    lam = boto3.client(
        "lambda",
        endpoint_url=cloud_env["AWS_ENDPOINT_URL"],
        region_name=REGION,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    busy = threading.Thread(target=lambda: lam.invoke(FunctionName=name, Payload=b'{"seconds": 2}'))
    busy.start()
    try:
        # The first holds the one unit from its environment's start (listed from then) to its end,
        # two seconds into its invocation: a fixed pause could end before a busy machine started it.
        wait_for(lambda: cloud.environments(name), what="the first invocation's environment")
        with pytest.raises(ClientError) as throttled:
            lam.invoke(FunctionName=name, Payload=b'{"seconds": 0}')
    finally:
        busy.join()
        # This is the session's cloud: a reservation left behind takes its unit from every later
        # test's share of the account's 4 (the data-parallel tests run four workers at once).
        aws("lambda", cloud_env).delete_function_concurrency(FunctionName=name)
    assert throttled.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_the_account_limit_is_shared_by_the_functions_without_a_reservation(cloud_image, tmp_path) -> None:
    """An account limit of 3, of which function `reserved` reserves 1: two functions without a
    reservation, one invocation each, use up the other 2 between them, so a third invocation of
    either is throttled, while `reserved` still runs on its own share."""
    from botocore.config import Config

    args = (*cloud_args_for(cloud_image), "--concurrency", "3")
    with (
        CloudProcess(args=args, log_path=tmp_path / "cloud.log") as process,
        aws_environment(process.aws_env) as env,
    ):
        first, second, reserved = (make_function(env, "sleep", timeout=30) for _ in range(3))
        aws("lambda", env).put_function_concurrency(FunctionName=reserved, ReservedConcurrentExecutions=1)
        lam = boto3.client(
            "lambda",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=REGION,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )
        for name in (first, second):
            invoke(env, name, {"seconds": 20}, invocation_type="Event")
        wait_for(lambda: process.stats()["in_flight"] == 2, what="one invocation of each function")
        with pytest.raises(ClientError) as throttled:
            lam.invoke(FunctionName=first, Payload=b'{"seconds": 0}')
        assert throttled.value.response["Error"]["Code"] == "TooManyRequestsException"
        resp = lam.invoke(FunctionName=reserved, Payload=b'{"seconds": 0, "tag": "own share"}')
        assert json.loads(resp["Payload"].read())["tag"] == "own share"


def test_an_event_older_than_its_maximum_age_is_dropped_to_the_destination(tmp_path) -> None:
    """In-process: an event whose age is past MaximumEventAgeInSeconds is not run (no environment
    starts) and goes to the on-failure destination as EventAgeExceeded."""
    from trainer.local.lambda_service import AsyncEvent, FunctionConfig, LambdaService, Runtime

    config = FunctionConfig(
        name="f",
        arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        handler="lnn_test_functions.sleep",
        environment=(),
        timeout_s=3,
        memory_mb=128,
        max_event_age_s=60,
        on_failure="arn:aws:sqs:us-east-1:123456789012:q",
    )
    sent: list[tuple[str, dict]] = []
    service = LambdaService(
        runtime=Runtime(python="/nonexistent/python", environ={}, cwd=str(tmp_path)),
        configs=lambda _name: config,
        cloud_env={},
        send_to_destination=lambda arn, record: sent.append((arn, record)),
        log_dir=tmp_path,
        account_concurrency=1,
    )
    try:
        old = AsyncEvent("req-1", config.arn, b'{"tag": 1}', "abcd:2", received_at=time.monotonic() - 61)
        service.events.deliver(old)
    finally:
        service.close()
    ((arn, record),) = sent
    assert arn == config.on_failure
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0 and "responsePayload" not in record
    assert record["requestPayload"] == {"tag": 1}
    assert service.stats.environments_started == 0 and service.stats.dropped_age == 1


def test_a_new_image_command_changes_the_handler_that_runs(cloud_env) -> None:
    name = make_function(cloud_env, "sleep")
    _, before = invoke(cloud_env, name, {"seconds": 0, "tag": "a"})
    aws("lambda", cloud_env).update_function_configuration(
        FunctionName=name, ImageConfig={"Command": ["lnn_test_functions.describe"]}
    )
    _, after = invoke(cloud_env, name, {"tag": "b"})
    assert before["tag"] == "a" and after["event"] == {"tag": "b"} and after["pid"] != before["pid"]


def test_held_events_wait_until_delivered_side_by_side_or_dropped(cloud, cloud_env) -> None:
    name = make_function(cloud_env, "sleep", timeout=30)
    cloud.hold(name)
    for tag in ("first", "second"):
        resp, _ = invoke(cloud_env, name, {"seconds": 0.5, "tag": tag}, invocation_type="Event")
        assert resp["StatusCode"] == 202
    time.sleep(0.5)
    held = cloud.held(name)
    assert [e["payload"]["tag"] for e in held] == ["first", "second"]  # nothing ran: held, in order
    delivered = cloud.deliver(held[0]["request_id"], copies=2)
    ends = delivered["copies"]
    assert [e["outcome"] for e in ends] == ["ok", "ok"] and all(e["attempts"] == 1 for e in ends)
    assert len({e["response"]["pid"] for e in ends}) == 2  # the copies ran at once, in two environments
    cloud.drop(held[1]["request_id"])
    assert cloud.held(name) == []
    with pytest.raises(urllib.error.HTTPError, match="404"):
        cloud.deliver(held[1]["request_id"])


def test_a_killed_local_cloud_takes_its_environments_and_caches_with_it(cloud_image, tmp_path) -> None:
    """SIGKILL leaves the cloud no chance to stop anything: its children end with it all the same."""
    args = cloud_args_for(cloud_image)
    process = CloudProcess(args=args, log_path=tmp_path / "cloud.log").start()
    try:
        with aws_environment(process.aws_env) as env:
            provision_stack("kill" + secrets.token_hex(3), trainer_memory_mb=512)  # a redis-server
            name = make_function(env, "sleep", timeout=60)
            invoke(env, name, {"seconds": 0})  # a warm environment: the first event takes it
            for _ in range(2):  # two environments in the middle of an invocation
                invoke(env, name, {"seconds": 60}, invocation_type="Event")
            wait_for(lambda: process.stats()["in_flight"] == 2, what="the events' invocations")

        def commands() -> list[str]:
            return [command_line(pid) for pid in descendants(process.process.pid) - {process.process.pid}]

        # Two environments (the warm one took the first event), forked from their fork server; an
        # environment counts as in flight from the moment it is being started: wait for its fork.
        wait_for(lambda: len(process.environments(name)) == 2, what="two environments running")
        environments = {env["pid"] for env in process.environments(name)}
        children = descendants(process.process.pid) - {process.process.pid}
        assert len(environments) == 2 and environments < children, (environments, commands())
        assert sum("redis-server" in c for c in commands()) == 1 and len(children) == 4, commands()
        os.kill(process.process.pid, signal.SIGKILL)
        assert still_running(children) == []
    finally:
        process.stop()


def test_a_mixed_fleet_gives_new_environments_other_kernels_unless_the_function_pins_one(cloud, cloud_env) -> None:
    """Chaos.hosts places each new environment on the next kind of host: without a pin the
    environments run different OpenBLAS kernels (as OpenBLAS reports) with different bits for the
    cat benchmark's products; with the functions' pin (fleet.PINNED_X86_64) every one runs the
    pinned kernel and gives the same bits."""
    hosts = ("SkylakeX", "Haswell", "Sandybridge")
    lam = aws("lambda", cloud_env)
    seen: dict[str, list[tuple[str, str]]] = {}
    try:
        cloud.reset_stats()
        cloud.set_chaos(Chaos(seed=5, hosts=hosts))
        for pinned in (False, True):
            name = make_function(cloud_env, "blas", timeout=60, env=PINNED_X86_64 if pinned else {}, memory=1024)
            for n in range(len(hosts)):
                _, body = invoke(cloud_env, name, {})
                seen.setdefault(str(pinned), []).append((body["kernel"], body["bits"]))
                # A changed configuration retires the warm environment: the next one is a new
                # environment, on the next host.
                variables = {**(PINNED_X86_64 if pinned else {}), "ROUND": str(n)}
                lam.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
        stats = cloud.stats()
    finally:
        cloud.set_chaos(Chaos())
    unpinned, pinned_runs = seen["False"], seen["True"]
    assert sorted(kernel for kernel, _ in unpinned) == sorted(hosts)
    assert len({bits for _, bits in unpinned}) == len(hosts)  # three kernels, three results
    assert {kernel for kernel, _ in pinned_runs} == {"Haswell"}
    assert len({bits for _, bits in pinned_runs}) == 1
    assert stats["hosts"] == dict.fromkeys(hosts, 2)
    assert stats["kernels"] == {"SkylakeX": 1, "Haswell": 4, "Sandybridge": 1}


def test_a_fleet_of_unknown_hosts_is_refused(cloud) -> None:
    with pytest.raises(ValueError, match=r"unknown host kind\(s\) \['Pentium'\]"):
        Chaos(hosts=("Haswell", "Pentium"))
    with pytest.raises(urllib.error.HTTPError) as refused:
        cloud._call("/_lnn/chaos", {"hosts": ["Pentium"]})
    assert refused.value.code == 400 and "Pentium" in json.loads(refused.value.read())["message"]
    assert cloud.stats()["chaos"]["hosts"] == []


def test_new_chaos_settings_and_handler_fault_plans_keep_the_warm_environment(cloud, cloud_env) -> None:
    """A function's configuration is unchanged by chaos settings and by a handler fault plan, so
    its warm environment stays (as Lambda keeps it) and the next invocation reads the new plan."""
    name = make_function(cloud_env, "describe")
    _, calm = invoke(cloud_env, name, {})
    plan = {"points": [{"target": "tensor_store.commit", "after": True}], "per_event": 1}
    try:
        cloud.set_chaos(Chaos(seed=11))
        cloud.set_handler_faults(name, plan)
        _, faulty = invoke(cloud_env, name, {})
        assert cloud._call(f"/_lnn/handler-faults?function={name}") == {"function": name, "plan": plan}
    finally:
        cloud.set_chaos(Chaos())
        cloud.set_handler_faults(name, None)
    _, cleared = invoke(cloud_env, name, {})
    assert (calm["handler_faults"], faulty["handler_faults"], cleared["handler_faults"]) == ({}, plan, {})
    assert calm["pid"] == faulty["pid"] == cleared["pid"]  # one warm environment throughout


@pytest.mark.parametrize(
    "request_body",
    [{"function": "../etc/passwd", "plan": {}}, {"function": "f", "plan": [1]}, {"plan": {}}],
)
def test_a_handler_fault_plan_names_a_function_and_is_an_object(cloud, request_body) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        cloud._call("/_lnn/handler-faults", request_body)
    assert refused.value.code == 400 and json.loads(refused.value.read())["message"]
    assert cloud._call("/_lnn/handler-faults?function=f")["plan"] is None  # nothing kept
