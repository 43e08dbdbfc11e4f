"""Every data-parallel test on the Lambda service starts with nothing in flight there."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def nothing_in_flight(request: pytest.FixtureRequest) -> None:
    """A run of four workers takes the whole account concurrency of the session's cloud (4), so an
    invocation still running from an earlier test (a stand-by worker, a retry, a test of another
    module that ended first on this process) would throttle this test's launch. Wait it out."""
    if "cloud" in request.fixturenames:
        request.getfixturevalue("cloud").wait_idle()
