"""The cache front's reading of commands before authentication: whole commands out of whatever bytes
have arrived, and no unbounded command from a client that has not authenticated."""

from __future__ import annotations

import pytest

from trainer.local.cache_front import MAX_PREAUTH_COMMAND, Gate, ProtocolError, encode, read_command


def test_a_command_is_read_only_when_all_its_bytes_have_arrived() -> None:
    command = encode([b"AUTH", b"user", b"token"])
    for cut in range(len(command)):
        assert read_command(command[:cut]) is None
    assert read_command(command + b"*1\r\n$4\r\nPING\r\n") == ([b"AUTH", b"user", b"token"], len(command))
    assert read_command(b"PING\r\nECHO") == ([b"PING"], 6)


@pytest.mark.parametrize(
    "data",
    [
        b"x" * MAX_PREAUTH_COMMAND,  # an inline command that never ends
        b"*1\r\n:1\r\n",  # not a bulk string
        b"*1\r\n$" + str(MAX_PREAUTH_COMMAND + 1).encode() + b"\r\n",  # a word too large before AUTH
        b"*1\r\n$-5\r\n",
    ],
)
def test_what_no_client_sends_before_authentication_ends_the_connection(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_command(data)


def test_the_gate_judges_commands_until_one_authenticates_then_passes_bytes_as_they_are() -> None:
    judged: list[list[bytes]] = []

    def admit(words: list[bytes], raw: bytes) -> tuple[bytes, bool]:
        judged.append(words)
        return (b"AUTHENTICATED\r\n", True) if words[0] == b"AUTH" else (raw, False)

    gate = Gate(admit)
    auth = encode([b"AUTH", b"u", b"t"])
    assert gate.pass_on(b"PING\r\n" + auth[:5]) == b"PING\r\n"
    # The bytes after the AUTH, in the same read, reach the server unjudged.
    assert gate.pass_on(auth[5:] + b"GET k\r\n") == b"AUTHENTICATED\r\nGET k\r\n"
    assert gate.pass_on(b"*1\r\n$99999999\r\n") == b"*1\r\n$99999999\r\n"
    assert judged == [[b"PING"], [b"AUTH", b"u", b"t"]]


def test_many_small_words_before_authentication_are_bounded_too() -> None:
    gate = Gate(lambda words, raw: (raw, False))
    with pytest.raises(ProtocolError):
        gate.pass_on(b"*99999999\r\n" + b"$0\r\n\r\n" * MAX_PREAUTH_COMMAND)
