"""This process's AWS clients pointed at a local cloud: below both the `make up` cloud (up.py) and
the runner that starts or attaches to one (cloud_runner.py), which both need it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def _forget_default_credentials() -> None:
    """boto3's default session keeps the credentials it resolved first; a cloud has a key of its own."""
    import boto3

    boto3.DEFAULT_SESSION = None


@contextmanager
def aws_environment(access: dict[str, str], region: str = "us-east-1") -> Iterator[dict[str, str]]:
    """Point this process's AWS clients at a local cloud (`access`: its AWS_ENDPOINT_URL and its
    key, CloudProcess.aws_env); restored afterwards. A session token of the caller's is set aside:
    the cloud's key has none."""
    values = {**access, "AWS_REGION": region, "AWS_DEFAULT_REGION": region}
    saved = {k: os.environ.get(k) for k in (*values, "AWS_SESSION_TOKEN", "AWS_PROFILE")}
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(values)
    _forget_default_credentials()
    try:
        yield values
    finally:
        _forget_default_credentials()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
