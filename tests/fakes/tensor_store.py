"""The Redis tensor store in memory: the same keys, values and expiries as RedisTensorStore, and
the rules its Lua scripts enforce (commit guarded by the cursor and the cancel mark, create once,
claims as leases, reads at a position refused once the chain moved)."""

from __future__ import annotations

import numpy as np

from tests.fakes.clock import FakeClock, atomic
from trainer.stores.codec import decode, encode
from trainer.stores.tensor_store import DEFAULT_TTL_S, NO_CURSOR, CacheLost, CommitResult, Superseded
from trainer.vocabulary import Claim

SENT = b"sent"


@atomic
class FakeTensorStore:
    def __init__(self, clock: FakeClock | None = None, ttl_s: int = DEFAULT_TTL_S) -> None:
        self.clock = clock or FakeClock()
        self.ttl_s = ttl_s
        self._kv: dict[str, tuple[bytes, float]] = {}  # key -> (value, expires at)

    # -- a key-value store with expiry, as Redis is ---------------------------------------------
    @staticmethod
    def _key(run_id: str, kind: str, name: str = "") -> str:
        return f"lnn:{{{run_id}}}:{kind}" + (f":{name}" if name else "")

    def _get(self, key: str) -> bytes | None:
        found = self._kv.get(key)
        if found is None:
            return None
        if found[1] <= self.clock():
            del self._kv[key]
            return None
        return found[0]

    def _set(self, key: str, value: bytes | str, ttl_s: float | None = None) -> None:
        data = value.encode() if isinstance(value, str) else bytes(value)
        self._kv[key] = (data, self.clock() + (self.ttl_s if ttl_s is None else ttl_s))

    def _exists(self, key: str) -> bool:
        return self._get(key) is not None

    def _decode(self, names: list[str], values: list[bytes | None]) -> dict[str, np.ndarray]:
        missing = [n for n, v in zip(names, values, strict=True) if v is None]
        if missing:
            raise KeyError(f"tensors missing from the cache: {', '.join(missing)}")
        return {n: decode(v) for n, v in zip(names, values, strict=True)}

    # -- run life cycle ---------------------------------------------------------------------
    def create_run(self, run_id: str, config_json: str, tensors: dict[str, np.ndarray], cursor: int = -1) -> bool:
        if self._exists(self._key(run_id, "cursor")) or self._exists(self._key(run_id, "cancel")):
            return False
        self._set(self._key(run_id, "config"), config_json)
        for name, value in tensors.items():
            self._set(self._key(run_id, "t", name), encode(value))
        self._set(self._key(run_id, "cursor"), str(cursor))
        return True

    def exists(self, run_id: str) -> bool:
        return self._exists(self._key(run_id, "cursor")) or self._exists(self._key(run_id, "config"))

    def config(self, run_id: str) -> str | None:
        value = self._get(self._key(run_id, "config"))
        return value.decode() if value is not None else None

    def cursor(self, run_id: str) -> int:
        value = self._get(self._key(run_id, "cursor"))
        return int(value) if value is not None else NO_CURSOR

    def snapshot(self, run_id: str, names: list[str]) -> tuple[int, bool, dict[str, np.ndarray]]:
        present = {n: v for n in names if (v := self._get(self._key(run_id, "t", n)))}
        cancelled = self._exists(self._key(run_id, "cancel"))
        return self.cursor(run_id), cancelled, self._decode(list(present), list(present.values()))

    def read_at(self, run_id: str, position: int, names: list[str]) -> dict[str, np.ndarray]:
        if not names:
            return {}
        cursor = self._get(self._key(run_id, "cursor"))
        if cursor is None:
            raise CacheLost(f"run {run_id}: the cache lost the run's chain position (at step {position})")
        if int(cursor) != position:
            raise Superseded(f"run {run_id}: the chain moved past step {position}")
        return self._decode(names, [self._get(self._key(run_id, "t", n)) for n in names])

    def commit(
        self, run_id: str, expected_cursor: int, new_cursor: int, tensors: dict[str, np.ndarray], outbox: str
    ) -> CommitResult:
        if self._exists(self._key(run_id, "cancel")):
            return CommitResult.CANCELLED
        cursor = self._get(self._key(run_id, "cursor"))
        if cursor is None:
            return CommitResult.LOST
        if cursor != str(expected_cursor).encode():
            return CommitResult.MOVED
        self._set(self._key(run_id, "outbox", str(new_cursor)), outbox)
        for name, value in tensors.items():
            self._set(self._key(run_id, "t", name), encode(value))
        self._set(self._key(run_id, "cursor"), str(new_cursor))
        return CommitResult.OK

    def outbox(self, run_id: str, seq: int) -> str | None:
        value = self._get(self._key(run_id, "outbox", str(seq)))
        return value.decode() if value is not None else None

    # -- once-only effects of a committed position -------------------------------------------
    def claim(self, run_id: str, seq: int, token: str, lease_s: int) -> Claim:
        if self._get(self._key(run_id, "outbox", str(seq))) is None:
            raise CacheLost(f"run {run_id!r}: the commit of step {seq} is gone from the cache")
        key = self._key(run_id, "handoff", str(seq))
        value = self._get(key)
        if value is None:
            self._set(key, token, lease_s)
            return Claim.ACQUIRED
        if value == SENT:
            return Claim.DONE
        return Claim.ACQUIRED if value == token.encode() else Claim.BUSY

    def mark_done(self, run_id: str, seq: int, token: str) -> bool:
        key = self._key(run_id, "handoff", str(seq))
        value = self._get(key)
        if value != token.encode() and (value is not None or self._get(self._key(run_id, "outbox", str(seq))) is None):
            return False
        self._set(key, SENT)
        return True

    def done(self, run_id: str, seq: int) -> bool:
        return self._get(self._key(run_id, "handoff", str(seq))) == SENT

    def release(self, run_id: str, seq: int, token: str) -> None:
        key = self._key(run_id, "handoff", str(seq))
        if self._get(key) == token.encode():
            del self._kv[key]

    # -- data ----------------------------------------------------------------------------------
    def put_data(self, run_id: str, arrays: dict[str, np.ndarray]) -> None:
        for name, value in arrays.items():
            self._set(self._key(run_id, "data", name), encode(value))

    def has_data(self, run_id: str, name: str = "x_train") -> bool:
        return self._exists(self._key(run_id, "data", name))

    def get_data(self, run_id: str, names: list[str]) -> dict[str, np.ndarray]:
        return self._decode(names, [self._get(self._key(run_id, "data", n)) for n in names])

    # -- cancel and clean-up -----------------------------------------------------------------
    def request_cancel(self, run_id: str, workers: bool = False) -> None:
        self._set(self._key(run_id, "cancel"), "1")

    def cancel_requested(self, run_id: str) -> bool:
        return self._exists(self._key(run_id, "cancel"))

    def run_keys(self, run_id: str) -> list[bytes]:
        prefix = self._key(run_id, "")
        return [k.encode() for k in list(self._kv) if k.startswith(prefix) and self._exists(k)]

    def delete_run(self, run_id: str, keep_cursor: bool = True) -> int:
        keys = [k.decode() for k in self.run_keys(run_id)]
        if keep_cursor:
            prefix = self._key(run_id, "")
            keys = [k for k in keys if k[len(prefix) :].partition(":")[0] in ("t", "data", "dp")]
        for key in keys:
            del self._kv[key]
        return len(keys)

    def dump_run(self, run_id: str) -> tuple[int, str | None, dict[str, np.ndarray], dict[str, np.ndarray]]:
        tensors: dict[str, np.ndarray] = {}
        data: dict[str, np.ndarray] = {}
        prefix = f"lnn:{{{run_id}}}:"
        for key in self.run_keys(run_id):
            kind, _, name = key.decode()[len(prefix) :].partition(":")
            value = self._get(key.decode())
            if kind in ("t", "data") and value is not None:
                (tensors if kind == "t" else data)[name] = decode(value)
        return self.cursor(run_id), self.config(run_id), tensors, data

    # -- for the tests: what a replaced cache node looks like ----------------------------------
    def flush(self) -> None:
        self._kv.clear()
