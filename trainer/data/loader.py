"""Datasets in: built-in names, local .h5/.npz files, or s3:// objects.

Only the four expected arrays are read; `.npz` is opened with allow_pickle=False and `.h5` reads
numeric datasets only, so a crafted file cannot make us deserialise objects. A dataset is data
only: an `.h5` array whose bytes live anywhere but in the file itself (external raw storage, a
virtual layout, a link to another file) is refused before anything is read, since HDF5 would read
such bytes from the function's own file system. Sizes are checked before reading: the object's
length, and each array's declared shape times its item size, against the loading function's limit.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from trainer import keys
from trainer.data import direct, normalize
from trainer.data.builtin import BUILTIN
from trainer.errors import ObjectChanged, TooLarge

REQUIRED_KEYS = ("train_set_x", "train_set_y", "test_set_x", "test_set_y")
MAX_DATASET_BYTES = 2 * 1024**3
MAX_ABS_VALUE = 1e30
DATASET_PREFIX = keys.DATASET_PREFIX

# (bucket, key, limit) -> the object's bytes; raises TooLarge past `limit` bytes, before reading them.
BlobReader = Callable[[str, str, int], bytes]
_NPY_HEADER_MAX = 1 << 16  # numpy writes a header of a few hundred bytes; longer ones numpy reads
# The filters h5py writes (gzip, shuffle, checksums, lzf): anything else is not a dataset we made.
_H5_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}


class DatasetError(ValueError):
    """The dataset cannot be used; the message says why."""


def read_limit() -> int:
    """The most bytes a dataset may hold here: MAX_DATASET_BYTES, and on Lambda half the loading
    function's memory (the arrays are read, then normalised into new ones)."""
    memory_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if memory_mb.isdigit():
        return min(MAX_DATASET_BYTES, int(memory_mb) * 1024**2 // 2)
    return MAX_DATASET_BYTES


def parse_s3_uri(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise DatasetError(f"dataset URI {uri!r} must look like s3://bucket/key.h5")
    return bucket, key


def key_problem(key: str, prefix: str) -> str | None:
    """Why an object key is no dataset upload under `prefix` (None when it is one)."""
    # Dot segments are refused too: some clients resolve them, which would lead out of the prefix.
    if not key.startswith(prefix) or key == prefix or any(part in (".", "..") for part in key.split("/")):
        return f"dataset key {key!r} is not under {prefix!r}, the bucket's prefix for datasets"
    return None


def s3_source(source: str, allowed_bucket: str | None, prefix: str | None) -> tuple[str, str]:
    """An s3:// dataset's (bucket, key), refused outside the configured bucket and prefix."""
    bucket, key = parse_s3_uri(source)
    if allowed_bucket is not None and bucket != allowed_bucket:
        raise DatasetError(f"dataset bucket {bucket!r} is not the configured bucket {allowed_bucket!r}")
    if prefix is not None and (problem := key_problem(key, prefix)):
        raise DatasetError(problem)
    return bucket, key


def place_problem(place: direct.Place, allowed_bucket: str | None, prefix: str | None, config: Any) -> str | None:
    """Why a run's record of its training examples' place (read back from the cache) cannot be the
    launch's (None: it can): an object no dataset may be, or rows other than the run's (`config`:
    its RunConfig, `examples` and input `sizes[0]`)."""
    malformed = "the run's record of its training set's place is malformed"
    try:
        where = s3_source(place.uri, allowed_bucket, prefix)
    except DatasetError as exc:
        return f"{malformed}: {exc}"
    if where != (place.bucket, place.key):  # a bucket holding "/" reads as another bucket and key
        return f"{malformed}: it names bucket {place.bucket!r} and key {place.key!r}"
    mismatch = place.mismatch(config.examples, config.sizes[0])
    return None if mismatch is None else f"{malformed}: {mismatch}"


def _read_bytes(
    source: str, read_blob: BlobReader | None, allowed_bucket: str | None, prefix: str | None, limit: int
) -> tuple[bytes | Path, str]:
    """The object's bytes, or a local file's path: the readers open a file themselves, which saves
    reading it whole into memory first (and h5py reads a file faster than a stream of bytes)."""
    if source.startswith("s3://"):
        bucket, key = s3_source(source, allowed_bucket, prefix)
        if read_blob is None:
            raise DatasetError("s3:// datasets need MODEL_BUCKET and S3 access configured")
        try:
            return read_blob(bucket, key, limit), key
        except TooLarge as exc:
            raise DatasetError(f"dataset {source!r} is {exc.size} bytes, more than the {limit} bytes allowed") from exc
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        # On Lambda the only datasets are the stack's bucket and the built-ins, never the
        # function's own file system.
        raise DatasetError(f"dataset {source!r} must be an s3:// URI in the configured bucket or a built-in name")
    path = Path(source)
    if not path.is_file():
        raise DatasetError(f"dataset {source!r} is neither a built-in ({', '.join(BUILTIN)}) nor an existing file")
    if path.stat().st_size > limit:
        raise DatasetError(f"dataset {source!r} is larger than the {limit} bytes allowed")
    return path, path.name


def _opened(blob: bytes | Path) -> io.BytesIO | Path:
    return io.BytesIO(blob) if isinstance(blob, bytes) else blob


def _declared(key: str, shape: tuple[int, ...], itemsize: int, limit: int) -> int:
    """An array's size as its header declares it, refused past `limit` before a byte is read."""
    size = int(np.prod(shape, dtype=object)) * itemsize
    if size > limit:
        raise DatasetError(
            f"dataset key {key!r} declares shape {tuple(shape)} of {size} bytes, more than the {limit} bytes allowed"
        )
    return size


def _within(sizes: list[int], limit: int) -> None:
    if sum(sizes) > limit:
        raise DatasetError(f"dataset arrays declare {sum(sizes)} bytes together, more than the {limit} bytes allowed")


def _plain_h5_dataset(handle: Any, key: str) -> Any:
    """The file's own numeric array `key`: a hard link to a dataset whose bytes are in the file
    (contiguous, chunked or compact; filters h5py writes), or DatasetError naming what it is."""
    import h5py
    from h5py import h5d

    link = handle.get(key, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise DatasetError(f"dataset key {key!r} is a {type(link).__name__}, not an array stored in the file")
    node = handle[key]
    if not isinstance(node, h5py.Dataset) or node.dtype.kind not in "biuf":
        raise DatasetError(f"dataset key {key!r} is not a numeric array")
    plist = node.id.get_create_plist()
    if plist.get_external_count():
        raise DatasetError(f"dataset key {key!r} keeps its data in external files; only data inside the file is read")
    if plist.get_layout() not in (h5d.CONTIGUOUS, h5d.CHUNKED, h5d.COMPACT):
        raise DatasetError(
            f"dataset key {key!r} has a virtual layout (data in other files); only data inside the file is read"
        )
    unexpected = [plist.get_filter(i) for i in range(plist.get_nfilters())]
    unexpected = [
        f"{name.decode(errors='replace')} ({code})" for code, _, _, name in unexpected if code not in _H5_FILTERS
    ]
    if unexpected:
        raise DatasetError(
            f"dataset key {key!r} uses filters {', '.join(unexpected)}; only {', '.join(_H5_FILTERS.values())} are read"
        )
    return node


def _read_h5(blob: bytes | Path, limit: int, keys: tuple[str, ...] = REQUIRED_KEYS) -> dict[str, np.ndarray]:
    import h5py

    with h5py.File(_opened(blob), "r") as handle:
        # The links themselves: `key in handle` would follow a link to another file to see whether
        # its object exists.
        missing = [k for k in keys if handle.get(k, getlink=True) is None]
        if missing:
            raise DatasetError(f"dataset is missing keys: {', '.join(missing)}")
        nodes = {key: _plain_h5_dataset(handle, key) for key in keys}
        _within([_declared(key, node.shape, node.dtype.itemsize, limit) for key, node in nodes.items()], limit)
        return {key: node[()] for key, node in nodes.items()}


# The .npy format versions numpy reads; 3.0 differs from 2.0 only in allowing utf-8 in the
# header's field names, which a numeric array's header never holds.
_NPY_VERSIONS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
    (3, 0): np.lib.format.read_array_header_2_0,
}


def _npy_header(stream: Any, key: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """An .npy member's (shape, fortran_order, dtype, header length), read from its start: the one
    reading of an array header, refusing a format version numpy does not write."""
    start = stream.tell()
    try:
        version = np.lib.format.read_magic(stream)
        reader = _NPY_VERSIONS.get(version)
        header = None if reader is None else reader(stream)
    except ValueError as exc:
        raise DatasetError(f"dataset key {key!r} has no readable array header ({exc})") from exc
    if header is None:
        raise DatasetError(
            f"dataset key {key!r} has .npy format version {version[0]}.{version[1]}, not 1.0, 2.0 or 3.0"
        )
    shape, fortran_order, dtype = header
    if dtype.hasobject:
        raise DatasetError(f"dataset key {key!r} is not a plain numeric array")
    return tuple(shape), bool(fortran_order), dtype, stream.tell() - start


def _member_start(local: bytes, info: zipfile.ZipInfo, key: str) -> int:
    """Where a member's data start in the file, from its 30-byte local file header (the name's and
    extra field's lengths at 26 and 28 precede them)."""
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise DatasetError(f"dataset key {key!r} is truncated or corrupt (no local zip header)")
    name_len, extra_len = struct.unpack_from("<HH", local, 26)
    return info.header_offset + 30 + name_len + extra_len


def _check_members(archive: zipfile.ZipFile) -> None:
    """Refuses an archive that names one array twice (two members of one name, or `k` beside
    `k.npy`): the size checks would look at one member and numpy read the other."""
    seen: set[str] = set()
    for name in archive.namelist():
        key = name.removesuffix(".npy")
        if key in seen:
            raise DatasetError(f"dataset key {key!r} appears twice in the archive")
        seen.add(key)


def _npz_declared(archive: zipfile.ZipFile, key: str, limit: int) -> int:
    """A member's size as its .npy header declares it, read before numpy allocates the array."""
    try:
        with archive.open(_member_info(archive, key)) as member:
            shape, _, dtype, _ = _npy_header(member, key)
    except zipfile.BadZipFile as exc:  # a small member is read whole, and its checksum checked
        raise DatasetError(f"dataset key {key!r} is truncated or corrupt ({exc})") from exc
    return _declared(key, shape, dtype.itemsize, limit)


def _read_npz(blob: bytes | Path, limit: int, keys: tuple[str, ...] = REQUIRED_KEYS) -> dict[str, np.ndarray]:
    with np.load(_opened(blob), allow_pickle=False) as archive:
        _check_members(archive.zip)
        missing = [k for k in keys if k not in archive.files]
        if missing:
            raise DatasetError(f"dataset is missing keys: {', '.join(missing)}")
        _within([_npz_declared(archive.zip, key, limit) for key in keys], limit)
        out = {}
        for key in keys:
            value = _stored_member(blob, _member_info(archive.zip, key), key) if isinstance(blob, bytes) else None
            if value is None:
                try:
                    value = archive[key]
                except ValueError as exc:  # object arrays need pickle, which we refuse
                    raise DatasetError(f"dataset key {key!r} is not a plain numeric array") from exc
            if value.dtype.kind not in "biuf":
                raise DatasetError(f"dataset key {key!r} is not a numeric array")
            out[key] = value
    return out


def _member_info(archive: zipfile.ZipFile, key: str) -> zipfile.ZipInfo:
    names = archive.namelist()
    return archive.getinfo(f"{key}.npy" if f"{key}.npy" in names else key)


def _stored_member(blob: bytes, info: zipfile.ZipInfo, key: str) -> np.ndarray | None:
    """An uncompressed member of an .npz held in memory (as np.savez writes them), as a read-only
    array over `blob` itself: np.load would copy it piecewise into a new array, which for a dataset
    of tens of megabytes costs more than fetching it. None when numpy should read it (compressed,
    or a header this does not take), which then also names any problem."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    start = _member_start(blob[info.header_offset : info.header_offset + 30], info, key)
    member = memoryview(blob)[start : start + info.file_size]
    if len(member) != info.file_size or zlib.crc32(member) != info.CRC:
        raise DatasetError(f"dataset key {key!r} is truncated or corrupt (its zip checksum differs)")
    try:
        shape, fortran_order, dtype, header_len = _npy_header(io.BytesIO(member[:_NPY_HEADER_MAX]), key)
    except DatasetError:
        if len(member) > _NPY_HEADER_MAX:  # perhaps a longer header: numpy's to read
            return None
        raise
    count = int(np.prod(shape, dtype=np.int64))
    if header_len + count * dtype.itemsize != len(member):
        raise DatasetError(f"dataset key {key!r} holds fewer or more bytes than its header says")
    if count == 0:
        return np.empty(shape, dtype)
    flat = np.frombuffer(blob, dtype=dtype, count=count, offset=start + header_len)
    return flat.reshape(shape, order="F" if fortran_order else "C")


def load_raw(
    source: str,
    read_blob: BlobReader | None = None,
    allowed_bucket: str | None = None,
    prefix: str | None = None,
    limit: int | None = None,
    keys: tuple[str, ...] = REQUIRED_KEYS,
) -> dict[str, np.ndarray]:
    """The arrays named by `keys` (the four, by default) as stored (examples on the first axis).
    Raises DatasetError. An s3:// source must be in `allowed_bucket` under `prefix` (when given);
    nothing past `limit` bytes is read (default: read_limit())."""
    if source in BUILTIN:
        return {k: v for k, v in BUILTIN[source]().items() if k in keys}
    limit = read_limit() if limit is None else limit
    blob, name = _read_bytes(source, read_blob, allowed_bucket, prefix, limit)
    try:
        if name.endswith((".h5", ".hdf5")):
            return _read_h5(blob, limit, keys)
        if name.endswith(".npz"):
            return _read_npz(blob, limit, keys)
    except DatasetError:
        raise
    except Exception as exc:  # h5py/zipfile raise many kinds on a truncated or foreign file
        raise DatasetError(f"dataset {source!r} is unreadable ({type(exc).__name__}: {exc})") from exc
    raise DatasetError(f"dataset {source!r} must be a .h5 or .npz file")


def _unread(stored: direct.Stored) -> np.ndarray:
    """A stand-in for train_set_x whose bytes stay in the object: its shape and dtype, no values
    (one zero, broadcast). The launch's checks of integer data look at nothing else, and any value
    of a uint8 is a valid input, so nothing about x's values needs checking."""
    return np.broadcast_to(np.zeros((), np.dtype(stored.dtype)), stored.shape)


def _h5_stored(node: Any) -> direct.Stored:
    from h5py import h5d

    plist = node.id.get_create_plist()
    offset = node.id.get_offset()  # None until the dataset's storage is allocated
    plain = (
        plist.get_layout() == h5d.CONTIGUOUS
        and plist.get_nfilters() == 0
        and node.id.get_storage_size() == node.size * node.dtype.itemsize
    )
    return direct.Stored(offset, tuple(node.shape), node.dtype.str, plain)


def _locate_h5(handle_file: direct.PinnedObject, limit: int) -> tuple[dict[str, np.ndarray], direct.Stored] | None:
    """The checks of `_read_h5`, then, when train_set_x may stay in the object, the other arrays
    and where x lies; None when it may not (the caller reads the file as a whole)."""
    import h5py

    with h5py.File(handle_file, "r") as handle:
        missing = [k for k in REQUIRED_KEYS if handle.get(k, getlink=True) is None]
        if missing:
            raise DatasetError(f"dataset is missing keys: {', '.join(missing)}")
        nodes = {key: _plain_h5_dataset(handle, key) for key in REQUIRED_KEYS}
        _within([_declared(key, node.shape, node.dtype.itemsize, limit) for key, node in nodes.items()], limit)
        stored = _h5_stored(nodes["train_set_x"])
        if direct.file_allows(stored) is not None:
            return None
        raw = {key: node[()] for key, node in nodes.items() if key != "train_set_x"}
    return {**raw, "train_set_x": _unread(stored)}, stored


def _npz_stored(handle_file: direct.PinnedObject, archive: zipfile.ZipFile, key: str, size: int) -> direct.Stored:
    """Where an .npz member's array values start in the file, and whether they lie there as they
    are: a stored (not deflated) member, C order. Its zip checksum is not checked here, since that
    would read the bytes this saves reading; the object's pinned ETag stands for them instead."""
    info = _member_info(archive, key)
    with archive.open(info) as member:
        shape, fortran_order, dtype, header_len = _npy_header(member, key)
    count = int(np.prod(shape, dtype=np.int64))
    if info.compress_type != zipfile.ZIP_STORED:
        return direct.Stored(None, shape, dtype.str, False)
    if header_len + count * dtype.itemsize != info.file_size:
        raise DatasetError(f"dataset key {key!r} holds fewer or more bytes than its header says")
    handle_file.seek(info.header_offset)
    start = _member_start(handle_file.read(30), info, key)
    if start + info.file_size > size:
        raise DatasetError(f"dataset key {key!r} is truncated or corrupt (it ends past the file)")
    return direct.Stored(start + header_len, shape, dtype.str, not fortran_order)


def _locate_npz(
    handle_file: direct.PinnedObject, limit: int, size: int
) -> tuple[dict[str, np.ndarray], direct.Stored] | None:
    """The checks of `_read_npz`, then, when train_set_x may stay in the object, the other arrays
    and where x lies; None when it may not."""
    with zipfile.ZipFile(handle_file) as archive:
        _check_members(archive)
        files = {name.removesuffix(".npy") for name in archive.namelist()}
        missing = [k for k in REQUIRED_KEYS if k not in files]
        if missing:
            raise DatasetError(f"dataset is missing keys: {', '.join(missing)}")
        _within([_npz_declared(archive, key, limit) for key in REQUIRED_KEYS], limit)
        stored = _npz_stored(handle_file, archive, "train_set_x", size)
    if direct.file_allows(stored) is not None:
        return None
    handle_file.seek(0)
    raw = {}
    with np.load(handle_file, allow_pickle=False) as archive:
        for key in REQUIRED_KEYS[1:]:
            try:
                value = archive[key]
            except ValueError as exc:  # object arrays need pickle, which we refuse
                raise DatasetError(f"dataset key {key!r} is not a plain numeric array") from exc
            if value.dtype.kind not in "biuf":
                raise DatasetError(f"dataset key {key!r} is not a numeric array")
            raw[key] = value
    return {**raw, "train_set_x": _unread(stored)}, stored


def _absent_or_denied(exc: Exception) -> bool:
    """S3's answer that the object is not there, or not the function's to read (HeadObject has no
    body, so its codes are the bare statuses)."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound", "403", "AccessDenied", "Forbidden") or status in (403, 404)


def read_located(
    source: object,
    objects: direct.RangedObjects,
    allowed_bucket: str | None,
    prefix: str | None,
    normalize: str,
    validation_fraction: float,
    workers: int,
    limit: int | None = None,
) -> tuple[dict[str, np.ndarray], direct.Place] | None:
    """A data-parallel run's dataset when its workers read the training examples from the object
    (`direct.why_not`): every array but train_set_x's bytes, read by ranges pinned to the object's
    ETag, and where those bytes lie. The file is checked as `load_raw` checks it (the bucket and
    prefix, its length and each array's declared size against `limit`, an .h5's links, layouts and
    filters); None when the run reads the set whole instead (`load_raw`, which also names an object
    that is not there or not ours to read). Raises DatasetError, or the S3 error of a HEAD that did
    not answer (throttled, a 5xx): the path is not chosen by accident."""
    if direct.request_allows(source, normalize, validation_fraction, workers) is not None:
        return None
    assert isinstance(source, str)
    limit = read_limit() if limit is None else limit
    bucket, key = s3_source(source, allowed_bucket, prefix)
    if not key.endswith((".h5", ".hdf5", ".npz")):
        return None
    try:
        size, etag, version = objects.head(bucket, key)
    except Exception as exc:
        if _absent_or_denied(exc):
            return None  # the whole read names it as it does today
        # Anything else (throttled, a 5xx, a connection) fails the launch: choosing the cache path
        # by accident would give the run a digest its resume, reading the object, does not find.
        raise
    if size > limit:
        raise DatasetError(f"dataset {source!r} is {size} bytes, more than the {limit} bytes allowed")
    pinned = direct.PinnedObject(objects, bucket, key, size, etag)
    try:
        found = _locate_npz(pinned, limit, size) if key.endswith(".npz") else _locate_h5(pinned, limit)
    except DatasetError:
        raise
    except ObjectChanged as exc:
        raise DatasetError(f"dataset {source!r} changed while it was being read; send the request again") from exc
    except Exception as exc:  # h5py/zipfile raise many kinds on a truncated or foreign file
        raise DatasetError(f"dataset {source!r} is unreadable ({type(exc).__name__}: {exc})") from exc
    if found is None:
        return None
    raw, stored = found
    place = direct.place_of(stored, bucket, key, etag, version)
    if place.byte_range(0, place.rows)[1] > size:  # a crafted header: the workers would read short
        raise DatasetError(f"dataset key 'train_set_x' declares bytes past the end of {source!r}")
    return raw, place


def read_checked_located(
    source: object,
    objects: direct.RangedObjects,
    allowed_bucket: str | None,
    prefix: str | None,
    normalize: str,
    validation_fraction: float,
    workers: int,
) -> tuple[tuple[dict[str, np.ndarray], direct.Place] | None, list[str]]:
    """`read_located`, its arrays checked as `read_checked` checks them: (the raw arrays and the
    place, or None) and every problem. None with no problem: read the set whole (`read_checked`).
    An S3 error other than no such key or access denied is raised (`read_located`)."""
    try:
        found = read_located(source, objects, allowed_bucket, prefix, normalize, validation_fraction, workers)
    except DatasetError as exc:
        return None, [f"dataset: {exc}"]
    # Anything else is S3 failing to answer the object's HEAD (throttled, a 5xx): no problem of the
    # request, and no reason to read the set whole; it fails the launch, to be sent again.
    if found is None:
        return None, []
    problems = [f"dataset: {p}" for p in check_raw(found[0])]
    return (None if problems else found), problems


def read_checked(
    source: object, read_blob: BlobReader | None, allowed_bucket: str | None, prefix: str | None = None
) -> tuple[dict[str, np.ndarray] | None, list[str]]:
    """A request's dataset as checked raw arrays, or None and every problem, each naming the dataset
    (absent or unreadable, an S3 error such as no such key or access denied, arrays unfit)."""
    if not isinstance(source, str) or not source:
        return None, []  # the request's own check names a missing dataset
    try:
        raw = load_raw(source, read_blob, allowed_bucket=allowed_bucket, prefix=prefix)
    except DatasetError as exc:
        return None, [f"dataset: {exc}"]
    except Exception as exc:
        return None, [f"dataset: cannot read {source!r} ({type(exc).__name__}: {exc})"]
    problems = [f"dataset: {p}" for p in check_raw(raw)]
    return (None if problems else raw), problems


def _labels(y: np.ndarray, key: str, problems: list[str]) -> np.ndarray:
    flat = np.asarray(y)
    if flat.ndim == 2 and 1 in flat.shape:
        flat = flat.reshape(-1)
    if flat.ndim != 1:
        problems.append(f"{key} must be a vector of labels, got shape {tuple(y.shape)}")
        return flat.reshape(-1)
    if flat.dtype.kind == "f" and not np.all(np.isfinite(flat)):
        problems.append(f"{key} contains NaN or infinity")
    elif flat.size and (np.any(flat < 0) or np.any(np.floor(flat) != flat)):
        problems.append(f"{key} must hold integer class labels 0..K-1")
    return flat


def check_raw(raw: dict[str, np.ndarray]) -> list[str]:
    """Every shape/content problem of the raw arrays (empty when usable)."""
    problems: list[str] = []
    x_train, x_test = np.asarray(raw["train_set_x"]), np.asarray(raw["test_set_x"])
    y_train = _labels(raw["train_set_y"], "train_set_y", problems)
    y_test = _labels(raw["test_set_y"], "test_set_y", problems)
    if x_train.ndim < 1 or x_train.shape[0] == 0:
        problems.append("train_set_x has no examples")
    if x_test.ndim < 1 or x_test.shape[0] == 0:
        problems.append("test_set_x has no examples")
    if x_train.ndim >= 1 and x_train.shape[0] != y_train.shape[0]:
        problems.append(f"train_set_x has {x_train.shape[0]} examples but train_set_y has {y_train.shape[0]} labels")
    if x_test.ndim >= 1 and x_test.shape[0] != y_test.shape[0]:
        problems.append(f"test_set_x has {x_test.shape[0]} examples but test_set_y has {y_test.shape[0]} labels")
    if x_train.shape[1:] != x_test.shape[1:]:
        problems.append(f"train_set_x examples have shape {x_train.shape[1:]} but test_set_x {x_test.shape[1:]}")
    if x_train.ndim >= 1 and x_train.shape[0] and int(np.prod(x_train.shape[1:], dtype=np.int64)) == 0:
        problems.append(f"train_set_x examples have no features (shape {x_train.shape[1:]})")
    for key, x in (("train_set_x", x_train), ("test_set_x", x_test)):
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            problems.append(f"{key} contains NaN or infinity")
        elif x.dtype.kind == "f" and x.size and float(np.max(np.abs(x))) > MAX_ABS_VALUE:
            # Larger values overflow once normalised or cast to float32; no network trains on them.
            problems.append(f"{key} has values beyond ±{MAX_ABS_VALUE:g}; rescale the data")
    return problems


@dataclass(frozen=True)
class Dataset:
    """A checked dataset, its normalisation statistics, and the run's dtype. The normalised,
    column-layout arrays (features, m) are computed from the raw ones when first asked for."""

    x_train_raw: np.ndarray  # (m, features), examples first, as read
    y_train: np.ndarray  # (1, m) in the run's dtype
    x_test_raw: np.ndarray
    y_test: np.ndarray
    shift: np.ndarray  # (features, 1) normalisation statistics
    scale: np.ndarray
    classes: int
    dtype: str
    # A sweep trial's validation examples (held out of the training set), scored every epoch.
    x_val_raw: np.ndarray | None = None
    y_val: np.ndarray | None = None
    # Where the training examples lie in the dataset object, when a data-parallel run's workers
    # read them from there (trainer.data.direct): x_train_raw is then a stand-in with no values.
    x_train_at: direct.Place | None = None

    @cached_property
    def x_train(self) -> np.ndarray:
        return normalize.apply(self._stats, self.x_train_raw, self.dtype)

    @cached_property
    def x_test(self) -> np.ndarray:
        return normalize.apply(self._stats, self.x_test_raw, self.dtype)

    @cached_property
    def x_val(self) -> np.ndarray | None:
        return None if self.x_val_raw is None else normalize.apply(self._stats, self.x_val_raw, self.dtype)

    @property
    def _stats(self) -> dict[str, np.ndarray]:
        return {"shift": self.shift, "scale": self.scale}

    @property
    def features(self) -> int:
        return int(self.x_train_raw.shape[1])

    @property
    def examples(self) -> int:
        return int(self.x_train_raw.shape[0])

    @property
    def compact(self) -> bool:
        """Integer raw data narrower than the run's dtype (images: uint8) travels raw: a fraction of
        the bytes to write, move and read, normalised by the trainer (engine.TrainData)."""
        return self.x_train_raw.dtype.kind in "ui" and self.x_train_raw.dtype.itemsize < np.dtype(self.dtype).itemsize

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays a run keeps in the cache, by the names the trainer reads them with. The x
        arrays are normalised, column layout (features, m); or, when compact, raw integers as read,
        examples first (m, features): stored without a transposing copy (engine.TrainData). No
        x_train when the workers read it from the object (`x_train_at`)."""
        arrays = {} if self.x_train_at is not None else {"x_train": self.x_train_raw if self.compact else self.x_train}
        arrays |= {
            "y_train": self.y_train,
            "x_test": self.x_test_raw if self.compact else self.x_test,
            "y_test": self.y_test,
            "shift": self.shift,
            "scale": self.scale,
        }
        x_val = self.x_val_raw if self.compact else self.x_val
        if x_val is not None and self.y_val is not None:
            arrays |= {"x_val": x_val, "y_val": self.y_val}
        return arrays

    def digest(self) -> str:
        """Identity of the training data: the raw arrays, the labels, the statistics and the dtype
        determine the normalised data exactly."""
        h = hashlib.sha256(self.dtype.encode())
        if self.x_train_at is not None:  # the object, pinned by its ETag, stands for x's bytes
            h.update(self.x_train_at.to_json().encode())
        arrays = [] if self.x_train_at is not None else [self.x_train_raw]
        arrays += [self.y_train, self.x_test_raw, self.y_test, self.shift, self.scale]
        if self.x_val_raw is not None and self.y_val is not None:
            arrays += [self.x_val_raw, self.y_val]
        for array in arrays:
            h.update(f"{array.dtype.str}{array.shape}".encode())
            h.update(np.ascontiguousarray(array).data)
        return h.hexdigest()[:16]


def prepare(
    raw: dict[str, np.ndarray],
    method: str,
    dtype: str,
    validation: dict[str, np.ndarray] | None = None,
    place: direct.Place | None = None,
) -> Dataset:
    """The run's dataset; `validation` ({"x", "y"}, examples first) is normalised with the training
    set's statistics, never fitted on. `place`: where the training examples lie in the object, for
    raw arrays from `read_located`."""
    m_train, m_test = raw["train_set_x"].shape[0], raw["test_set_x"].shape[0]
    x_train_raw = np.asarray(raw["train_set_x"]).reshape(m_train, -1)
    x_test_raw = np.asarray(raw["test_set_x"]).reshape(m_test, -1)
    stats = normalize.fit(method, x_train_raw)
    y_train = np.asarray(raw["train_set_y"]).reshape(1, -1).astype(dtype)
    y_test = np.asarray(raw["test_set_y"]).reshape(1, -1).astype(dtype)
    held = np.asarray(validation["y"]) if validation is not None else np.zeros(0)
    classes = int(max(y_train.max(initial=0), y_test.max(initial=0), held.max(initial=0))) + 1
    dataset = Dataset(
        x_train_raw=x_train_raw,
        y_train=y_train,
        x_test_raw=x_test_raw,
        y_test=y_test,
        shift=stats["shift"],
        scale=stats["scale"],
        classes=classes,
        dtype=dtype,
        x_val_raw=None if validation is None else np.asarray(validation["x"]).reshape(len(validation["x"]), -1),
        y_val=None if validation is None else np.asarray(validation["y"]).reshape(1, -1).astype(dtype),
        x_train_at=place,
    )
    if not dataset.compact:
        # Float data can overflow once normalised or cast; normalise now, inside the caller's
        # handling of numpy's warnings, not at some later first use.
        _ = dataset.x_train, dataset.x_test, dataset.x_val
    return dataset
