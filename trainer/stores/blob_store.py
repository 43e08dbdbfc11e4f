"""S3: datasets in, trained models and checkpoints out."""

from __future__ import annotations

from trainer.aws import client
from trainer.errors import TooLarge


class S3BlobStore:
    def __init__(self, bucket: str):
        self.bucket = bucket
        self.s3 = client("s3")

    def read(self, bucket: str, key: str, limit: int | None = None) -> bytes:
        """The object's bytes; TooLarge, with nothing read, when it is longer than `limit`."""
        response = self.s3.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        try:
            if limit is not None and response["ContentLength"] > limit:
                raise TooLarge(response["ContentLength"], limit)
            data = body.read() if limit is None else body.read(limit + 1)
        finally:
            body.close()
        if limit is not None and len(data) > limit:  # a length header that lied
            raise TooLarge(len(data), limit)
        return data

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return f"s3://{self.bucket}/{key}"

    def delete(self, key: str) -> None:
        """The object gone (a missing one too: S3's DeleteObject answers the same)."""
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def get(self, key: str) -> bytes:
        return self.read(self.bucket, key)

    def keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            found += [item["Key"] for item in page.get("Contents", [])]
        return found
