"""The README is short and true: every `lnn` line in it parses as the command it shows, every
`make` target it names exists, and the example files it points to are valid requests."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from tests.support.paths import REPO_ROOT
from trainer import cli
from trainer import request as request_mod
from trainer.sweep import space

README = (REPO_ROOT / "README.md").read_text()


def shell_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [line.split("  #", 1)[0].strip() for line in lines if line.strip() and not line.startswith(("#", " "))]


def lnn_lines() -> list[list[str]]:
    found = []
    for line in shell_lines():
        words = shlex.split(line)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # an environment assignment before it
            words = words[1:]
        if words and words[0] == "lnn":
            found.append(words[1:])
    return found


def test_the_readme_is_at_most_200_lines() -> None:
    assert len(README.splitlines()) <= 200


@pytest.mark.parametrize("words", lnn_lines(), ids=" ".join)
def test_every_lnn_line_parses(words: list[str]) -> None:
    args = cli.build_parser().parse_args(words)
    assert args.command == words[0]


def test_the_readme_shows_every_lnn_command() -> None:
    shown = {words[0] for words in lnn_lines()}
    assert shown >= {"train", "runs", "status", "plot", "predict", "export", "resume", "cancel", "delete", "sweep"}


def test_every_make_target_named_exists() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    named = set(re.findall(r"`make (?:-s )?([a-z][a-z-]*)", README)) | set(re.findall(r"^make ([a-z-]+)", README, re.M))
    missing = [t for t in named if not re.search(rf"^{re.escape(t)}:", makefile, re.M)]
    assert named and missing == []


def test_the_example_files_are_valid_requests() -> None:
    examples = REPO_ROOT / "trainer" / "examples"
    assert request_mod.parse(json.loads((examples / "request.json").read_text()))[1] == []
    assert space.parse(json.loads((examples / "sweep.json").read_text()))[1] == []
    for linked in re.findall(r"\]\(([^)#]+)", README):
        assert (REPO_ROOT / linked).exists(), linked
