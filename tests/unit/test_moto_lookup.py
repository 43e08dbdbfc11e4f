"""Patch 11 of trainer/local/moto_patched.py: the service a request's host names is looked up once
per host, and the answer is moto's own."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from moto.moto_server import werkzeug_app

from trainer.local import moto_patched

HOSTS = [
    None,
    "moto_api",
    "dynamodb",  # a moto module's own name
    "dynamodb.us-east-1.amazonaws.com",
    "s3.amazonaws.com",
    "bucket.s3.us-east-1.amazonaws.com",
    "lambda.us-east-1.amazonaws.com",
    "127.0.0.1:4566",  # the local endpoint: no service
]


def test_each_host_is_looked_up_once_and_answered_as_moto_answers(monkeypatch) -> None:
    dispatcher = werkzeug_app.DomainDispatcherApplication
    original = dispatcher.get_backend_for_host
    app = dispatcher(create_app=lambda backend: None)
    expected = {host: original(app, host) for host in HOSTS}
    assert expected["dynamodb.us-east-1.amazonaws.com"] == "dynamodb" and expected["127.0.0.1:4566"] is None

    calls: list[Any] = []

    def counted(self: Any, host: str | None) -> Any:
        calls.append(host)
        return original(self, host)

    monkeypatch.setattr(dispatcher, "get_backend_for_host", counted)
    moto_patched._patch_backend_lookup()
    for _ in range(3):
        assert {host: app.get_backend_for_host(host) for host in HOSTS} == expected
    assert sorted(calls, key=str) == sorted(HOSTS, key=str)  # once each, whatever the repeats


def test_the_local_cloud_applies_the_lookup_patch() -> None:
    """apply_patches, what the local cloud and the rehearsal's moto server call, puts the lookup in
    place (in a process of its own: the patches change moto for good)."""
    probe = (
        "from moto.moto_server import werkzeug_app as w\n"
        "from trainer.local import moto_patched\n"
        "before = w.DomainDispatcherApplication.get_backend_for_host\n"
        "moto_patched.apply_patches()\n"
        "print(w.DomainDispatcherApplication.get_backend_for_host is not before)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["True"], out.stderr
