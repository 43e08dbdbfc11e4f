#!/usr/bin/env python3
"""Render the pull-request comment for a Terraform plan from `terraform show -json`.

The comment a reviewer reads, in order: a warning when a resource that holds data (table, cache,
bucket, repository, key, secret, log group) would be destroyed or replaced; the headline (N to
add, M to change, K to destroy, R to replace -- a replacement is counted once, as a replacement);
a table of the changes by resource and action; the full text plan folded; a pointer to the
artifact. The whole stays under GitHub's comment limit: the text plan is cut first, at a line, then
table rows are dropped (the table says how many).

An address is text from the configuration (a for_each key is any string), so it is shown as a code
span that nothing in it can close: a fence longer than its own backtick runs, `|` escaped in table
cells, `@` kept from starting a mention, control characters as escapes, and a length cap.

usage: plan_comment.py --exitcode N --plan-text plan.txt [--plan-json plan.json]
                       [--artifact-url URL] [--commit SHA] [--run-url URL] [-o comment.md]
Standard library only: the workflow runs it with the runner's python3.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

MARKER = "<!-- lnn-terraform-plan -->"
# GitHub rejects an issue comment body over 65536 characters.
GITHUB_COMMENT_LIMIT = 65536
MAX_TABLE_ROWS = 200
MAX_ADDRESS_CHARS = 200  # Terraform's own addresses are far shorter; a for_each key can be any length
MAX_WARNING_ITEMS = 50
MIN_PLAN_TEXT_CHARS = 4000  # kept for the text plan before table rows are dropped
WORD_JOINER = "\u2060"  # invisible; after "@" it ends the would-be mention's name

# Resource types whose destruction loses data or breaks what depends on their identity.
STATEFUL_TYPES = {
    "aws_dynamodb_table": "DynamoDB table",
    "aws_elasticache_replication_group": "ElastiCache replication group",
    "aws_s3_bucket": "S3 bucket",
    "aws_ecr_repository": "ECR repository",
    "aws_kms_key": "KMS key",
    "aws_secretsmanager_secret": "Secrets Manager secret",
    "aws_secretsmanager_secret_version": "Secrets Manager secret value",
    "aws_cloudwatch_log_group": "CloudWatch log group",
}


class Action(Enum):
    ADD = "add"
    CHANGE = "change"
    DESTROY = "destroy"
    REPLACE = "replace"


@dataclass(frozen=True)
class Change:
    address: str
    type: str
    action: Action

    @property
    def stateful(self) -> bool:
        return self.type in STATEFUL_TYPES and self.action in (Action.DESTROY, Action.REPLACE)


def action_of(actions: list[str]) -> Action | None:
    """The one action a resource change amounts to; None for no-op and read."""
    kinds = set(actions)
    if kinds == {"create", "delete"}:
        return Action.REPLACE
    return {
        ("create",): Action.ADD,
        ("update",): Action.CHANGE,
        ("delete",): Action.DESTROY,
    }.get(tuple(actions))


def changes_of(plan: dict) -> list[Change]:
    changes = []
    for rc in plan.get("resource_changes", []):
        if rc.get("mode") != "managed":
            continue
        action = action_of(rc["change"]["actions"])
        if action is not None:
            changes.append(Change(rc["address"], rc["type"], action))
    return changes


def headline(changes: list[Change]) -> str:
    count = Counter(c.action for c in changes)
    if not changes:
        return "no changes"
    return ", ".join(f"{count[a]} to {a.value}" for a in (Action.ADD, Action.CHANGE, Action.DESTROY, Action.REPLACE))


def code(text: str, in_table: bool = False) -> str:
    """`text` as a Markdown code span that renders as that text and nothing else, whatever it holds."""
    if len(text) > MAX_ADDRESS_CHARS:
        text = text[: MAX_ADDRESS_CHARS - 1] + "\u2026"
    # A line break would end the table row or the list item, and the rest would be Markdown.
    text = "".join(f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 else ch for ch in text)
    text = text.replace("@", "@" + WORD_JOINER)
    if in_table:
        text = text.replace("|", "\\|")  # GFM splits cells before code spans; \| stays in the cell
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def warning_block(changes: list[Change]) -> list[str]:
    at_risk = [c for c in changes if c.stateful]
    if not at_risk:
        return []
    lines = [
        "> [!CAUTION]",
        "> **This plan destroys or replaces resources that hold data.** What they hold is lost unless it",
        "> is backed up first:",
    ]
    lines += [
        f"> - {code(c.address)} ({STATEFUL_TYPES[c.type]}): **{c.action.value}**" for c in at_risk[:MAX_WARNING_ITEMS]
    ]
    if len(at_risk) > MAX_WARNING_ITEMS:
        lines.append(f"> - ... and {len(at_risk) - MAX_WARNING_ITEMS} more (see the full plan)")
    return [*lines, ""]


def table(changes: list[Change], max_rows: int = MAX_TABLE_ROWS) -> list[str]:
    if not changes:
        return []
    order = {Action.REPLACE: 0, Action.DESTROY: 1, Action.CHANGE: 2, Action.ADD: 3}
    rows = sorted(changes, key=lambda c: (order[c.action], c.address))
    lines = ["| resource | action |", "| --- | --- |"]
    lines += [f"| {code(c.address, in_table=True)} | {c.action.value} |" for c in rows[:max_rows]]
    if len(rows) > max_rows:
        lines.append(f"| ... and {len(rows) - max_rows} more (see the full plan) | |")
    return [*lines, ""]


def fenced(text: str) -> tuple[str, str]:
    """A fence longer than any run of backticks in the text, so the text cannot close it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1), text


def cut(text: str, budget: int) -> tuple[str, bool]:
    if len(text) <= budget:
        return text, False
    end = text.rfind("\n", 0, max(budget, 0))
    return text[: end if end > 0 else max(budget, 0)], True


def render(
    exitcode: int,
    plan_text: str,
    plan: dict | None,
    artifact_url: str = "",
    commit: str = "",
    run_url: str = "",
    limit: int = GITHUB_COMMENT_LIMIT,
) -> str:
    if exitcode == 1 or plan is None:
        changes: list[Change] = []
        title = "### Terraform plan FAILED"
    else:
        changes = changes_of(plan)
        title = f"### Terraform plan: {headline(changes)}"
    where = " ".join(p for p in (f"Commit {commit}." if commit else "", f"[Run]({run_url})." if run_url else "") if p)
    artifact = f"[artifact]({artifact_url})" if artifact_url else "artifact of this run"
    rows = min(len(changes), MAX_TABLE_ROWS)

    def assemble(body_text: str, truncated: bool) -> str:
        head = [MARKER, *warning_block(changes), title, "", *([where, ""] if where else []), *table(changes, rows)]
        fence, body_text = fenced(body_text)
        pointer = (
            f"**The plan above is cut to fit a comment.** The full plan is the {artifact}."
            if truncated
            else f"The full plan is also the {artifact}."
        )
        summary = "Error" if exitcode == 1 else "Full plan"
        return "\n".join(
            [*head, f"<details><summary>{summary}</summary>", "", fence, body_text, fence, "</details>", "", pointer]
        )

    whole = assemble(plan_text, False)
    if len(whole) <= limit:
        return whole
    # Rows go, fewest first, until the text plan keeps some room (or no row is left).
    room = min(len(plan_text), MIN_PLAN_TEXT_CHARS)
    while rows and len(assemble("", True)) + room + 16 > limit:
        rows = max(0, rows - max(1, (len(assemble("", True)) + room + 16 - limit) // (MAX_ADDRESS_CHARS + 20)))
    overhead = len(assemble("", True))
    text, _ = cut(plan_text, limit - overhead - 16)
    return assemble(text, True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exitcode", type=int, required=True, help="terraform plan -detailed-exitcode: 0, 1 or 2")
    parser.add_argument("--plan-text", type=Path, required=True)
    parser.add_argument("--plan-json", type=Path)
    parser.add_argument("--artifact-url", default="")
    parser.add_argument("--commit", default="")
    parser.add_argument("--run-url", default="")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args(argv)
    if args.exitcode not in (0, 1, 2):
        parser.error(f"--exitcode must be 0, 1 or 2, not {args.exitcode}")
    if args.exitcode != 1 and (args.plan_json is None or not args.plan_json.is_file()):
        parser.error("--plan-json (terraform show -json) is required when the plan succeeded")
    plan = json.loads(args.plan_json.read_text()) if args.exitcode != 1 else None
    body = render(
        args.exitcode,
        args.plan_text.read_text(errors="replace"),
        plan,
        artifact_url=args.artifact_url,
        commit=args.commit,
        run_url=args.run_url,
    )
    if args.output:
        args.output.write_text(body)
    else:
        sys.stdout.write(body + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
