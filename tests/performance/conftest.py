"""The bench's test runs the chain in process, on the same local adapters as the chain tests."""

from tests.integration.chain.conftest import stack

__all__ = ["stack"]
