"""The local cloud for the integration tests: one `python -m trainer.local.cloud` process whose
execution environments run the image's own Python environment (3.12, built from requirements.lock
as tests/support/imageenv.py builds it), and stacks provisioned in it through the AWS APIs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.chain import ChainStack, new_stack
from tests.support.cloud import REGION, RETRY_DELAY_S, calm, cloud_args_for, free_stack
from tests.support.imageenv import ImageEnv, build
from tests.support.processes import descendants, still_running
from trainer.local.cloud import CloudProcess
from trainer.local.cloud_runner import aws_environment


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


# One stack of each kind for the whole session, provisioned once (functions, table, bucket, topic,
# queues and a redis-server each) and handed to each user calm: no chaos, no AWS faults, nothing
# queued or in flight. A test that needs a stack of its own (another memory size, timeout,
# recursion setting) provisions it, and says why.


@pytest.fixture(scope="session")
def chain_stack(cloud: CloudProcess) -> Iterator[ChainStack]:
    """The chain tests' stack (tests/integration/chain): its trainer events held for the tests to
    deliver, a short completion lease (a crash injected inside a completion is waited out
    quickly). Each chain module gets it reset (ChainStack.reset)."""
    with aws_environment(cloud.aws_env, REGION):
        chain = new_stack(cloud, HANDOFF_CLAIM_TTL_S="1")
    yield chain
    with aws_environment(cloud.aws_env, REGION):
        chain.remove()


@pytest.fixture(scope="session")
def shared_stack(cloud: CloudProcess) -> dict[str, str]:
    """A stack as provisioned (the functions' own settings) whose events the Lambda service
    delivers itself, as on AWS."""
    with aws_environment(cloud.aws_env, REGION):
        return free_stack("it")


@pytest.fixture(scope="session")
def shared_chaos_stack(cloud: CloudProcess) -> dict[str, str]:
    """The same with a short completion lease (a killed holder's retry takes over within a second
    or two, not the default 30 s)."""
    with aws_environment(cloud.aws_env, REGION):
        return free_stack("cs", HANDOFF_CLAIM_TTL_S="2")


@pytest.fixture
def stack(cloud: CloudProcess, cloud_env: dict[str, str], shared_stack: dict[str, str]) -> dict[str, str]:
    return calm(cloud, shared_stack)


@pytest.fixture
def chaos_stack(cloud: CloudProcess, cloud_env: dict[str, str], shared_chaos_stack: dict[str, str]) -> dict[str, str]:
    return calm(cloud, shared_chaos_stack)
