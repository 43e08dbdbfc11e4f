"""Tokens signed at a chosen moment: botocore's presigner reads its clock, so the tests set it."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock


@contextmanager
def signing_at(moment: datetime.datetime) -> Iterator[None]:
    """botocore signs as if it were `moment` (UTC) inside the block."""
    naive = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=naive):
        yield
