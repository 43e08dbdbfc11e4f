"""Fault plans for the functions' own code, kept by the local cloud and read by a function's
handler at each invocation (`POST /_lnn/handler-faults`).

The cloud does not interpret a plan: it is a JSON document for the handler that injects faults
inside a function (the tests' `trainer_with_faults`: crashes, pauses and delays at named calls of
the trainer's adapters). The plan of a function is a file, `<HANDLER_FAULTS_VARIABLE>/<name>.json`,
and every execution environment gets the folder in that variable, as it gets REDIS_CA_FILE. A
plan set or cleared here takes effect at the next invocation, in the warm environments too: the
function's configuration does not change, so Lambda would not retire them, and nor does the
service (changing LNN_TEST_FAULTS in the function's variables does retire them, as on AWS)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

HANDLER_FAULTS_VARIABLE = "LNN_HANDLER_FAULTS_DIR"
# Lambda's own rule for a function name (64 characters of letters, digits, hyphens, underscores):
# a name is a file name here, so nothing else may reach the path.
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class HandlerFaultPlans:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path_of(self, function_name: str) -> Path:
        """ValueError for anything but a function's name."""
        if not isinstance(function_name, str) or not FUNCTION_NAME.match(function_name):
            raise ValueError(f"not a function name: {function_name!r}")
        return self.folder / f"{function_name}.json"

    def set(self, function_name: str, plan: dict[str, Any] | None) -> None:
        """The function's plan from its next invocation on; None clears it. Written whole (a rename),
        so an invocation reads the old plan or the new one, never a part."""
        path = self.path_of(function_name)
        if plan is None:
            path.unlink(missing_ok=True)
            return
        if not isinstance(plan, dict):
            raise ValueError("a plan is a JSON object")
        fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".plan-")
        with os.fdopen(fd, "w") as out:
            json.dump(plan, out)
        os.replace(temporary, path)

    def get(self, function_name: str) -> dict[str, Any] | None:
        path = self.path_of(function_name)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
