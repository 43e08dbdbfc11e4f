"""In-memory fakes of the ports the handlers use (trainer/ports.py), for unit tests of the rules of
triage, commit, completion and scheduling. tests/contract runs the same cases against each fake and
against the real component (redis-server, moto), so a fake cannot drift from what it stands for."""

from tests.fakes.clock import FakeClock
from tests.fakes.run_store import FakeRunStore
from tests.fakes.services import FakeBlobStore, FakeInvoker, FakeNotifier, fake_services, fake_settings
from tests.fakes.tensor_store import FakeTensorStore

__all__ = [
    "FakeBlobStore",
    "FakeClock",
    "FakeInvoker",
    "FakeNotifier",
    "FakeRunStore",
    "FakeTensorStore",
    "fake_services",
    "fake_settings",
]
