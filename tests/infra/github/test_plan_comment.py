"""plan_comment.py on its limits: a plan too large for a comment, a failed plan, bad arguments.
Its rendering of real plans (produced against the emulator) is tested in tests/infra/terraform."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .plan_comment_module import SCRIPT, load

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
