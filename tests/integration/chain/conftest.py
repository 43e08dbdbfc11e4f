"""The chain tests' stack: provisioned in the local cloud, its trainer events held for the tests to
deliver (tests/integration/chain/chain_helpers.py), removed at the end of the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.chain import ChainStack, new_stack


@pytest.fixture(scope="module")
def stack(cloud, cloud_env) -> Iterator[ChainStack]:
    # A short completion lease: a crash injected inside a completion is waited out quickly.
    chain_stack = new_stack(cloud, HANDOFF_CLAIM_TTL_S="1")
    yield chain_stack
    chain_stack.remove()
