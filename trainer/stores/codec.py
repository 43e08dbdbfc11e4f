"""Tensors as raw bytes with their dtype and shape. Never pickle: decoding a value from the
cache can only ever produce a plain numeric array."""

from __future__ import annotations

import json
import struct

import numpy as np

MAGIC = b"LNT1"
ALLOWED_DTYPES = frozenset({"<f8", "<f4", "<i8", "<i4", "|u1", "|b1"})
_HEADER_LEN = struct.Struct("<H")


class CodecError(ValueError):
    """A stored value is not a tensor this codec wrote."""


def encode(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array)
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    header = json.dumps({"dtype": dtype.str, "shape": list(array.shape)}).encode()
    if dtype.str not in ALLOWED_DTYPES:
        raise CodecError(f"dtype {dtype.str} is not storable")
    body = array.astype(dtype, copy=False).reshape(-1).view(np.uint8)
    # One copy of the body into the value, not two (tobytes, then the concatenation): a dataset
    # written at launch is tens of megabytes.
    return b"".join((MAGIC, _HEADER_LEN.pack(len(header)), header, body.data))


def decode(blob: bytes) -> np.ndarray:
    if len(blob) < 6 or blob[:4] != MAGIC:
        raise CodecError("value is not an encoded tensor")
    (length,) = _HEADER_LEN.unpack_from(blob, 4)
    try:
        header = json.loads(blob[6 : 6 + length])
        dtype, shape = header["dtype"], tuple(int(n) for n in header["shape"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CodecError("tensor header is malformed") from exc
    if dtype not in ALLOWED_DTYPES or any(n < 0 for n in shape):
        raise CodecError(f"tensor header names a forbidden dtype or shape: {dtype} {shape}")
    body = memoryview(blob)[6 + length :]
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if len(body) != expected:
        raise CodecError(f"tensor body has {len(body)} bytes, its header says {expected}")
    # A fresh, writable, normally aligned copy: results must not depend on where bytes landed.
    return np.frombuffer(body, dtype=dtype).reshape(shape).copy()
