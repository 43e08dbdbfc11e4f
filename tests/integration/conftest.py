"""The local cloud for the integration tests: one `python -m trainer.local.cloud` process whose
execution environments run the image's own Python environment (3.12, built from requirements.lock
as tests/support/imageenv.py builds it), and stacks provisioned in it through the AWS APIs."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cloud import REGION, RETRY_DELAY_S, aws, cloud_args_for, subscribe_queue
from tests.support.imageenv import ImageEnv, build
from tests.support.processes import descendants, still_running
from trainer.local.cloud import CloudProcess
from trainer.local.cloud_runner import aws_environment
from trainer.local.provision import provision_stack


@pytest.fixture(scope="session")
def cloud_image() -> Iterator[ImageEnv]:
    env = build()
    # Test-only handlers beside the trainer package (the image itself never contains them).
    shutil.copy(Path(__file__).with_name("functions.py"), env.task_root / "lnn_test_functions.py")
    yield env
    shutil.rmtree(env.root, ignore_errors=True)


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
    url = subscribe_queue(stack["SNS_TOPIC_ARN"], f"{function}-messages")
    return {**stack, "MESSAGES_QUEUE_URL": url}
