"""Tensors as raw bytes with dtype and shape: exact round trips, and nothing that is not a tensor."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.stores import codec


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "uint8"])
def test_tensors_round_trip_bit_exact(dtype: str) -> None:
    value = (np.random.default_rng(1).normal(size=(3, 5)) * 100).astype(dtype)
    back = codec.decode(codec.encode(value))
    assert back.dtype == value.dtype and back.shape == value.shape and np.array_equal(back, value)
    assert back.flags.writeable


def test_a_value_that_is_not_a_tensor_is_refused() -> None:
    with pytest.raises(codec.CodecError):
        codec.decode(b"\x80\x04pickle")
    blob = codec.encode(np.zeros(4))
    with pytest.raises(codec.CodecError, match="body has"):
        codec.decode(blob[:-1])
