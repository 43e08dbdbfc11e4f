"""S3: datasets in, trained models and checkpoints out."""

from __future__ import annotations

from trainer.aws import client
from trainer.errors import ObjectChanged, TooLarge


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

    def head(self, bucket: str, key: str) -> tuple[int, str, str | None]:
        """The object's (length, ETag, VersionId or None), its bytes unread."""
        response = self.s3.head_object(Bucket=bucket, Key=key)
        return int(response["ContentLength"]), str(response["ETag"]), response.get("VersionId")

    def read_range(self, bucket: str, key: str, start: int, stop: int, etag: str) -> bytes:
        """Bytes [start, stop) of the object, only while it is still the one with `etag`:
        ObjectChanged when S3 answers 412 (replaced since) or that there is no such key (deleted)."""
        from botocore.exceptions import ClientError

        if stop <= start:
            return b""
        try:
            response = self.s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{stop - 1}", IfMatch=etag)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "NoSuchKey") or status in (404, 412):
                raise ObjectChanged(bucket, key, etag) from exc
            raise
        body = response["Body"]
        try:
            return body.read()
        finally:
            body.close()

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
