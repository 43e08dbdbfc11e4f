"""plan_comment.py on its limits: a plan too large for a comment, a failed plan, bad arguments.
Its rendering of real plans (produced against the emulator) is tested in tests/infra/terraform."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.plan_comment import SCRIPT, load

plan_comment = load()

ONE_CHANGE = {
    "resource_changes": [
        {
            "address": "module.cache.aws_elasticache_replication_group.this",
            "mode": "managed",
            "type": "aws_elasticache_replication_group",
            "change": {"actions": ["delete", "create"]},
        }
    ]
}


def test_huge_plan_is_cut_below_the_comment_limit_and_points_to_the_artifact() -> None:
    line = '  ~ tags = { "é" = "😀 ``` not a fence" }\n'
    text = line * 20000  # ~900 k characters, backtick runs and astral-plane characters included
    body = plan_comment.render(2, text, ONE_CHANGE, artifact_url="https://x/artifact/1")
    assert len(body) <= plan_comment.GITHUB_COMMENT_LIMIT
    assert "cut to fit a comment" in body and "https://x/artifact/1" in body
    assert "````" in body  # a fence longer than the plan's own ``` runs
    # The warning and the table survive the cut; only the text plan is shortened.
    assert body.index("[!CAUTION]") < body.index(
        "### Terraform plan: 0 to add, 0 to change, 0 to destroy, 1 to replace"
    )
    assert "| `module.cache.aws_elasticache_replication_group.this` | replace |" in body


def test_table_is_capped_but_the_headline_counts_everything() -> None:
    many = {
        "resource_changes": [
            {
                "address": f"aws_sqs_queue.q{i}",
                "mode": "managed",
                "type": "aws_sqs_queue",
                "change": {"actions": ["create"]},
            }
            for i in range(plan_comment.MAX_TABLE_ROWS + 5)
        ]
    }
    body = plan_comment.render(2, "plan", many)
    assert f"{plan_comment.MAX_TABLE_ROWS + 5} to add" in body and "... and 5 more" in body


def test_failed_plan_is_reported_as_failed_with_its_error() -> None:
    body = plan_comment.render(1, "Error: no valid credential sources\n", None)
    assert body.startswith(plan_comment.MARKER) and "### Terraform plan FAILED" in body
    assert "Error: no valid credential sources" in body and "[!CAUTION]" not in body


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_a_successful_plan_without_its_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plan.txt").write_text("No changes.\n")
    result = run_script("--exitcode", "0", "--plan-text", str(tmp_path / "plan.txt"))
    assert result.returncode == 2 and "--plan-json" in result.stderr


def test_an_unknown_exit_code_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plan.txt").write_text("x\n")
    result = run_script("--exitcode", "3", "--plan-text", str(tmp_path / "plan.txt"))
    assert result.returncode == 2 and "--exitcode must be 0, 1 or 2" in result.stderr


def _plan(*changes: tuple[str, str, list[str]]) -> dict:
    return {
        "resource_changes": [
            {"address": address, "mode": "managed", "type": kind, "change": {"actions": actions}}
            for address, kind, actions in changes
        ]
    }


# A for_each key that closes a one-backtick code span and then writes Markdown of its own.
INJECTION = (
    'aws_s3_bucket.b["`x` @org/team [link](https://evil.example) ![img](https://evil.example/i.png) | |\n@org/two `"]'
)


def _outside_code(line: str) -> str:
    """`line` less its code spans (CommonMark: a run of N backticks up to the next run of exactly N)."""
    out, i = [], 0
    while i < len(line):
        run = re.match(r"`+", line[i:])
        if not run:
            out.append(line[i])
            i += 1
            continue
        fence = run.group(0)
        close = re.search(rf"(?<!`){fence}(?!`)", line[i + len(fence) :])
        if close is None:
            out.append(fence)
            i += len(fence)
            continue
        i += len(fence) + close.end()
    return "".join(out)


def test_an_address_renders_as_code_whatever_it_holds() -> None:
    body = plan_comment.render(2, "plan", _plan((INJECTION, "aws_s3_bucket", ["delete"])))
    rows = [line for line in body.splitlines() if "evil" in line]
    assert len(rows) == 2  # the warning's item and the table's row, each on one line
    warning, row = rows
    assert warning.startswith("> - ") and warning.endswith("(S3 bucket): **destroy**")
    assert row.startswith("| ") and row.endswith(" | destroy |")
    # Outside the code spans only the row's own cell separators and the warning's words remain:
    # no mention, link or image can render.
    assert _outside_code(row) == "|  | destroy |"
    assert _outside_code(warning) == "> -  (S3 bucket): **destroy**"
    for line in (warning, row):
        assert "@org" not in line and f"@{plan_comment.WORD_JOINER}org/team" in line
    # Every `|` inside the table's code span is escaped, so GFM keeps it in the cell.
    assert re.findall(r"(?<!\\)\|", row) == ["|", "|", "|"]
    assert "\\u000a" in row  # the line break, shown as an escape


def test_three_hundred_long_addresses_fit_a_comment() -> None:
    long = "k" * 990
    plan = _plan(
        *[(f'aws_sqs_queue.q["{i:03d}{long}"]', "aws_sqs_queue", ["create"]) for i in range(300)],
        *[(f'aws_s3_bucket.b["{i:03d}{long}"]', "aws_s3_bucket", ["delete"]) for i in range(300)],
    )
    body = plan_comment.render(2, "plan text\n" * 10000, plan, artifact_url="https://x/artifact/1")
    assert len(body) <= plan_comment.GITHUB_COMMENT_LIMIT
    assert "600 to add" not in body and "300 to add, 0 to change, 300 to destroy" in body
    shown = sum(1 for line in body.splitlines() if line.startswith("| ``") or line.startswith("| `"))
    dropped = int(re.search(r"\| \.\.\. and (\d+) more \(see the full plan\)", body).group(1))
    assert shown + dropped == 600 and shown > 0
    assert "... and 250 more (see the full plan)" in body  # the warning lists 50 of 300
    assert all(len(line) < 300 for line in body.splitlines() if "kkk" in line)  # each address capped
    assert "cut to fit a comment" in body and "plan text" in body
