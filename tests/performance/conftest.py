"""The bench's tests run its chains as the bench does: on a local cloud of their own, the functions in
execution environments of the image's Python (tests/performance/cloud.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits

from tests.performance import cloud, measuring


# Per module: the cloud and this process's AWS variables pointing at it end with the bench's tests,
# so the tests that run after them in a whole-suite session see the environment they expect.
# On one BLAS thread, here and in the functions, as `OPENBLAS_NUM_THREADS=1 make bench` runs: the
# tests check what the bench reports, not its speed, and a second thread mostly spins waiting for a
# core on a machine the suite keeps busy. threadpoolctl applies it to this process, whose BLAS has
# loaded already; the variable is what the bench reads and hands the functions.
@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[cloud.BenchCloud]:
    log = tmp_path_factory.mktemp("bench-cloud") / "cloud.log"
    with pytest.MonkeyPatch.context() as patch, threadpool_limits(limits=1, user_api="blas"):
        patch.setenv("OPENBLAS_NUM_THREADS", "1")
        with cloud.bench_cloud(measuring.threads_in_use(), log) as bench:
            yield bench
