"""What the service counts (`/_lnn/stats`): one `Stats` shared by its parts, under the service's lock."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Stats:
    invocations_sync: int = 0
    events_accepted: int = 0
    deliveries: int = 0  # attempts started (async), copies and retries included
    duplicate_copies: int = 0  # extra copies chaos mode made
    overlapping_deliveries: int = 0  # attempts started while another copy of the same event ran
    max_concurrent_copies: int = 0
    kills: int = 0
    retries: int = 0
    timeouts: int = 0
    function_errors: int = 0
    destination_records: int = 0
    dropped_age: int = 0
    recursion_stops: int = 0
    environments_started: int = 0
    hosts: dict[str, int] = field(default_factory=dict)  # environments started per kind of host (mixed fleet)
    kernels: dict[str, int] = field(default_factory=dict)  # ... per OpenBLAS kernel they got
    environment_start_s: list[float] = field(default_factory=list)

    def clear(self) -> None:
        """Back to zero, in place: every part of the service holds this one object."""
        fresh = Stats()
        for f in fields(self):
            setattr(self, f.name, getattr(fresh, f.name))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        starts = out.pop("environment_start_s")
        out["environment_start_s"] = {
            "count": len(starts),
            "mean": round(sum(starts) / len(starts), 4) if starts else None,
            "min": round(min(starts), 4) if starts else None,
            "max": round(max(starts), 4) if starts else None,
        }
        return out
