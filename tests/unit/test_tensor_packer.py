"""The tensor store's command packer: the same bytes on the wire as hiredis packs, without copying
a large value into the command's buffer (a dataset at launch is tens of megabytes)."""

from __future__ import annotations

import hiredis

from trainer.stores.tensor_store import LARGE_VALUE, _Connection, _TLSConnection


def _wire(chunks: list) -> bytes:
    return b"".join(bytes(c) for c in chunks)


def test_a_large_value_is_sent_as_it_stands_and_the_wire_is_unchanged() -> None:
    packer = _Connection(host="127.0.0.1", port=1)._command_packer  # built without connecting
    blob = bytes(range(256)) * (LARGE_VALUE // 256 + 1)
    chunks = packer.pack("SET", "lnn:{r}:data:x_train", blob, "EX", 60)
    assert any(c is blob for c in chunks)  # not copied
    assert _wire(chunks) == hiredis.pack_command(("SET", "lnn:{r}:data:x_train", blob, "EX", 60))


def test_small_commands_are_packed_by_hiredis_in_one_buffer() -> None:
    packer = _TLSConnection(host="127.0.0.1", port=1)._command_packer
    chunks = packer.pack("EVALSHA", "abc", 2, "k1", "k2", b"\x00" * 100)
    assert len(chunks) == 1
    assert chunks[0] == hiredis.pack_command(("EVALSHA", "abc", 2, "k1", "k2", b"\x00" * 100))
