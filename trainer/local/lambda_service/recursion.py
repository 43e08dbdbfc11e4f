"""Recursive loop detection, by AWS's mechanism: the service hands each invocation an X-Ray trace
header (Lambda-Runtime-Trace-Id) with a `Lineage=<id>:<count>` field; awslambdaric sets it as
_X_AMZN_TRACE_ID and botocore sends it back as X-Amzn-Trace-Id on the function's own AWS calls, so
an asynchronous invoke made from a function carries its hop count. The invocation that would be
hop 17 of a chain is stopped (sent to the on-failure destination) unless the invoked function's
recursion config is Allow."""

from __future__ import annotations

import re
import uuid

from trainer.local.lambda_service.config import RECURSION_LIMIT, FunctionConfig

_LINEAGE = re.compile(r"Lineage=([0-9a-fA-F]+):(\d+)")


def next_lineage(trace_header: str | None) -> str:
    """The chain's id and this invocation's hop count (1 for an invocation from outside Lambda)."""
    match = _LINEAGE.search(trace_header or "")
    if match:
        return f"{match.group(1)}:{int(match.group(2)) + 1}"
    return f"{uuid.uuid4().hex[:8]}:1"


def hop(lineage: str) -> int:
    return int(lineage.rsplit(":", 1)[1])


def stopped(config: FunctionConfig, lineage: str) -> bool:
    """Whether Lambda stops this invocation as a recursive loop."""
    return hop(lineage) > RECURSION_LIMIT and config.recursive_loop != "Allow"
