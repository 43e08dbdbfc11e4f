"""The bench's tests run its chains as the bench does: on a local cloud of their own, the functions in
execution environments of the image's Python (tests/performance/cloud.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.performance import cloud, measuring


# Per module: the cloud and this process's AWS variables pointing at it end with the bench's tests,
# so the tests that run after them in a whole-suite session see the environment they expect.
@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[cloud.BenchCloud]:
    log = tmp_path_factory.mktemp("bench-cloud") / "cloud.log"
    with cloud.bench_cloud(measuring.threads_in_use(), log) as bench:
        yield bench
