"""Errors that carry a message meant for the user."""

from __future__ import annotations


class RequestError(ValueError):
    """A training request that cannot be accepted; lists every problem found."""

    def __init__(self, problems: list[str], what: str = "training request"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid {what} ({len(problems)} problem(s)):\n{lines}")


class EventError(ValueError):
    """A trainer event that is malformed or does not belong to the run's plan."""


class ChainError(RuntimeError):
    """The chain's stored position contradicts the event: lost state or a foreign event."""


class RunNotFound(LookupError):
    """No run with that id."""


class TooLarge(ValueError):
    """An object larger than the reader's limit, found so before its bytes were read."""

    def __init__(self, size: int, limit: int):
        self.size, self.limit = size, limit
        super().__init__(f"{size} bytes, more than the {limit} bytes allowed")


class ObjectChanged(RuntimeError):
    """An S3 object read by ranges pinned to its ETag is no longer that object (S3 answered 412
    PreconditionFailed): a dataset replaced after the launch that read it."""

    def __init__(self, bucket: str, key: str, etag: str):
        self.bucket, self.key, self.etag = bucket, key, etag
        super().__init__(
            f"dataset s3://{bucket}/{key} changed since the run was launched (the launch read the object "
            f"with ETag {etag}); launch the run again to train on the object as it is now"
        )
