"""Checking a JSON payload against a msgspec schema, reporting every problem at once.

msgspec stops at the first problem; a user fixing a request wants them all. So each field is
converted on its own, unknown and missing fields are found by name, and msgspec's messages are put
in this project's form: `where: what`.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

S = TypeVar("S", bound=msgspec.Struct)

# A field's own check, after its type and bounds hold: the problem, or None.
Check = Callable[[Any], "str | None"]

_LOCATED = re.compile(r"\A(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?\Z", re.S)
_UNKNOWN = re.compile(r"\AObject contains unknown field `(?P<name>[^`]*)`\Z")
_MISSING = re.compile(r"\AObject missing required field `(?P<name>[^`]*)`\Z")


def problems(
    payload: Mapping[str, Any], schema: type[msgspec.Struct], checks: Mapping[str, Check] | None = None
) -> list[str]:
    """Every problem with `payload` as an instance of `schema`; empty when `convert` will succeed.
    `checks` are per-field rules msgspec cannot state (by field name), run once the type holds."""
    fields = msgspec.structs.fields(schema)
    known = {f.encode_name for f in fields}
    found = [_unknown(key, known) for key in payload if key not in known]
    for field in fields:
        if field.encode_name not in payload:
            if field.required:
                found.append(f"{field.encode_name}: required field is missing")
            continue
        value = payload[field.encode_name]
        try:
            msgspec.convert(value, field.type, strict=True)
        except msgspec.ValidationError as exc:
            found.append(_located(field.encode_name, field.type, value, str(exc)))
            continue
        check = (checks or {}).get(field.name)
        problem = check(value) if check else None
        if problem:
            found.append(f"{field.encode_name}: {problem}")
    return found


def _unknown(key: Any, known: set[str]) -> str:
    """A misspelt field is the commonest mistake: name the field the user probably meant."""
    said = f"{key or repr(key)}: unknown field"
    close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.75) if isinstance(key, str) else []
    return f"{said} (did you mean {close[0]!r}?)" if close else said


def convert(payload: Mapping[str, Any], schema: type[S]) -> S:
    """The instance; call once `problems` found none."""
    return msgspec.convert(payload, schema, strict=True)


def to_json(instance: msgspec.Struct) -> dict[str, Any]:
    """Every field, defaults included, as JSON-ready builtins."""
    return msgspec.to_builtins(instance)


def _located(name: str, kind: Any, value: Any, message: str) -> str:
    match = _LOCATED.match(message)
    assert match is not None  # the pattern matches any text
    what, where = match["what"], name + (match["path"] or "")
    for pattern, says in ((_UNKNOWN, "unknown field"), (_MISSING, "required field is missing")):
        named = pattern.match(what)
        if named:
            return f"{where}.{named['name']}: {says}"
    if match["path"] is not None or isinstance(value, (dict, list)):
        return f"{where}: {what}"
    # msgspec names the rule; the user also needs what they sent, and for a choice, the choices.
    choices = _choices(kind)
    if choices:
        return f"{where}: must be one of {', '.join(map(repr, choices))}, got {value!r}"
    # A type mismatch names the type it got; a broken bound does not.
    return f"{where}: {what} ({value!r})" if ", got " in what else f"{where}: {what}, got {value!r}"


def _choices(kind: Any) -> tuple[Any, ...]:
    if typing.get_origin(kind) is typing.Literal:
        return typing.get_args(kind)
    return ()
