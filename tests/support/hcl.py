"""One reader of HCL blocks for the tests that read Terraform (and the Go test's Vars map): a
block's body by its header, the top-level blocks of a kind by name, an attribute's expression. Not a
parser of the language: it counts braces, which is enough for `terraform fmt`-laid-out files whose
strings hold balanced interpolations only."""

from __future__ import annotations

import re


def block(text: str, header_regex: str) -> str:
    """The body of the first block whose header matches `header_regex` (between its braces)."""
    match = re.search(header_regex + r"\s*\{", text)
    assert match, f"no block {header_regex!r}"
    return _body(text, match.end(), header_regex)


def blocks(text: str, keyword: str) -> dict[str, str]:
    """The bodies of the top-level `keyword "name" {...}` blocks, by name."""
    return {
        match.group(1): _body(text, match.end(), match.group(0))
        for match in re.finditer(rf'^{keyword} "([^"]+)" \{{', text, re.M)
    }


def attribute(body: str, name: str) -> str:
    """The expression of the attribute `name = ...` (the first, at any depth; one line)."""
    match = re.search(rf"^\s*{name}\s*=\s*(.+?)\s*$", body, re.MULTILINE)
    assert match, f"no attribute {name}"
    return match.group(1)


def _body(text: str, start: int, header: str) -> str:
    depth = 1
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start:index]
    raise AssertionError(f"unbalanced block {header!r}")
