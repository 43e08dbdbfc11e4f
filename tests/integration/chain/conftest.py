"""The chain tests' stack: the session's (tests/integration/conftest.py::chain_stack), its trainer
events held for the tests to deliver, reset to calm for each module."""

from __future__ import annotations

import pytest

from tests.support.chain import ChainStack


@pytest.fixture(scope="module")
def stack(chain_stack: ChainStack, cloud_env: dict[str, str]) -> ChainStack:
    chain_stack.reset()
    return chain_stack
