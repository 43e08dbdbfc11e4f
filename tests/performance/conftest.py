"""The bench's tests run its chain in this process (tests/performance/inprocess.py), on the session's
redis-server and moto server."""

from __future__ import annotations

import pytest

from tests.performance import inprocess


@pytest.fixture(scope="session")
def stack(redis_server, aws_env) -> inprocess.BenchStack:
    return inprocess.connect(redis_server)
