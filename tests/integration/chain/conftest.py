"""Fixtures for the trainer's integration tests: the local adapters wired to the session servers."""

from __future__ import annotations

import pytest

from trainer.local import runner


@pytest.fixture(scope="session")
def stack(redis_server, aws_env) -> runner.LocalStack:
    local = runner.connect(
        "127.0.0.1",
        redis_server.port,
        redis_server.password,
        redis_tls=getattr(redis_server, "tls", False),
        redis_ca_file=getattr(redis_server, "ca_file", None),
        claim_lease_s=1,  # a crash injected inside a completion is waited out quickly
    )
    return local


@pytest.fixture
def clean_queue(stack: runner.LocalStack) -> runner.LocalStack:
    stack.invoker.queue.clear()
    return stack
