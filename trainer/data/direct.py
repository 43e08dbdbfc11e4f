"""A data-parallel run's training set read by its workers straight from the dataset object in S3.

When the file keeps `train_set_x` as it is (one contiguous run of bytes, no compression or filter),
its values travel raw (uint8: the one narrow integer the cache stores, normalised by each worker)
and the normalisation needs no statistics of them, the launch does not read those bytes at all: it
records where they lie in the object, pinned to the object's ETag, and each worker reads its block
of micro-shards with one ranged GET. The launch's own serial read and write of the whole set, which
no number of workers shortens, is gone. `why_not` decides; everything here but `PinnedObject`'s
reads is pure.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

# Statistics from the dtype alone (trainer.data.normalize.fit), never from the values.
NORMALIZATIONS = ("auto", "none")
# The one narrow integer type the cache stores (trainer.stores.codec): what the cache path would
# carry raw, examples first, and so what a worker may take raw from the file instead.
RAW_DTYPE = np.dtype(np.uint8).str


class RangedObjects(Protocol):
    """The blob store's ranged reads (trainer.stores.blob_store.S3BlobStore)."""

    def head(self, bucket: str, key: str) -> tuple[int, str, str | None]: ...
    def read_range(self, bucket: str, key: str, start: int, stop: int, etag: str) -> bytes: ...


@dataclass(frozen=True)
class Stored:
    """How a file keeps train_set_x: where its bytes start (None: nowhere yet, or unknown), its
    shape and dtype, and whether they lie there as they are, examples first."""

    offset: int | None
    shape: tuple[int, ...]
    dtype: str
    plain: bool  # one contiguous run of the values in C order, neither compressed nor filtered


@dataclass(frozen=True)
class Place:
    """Where a direct run's training examples lie: the object pinned by its ETag (and the version
    the launch read, for the record: reading by version needs s3:GetObjectVersion, and a pinned
    ETag already refuses any other object), and x_train's rows from `offset` on."""

    bucket: str
    key: str
    etag: str
    version_id: str | None
    offset: int
    rows: int
    row_bytes: int
    dtype: str

    def byte_range(self, lo: int, hi: int) -> tuple[int, int]:
        """[start, stop) of examples lo..hi-1 in the object."""
        if not 0 <= lo <= hi <= self.rows:
            raise ValueError(f"examples {lo}..{hi} are not within the {self.rows} stored")
        return self.offset + lo * self.row_bytes, self.offset + hi * self.row_bytes

    def rows_of(self, data: bytes, lo: int, hi: int) -> np.ndarray:
        """Examples lo..hi-1 as the cache path holds them: raw values, examples first."""
        start, stop = self.byte_range(lo, hi)
        if len(data) != stop - start:
            raise ValueError(f"s3://{self.bucket}/{self.key} answered {len(data)} bytes for a range of {stop - start}")
        dtype = np.dtype(self.dtype)
        return np.frombuffer(data, dtype=dtype).reshape(hi - lo, self.row_bytes // dtype.itemsize)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Place:
        malformed = "the run's record of its training set's place is malformed"
        try:
            data = json.loads(text)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"{malformed} ({exc})") from exc
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            raise ValueError(malformed)
        place = cls(**data)
        ints = (place.offset, place.rows, place.row_bytes)
        texts = (place.bucket, place.key, place.etag)
        if (
            any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in ints)
            or any(not isinstance(t, str) or not t for t in texts)
            or not (place.version_id is None or isinstance(place.version_id, str))
            or place.dtype != RAW_DTYPE
        ):
            raise ValueError(malformed)
        return place

    def mismatch(self, examples: int, features: int) -> str | None:
        """Why this place cannot hold a run's training set of `examples` rows of `features` values
        (None: it can): a record that disagrees with the run's configuration names other bytes."""
        row_bytes = features * np.dtype(self.dtype).itemsize
        if (self.rows, self.row_bytes) != (examples, row_bytes):
            return f"it names {self.rows} examples of {self.row_bytes} bytes, but the run has {examples} of {row_bytes}"
        return None


def request_allows(source: object, normalize: str, validation_fraction: float, workers: int) -> str | None:
    """Why the request's own fields keep its training set on the cache path (None: they do not)."""
    if workers < 2:
        return "one trainer (the chain) reads the whole set"
    if not isinstance(source, str) or not source.startswith("s3://"):
        return "the dataset is no S3 object"
    if normalize not in NORMALIZATIONS:
        return f"normalize {normalize!r} needs statistics of the training set's values"
    if validation_fraction:
        return "validation_fraction carves held-out examples out of the training set"
    return None


def file_allows(stored: Stored | None) -> str | None:
    """Why the file's train_set_x must go through the cache (None: the workers may read it)."""
    if stored is None:
        return "the file is neither .h5 nor .npz"
    if stored.dtype != RAW_DTYPE:
        return f"train_set_x is {stored.dtype}, not uint8: its values are normalised at launch"
    if not stored.plain or stored.offset is None:
        return "train_set_x is not stored as one uncompressed, contiguous run of bytes"
    if len(stored.shape) < 2 or stored.shape[0] == 0:
        return "train_set_x has no examples of features"
    return None


def why_not(
    source: object, stored: Stored | None, normalize: str, validation_fraction: float, workers: int
) -> str | None:
    """The one rule: None when the workers read their micro-shards from the object, else why not."""
    return request_allows(source, normalize, validation_fraction, workers) or file_allows(stored)


def place_of(stored: Stored, bucket: str, key: str, etag: str, version_id: str | None) -> Place:
    assert stored.offset is not None
    rows = stored.shape[0]
    row_bytes = int(np.prod(stored.shape[1:], dtype=np.int64)) * np.dtype(stored.dtype).itemsize
    return Place(bucket, key, etag, version_id, stored.offset, rows, row_bytes, stored.dtype)


class ShortRead(Exception):
    """A ranged read answered other than the bytes asked for, of an object whose length is known.
    No OSError: zipfile takes one from a seek or read for a file too short to be an archive."""


class PinnedObject(io.RawIOBase):
    """An S3 object as a seekable, read-only file, read by ranges pinned to its ETag: the launch
    reads a file's metadata, labels and test set this way, and never the bytes it skips. Every GET
    costs a round trip, so reads are gathered: a small read at a new place (HDF5's and zip's
    metadata) fetches the BLOCK from there on; reads that follow on from the last one (zip's members,
    read piece by piece) fetch ahead, twice as far each time, up to AHEAD_MAX bytes past what was
    asked; a large read is one GET of what it asks. The last KEPT fetches are kept and serve any
    read they cover."""

    BLOCK = 1 << 18
    AHEAD_MAX = 8 << 20
    KEPT = 8

    def __init__(self, objects: RangedObjects, bucket: str, key: str, size: int, etag: str):
        super().__init__()
        self.objects, self.bucket, self.key, self.size, self.etag = objects, bucket, key, size, etag
        self.position = 0
        self.fetched = 0  # bytes read from S3
        self.gets = 0
        self._pieces: list[tuple[int, bytes]] = []  # (start, bytes) of the last fetches, newest last
        self._last_stop = -1
        self._ahead = self.BLOCK

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.position = base + offset
        return self.position

    def _kept(self, start: int, stop: int) -> memoryview | None:
        for first, piece in reversed(self._pieces):
            if first <= start and stop <= first + len(piece):
                return memoryview(piece)[start - first : stop - first]
        return None

    def _fetch(self, start: int, stop: int) -> bytes:
        self.fetched += stop - start
        self.gets += 1
        piece = self.objects.read_range(self.bucket, self.key, start, stop, self.etag)
        if len(piece) != stop - start:
            raise ShortRead(f"s3://{self.bucket}/{self.key} answered {len(piece)} bytes for bytes {start}..{stop - 1}")
        self._pieces = [*self._pieces[1 - self.KEPT :], (start, piece)]
        return piece

    def _read(self, start: int, stop: int) -> bytes | memoryview:
        following = start == self._last_stop
        if not following:  # a new stream of reads starts ahead by a block again
            self._ahead = self.BLOCK
        kept = self._kept(start, stop)
        if kept is not None:
            return kept
        if following:
            end = max(stop, start + self._ahead)
            self._ahead = min(2 * self._ahead, self.AHEAD_MAX)
        elif stop - start < self.BLOCK:  # a small read: the block from it on (what a header precedes)
            end = start + self.BLOCK
        else:
            end = stop
        return memoryview(self._fetch(start, min(self.size, end)))[: stop - start]

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        stop = min(self.size, self.position + len(out))
        if stop <= self.position:
            return 0
        wanted = stop - self.position
        out[:wanted] = self._read(self.position, stop)
        self._last_stop = self.position = stop
        return wanted
