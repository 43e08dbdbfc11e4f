"""Chaos: what can go wrong in Lambda's delivery of asynchronous events, on purpose and seeded.
(Which of the local cloud's fault systems injects what: trainer.local.faults.)

- Duplicates: each event is delivered D times, to different environments at nearly the same moment
  (at-least-once delivery).
- Kills: an attempt's environment is killed mid-invocation with probability p, soon after the
  runtime picked the event up; the attempt fails as a crashed runtime does and Lambda's retries
  follow.
- Delays: each copy is held back a random time, which reorders copies and events.
- A mixed fleet: each new execution environment runs as if on one of several kinds of host, with
  that host's BLAS kernel and instruction sets (trainer.local.fleet).

Every choice comes from a generator seeded with (seed, event, copy, attempt), so a campaign repeats
whatever order the threads run in. Changing the settings (`/_lnn/chaos`) applies to the next
deliveries and the next environments; warm environments stay, as the function is unchanged.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from trainer.local import fleet


@dataclass
class Chaos:
    seed: int = 0
    duplicates: int = 1  # D: deliveries of each asynchronous event
    kill_probability: float = 0.0  # p: an attempt's environment is killed mid-invocation
    kill_window_s: float = 0.05  # the kill lands this long (at most) after the runtime picked the event up
    max_delay_s: float = 0.0  # each copy is held back up to this long (reorders copies)
    hosts: tuple[str, ...] = ()  # a mixed fleet: new environments go to these kinds of host in turn

    def __post_init__(self) -> None:
        self.hosts = fleet.check_hosts(self.hosts)

    def rng(self, *parts: object) -> random.Random:
        """A generator per (event, copy, attempt): the same choices whatever the threads' order."""
        return random.Random(":".join(str(p) for p in (self.seed, *parts)))

    @property
    def copies(self) -> int:
        return max(1, self.duplicates)

    def delay_s(self, payload: bytes, copy: int) -> float:
        """How long this copy of the event waits before it is due."""
        rng = self.rng(digest(payload), copy, "delay")
        return rng.uniform(0, self.max_delay_s) if self.max_delay_s else 0.0

    def kill_after_s(self, payload: bytes, copy: int, attempt: int) -> float | None:
        """When, after the runtime picks it up, this attempt's environment is killed; None: it is not."""
        rng = self.rng(digest(payload), copy, attempt)
        if self.kill_probability and rng.random() < self.kill_probability:
            return rng.uniform(0, self.kill_window_s)
        return None

    def host(self, placed: int) -> str | None:
        """The kind of host the `placed`-th new environment runs on (None: this machine as it is)."""
        return fleet.placement(self.hosts, self.seed, placed)


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:16]
