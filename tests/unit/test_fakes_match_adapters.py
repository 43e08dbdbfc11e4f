"""The fakes of tests/fakes answer every method of the real adapters, called the same way, and
every method the ports (trainer/ports.py) promise: a method added to an adapter, or a parameter
renamed, fails here before a unit test could pass on a fake that no longer stands for it."""

from __future__ import annotations

import inspect

import pytest

from tests.fakes import FakeBlobStore, FakeInvoker, FakeNotifier, FakeRunStore, FakeTensorStore
from trainer import ports
from trainer.invoker import LambdaInvoker
from trainer.notifier import SnsNotifier
from trainer.stores.blob_store import S3BlobStore
from trainer.stores.run_store import DynamoRunStore
from trainer.stores.tensor_store import RedisTensorStore

PAIRS = [
    (RedisTensorStore, FakeTensorStore),
    (DynamoRunStore, FakeRunStore),
    (S3BlobStore, FakeBlobStore),
    (SnsNotifier, FakeNotifier),
    (LambdaInvoker, FakeInvoker),
]
PORTS = {"TensorStore": FakeTensorStore, "RunStore": FakeRunStore, "BlobStore": FakeBlobStore}
PORTS |= {"Notifier": FakeNotifier, "Invoker": FakeInvoker, "SweepStore": FakeRunStore}


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def calling_convention(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    """Names, kinds and defaults: how a caller calls it (annotations aside)."""
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


@pytest.mark.parametrize(("real", "fake"), PAIRS, ids=[real.__name__ for real, _ in PAIRS])
def test_a_fake_has_every_method_of_its_adapter_with_the_same_parameters(real: type, fake: type) -> None:
    mine = public_methods(fake)
    for name, signature in public_methods(real).items():
        assert name in mine, f"{fake.__name__} lacks {real.__name__}.{name}"
        assert calling_convention(mine[name]) == calling_convention(signature), f"{fake.__name__}.{name}"


def test_a_fake_answers_every_method_its_port_promises() -> None:
    protocols = {name: cls for name, cls in vars(ports).items() if isinstance(cls, type) and name in PORTS}
    assert {"TensorStore", "RunStore", "BlobStore", "Notifier", "Invoker"} <= set(protocols)
    for name, protocol in protocols.items():
        promised = public_methods(protocol)
        fake = public_methods(PORTS[name])
        for method, signature in promised.items():
            assert method in fake, f"{PORTS[name].__name__} lacks {name}.{method}"
            assert calling_convention(fake[method]) == calling_convention(signature), f"{name}.{method}"
