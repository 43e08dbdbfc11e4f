"""Redis tensor store: the chain's working state between invocations.

Keys are `lnn:{RUN_ID}:...` (trainer.keys names their families); the braces are a Redis hash tag,
so every key of a run maps to one slot and the multi-key commit script stays valid on a clustered
cache. Each step's reads go out as one pipeline and its writes as one script call: one round trip
each way.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Any, Protocol, cast

import numpy as np
import redis
from redis.backoff import ExponentialBackoff
from redis.credentials import CredentialProvider
from redis.retry import Retry

from trainer.keys import BULK_KINDS, CacheKind, cache_key, cache_prefix, stop_key
from trainer.stores.codec import decode, encode
from trainer.vocabulary import Claim

DEFAULT_TTL_S = 7 * 24 * 3600
NO_CURSOR = -2  # the run has no cursor in the store: unknown run, or the cache lost it

# Apply an invocation's writes only if the chain is exactly where the invocation found it and the
# run is not cancelled, so a duplicate or a retry racing the original can never apply the same steps
# twice. The outbox (what the commit leaves to do: history, messages, hand-off) is written with
# the tensors, so whoever completes the position later finds exactly what the committer meant.
_COMMIT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'CANCELLED' end
local cur = redis.call('GET', KEYS[1])
if not cur then return 'LOST' end
if cur ~= ARGV[1] then return 'MOVED' end
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[3], ARGV[4], 'EX', ttl)
for i = 4, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ttl) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
return 'OK'
"""

# The cursor, the cancel mark and tensors, read in one atomic step: what an invocation starts from.
_SNAPSHOT = """
local out = {redis.call('GET', KEYS[1]) or false, redis.call('EXISTS', KEYS[2])}
for i = 3, #KEYS do out[#out + 1] = redis.call('GET', KEYS[i]) or false end
return out
"""

# Tensors as they stand at chain position ARGV[1], or nothing if the chain has moved on since: a
# later read of an invocation can never mix tensors of two positions. No cursor at all is not a
# move: the cache lost the run (a replaced node comes back empty).
_READ_AT = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 'LOST' end
if cur ~= ARGV[1] then return false end
local out = {}
for i = 2, #KEYS do out[#out + 1] = redis.call('GET', KEYS[i]) or false end
return out
"""

# Create a run's state only once (a second launch or resume must not overwrite it), and never for a
# cancelled run (a resume racing a cancel must not bring its state back).
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local ttl = tonumber(ARGV[1])
for i = 3, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'EX', ttl) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
return 1
"""

# One claimant at a time for a once-only effect: a pending claim is a lease (it expires, so a
# crashed claimant's retry can take over); 'sent' is final. Only a position committed in this cache
# (its outbox, KEYS[2]) can be claimed: a copy held up while a node was replaced must not leave a
# claim, or a 'sent', in the empty node for the resumed chain to find at that position.
_CLAIM = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 'LOST' end
local v = redis.call('GET', KEYS[1])
if not v then redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2])) return 'ACQUIRED' end
if v == 'sent' then return 'DONE' end
if v == ARGV[1] then return 'ACQUIRED' end
return 'BUSY'
"""

# Done by the claim's holder, or by the last one whose lease ended while it worked, if nobody has
# taken the claim since: the effects are made, and a later copy must not make them again (a run
# that ended has no tensors left for it). A holder whose claim another copy took leaves the mark to
# that copy; one whose position a replaced node lost (no outbox) leaves none in the empty node.
_MARK_DONE = """
local v = redis.call('GET', KEYS[1])
if v ~= ARGV[1] and (v or redis.call('EXISTS', KEYS[2]) == 0) then return 0 end
redis.call('SET', KEYS[1], 'sent', 'EX', tonumber(ARGV[2]))
return 1
"""


class Superseded(RuntimeError):
    """The chain moved past the position this invocation read from: another copy committed."""


class CacheLost(RuntimeError):
    """The run's chain position is gone from the cache (a replaced or flushed node): not a race
    lost to another copy, but the run's failure; it resumes from its newest checkpoint."""


# The cache does not answer even after the client's retries (a node being replaced, say): whether it
# comes back with the run or empty, only a later invocation can tell.
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError)


class CommitResult(StrEnum):
    OK = "OK"
    MOVED = "MOVED"  # another copy committed first
    LOST = "LOST"  # the cache lost the run's position
    CANCELLED = "CANCELLED"


LARGE_VALUE = 64 * 1024  # a value past this goes out as it is, not copied into the command's buffer


class _TensorPacker:
    """hiredis packs a command fastest, but into one new buffer, copying every argument: for a
    command carrying tensors (a dataset at launch is tens of megabytes) that copy costs more than
    sending. Such commands are packed by redis-py's own serializer, which leaves large values as
    they are and has them sent as they stand."""

    def __init__(self, connection: redis.connection.AbstractConnection) -> None:
        # (redis-py annotates HiredisRespSerializer.pack's arguments as lists: it takes a command's words)
        self.small: Any = redis.connection.HiredisRespSerializer() if redis.connection.HIREDIS_AVAILABLE else None
        self.large = redis.connection.PythonRespSerializer(connection._buffer_cutoff, connection.encoder.encode)

    def pack(self, *args: object) -> list:
        if self.small is None or any(isinstance(a, bytes | memoryview) and len(a) > LARGE_VALUE for a in args):
            return self.large.pack(*args)
        return self.small.pack(*args)


class _Connection(redis.Connection):
    def _construct_command_packer(self, packer: object) -> _TensorPacker:
        return _TensorPacker(self)


class _TLSConnection(redis.SSLConnection):
    def _construct_command_packer(self, packer: object) -> _TensorPacker:
        return _TensorPacker(self)


def connect(
    host: str,
    port: int,
    password: str | None,
    tls: bool,
    ca_file: str | None = None,
    credential_provider: CredentialProvider | None = None,
) -> redis.Redis:
    """A client that retries connection errors with bounded exponential backoff. With a
    `credential_provider` (ElastiCache IAM authentication) every new connection authenticates with
    what it gives then; `password` is for a plain redis-server."""
    options: dict[str, Any] = {"ssl_ca_certs": ca_file} if tls else {}
    pool = redis.ConnectionPool(
        connection_class=_TLSConnection if tls else _Connection,
        host=host,
        port=port,
        password=password,
        credential_provider=credential_provider,
        socket_timeout=30,
        socket_connect_timeout=10,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=5),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=30,
        **options,
    )
    return redis.Redis(connection_pool=pool)


class Replies(Protocol):
    """The commands this store sends, as a synchronous client answers them. (redis-py annotates
    its replies `Awaitable | Any`, one annotation for its synchronous and asynchronous clients.)"""

    def get(self, name: str | bytes) -> bytes | None: ...
    def mget(self, keys: list[str]) -> list[bytes | None]: ...
    def set(self, name: str, value: str | bytes, ex: int | None = None) -> Any: ...
    def exists(self, *names: str) -> int: ...
    def delete(self, *names: str | bytes) -> int: ...
    def scan_iter(self, match: str | None = None, count: int | None = None) -> Iterator[bytes]: ...
    def register_script(self, script: str) -> Any: ...
    def pipeline(self, transaction: bool = True) -> Any: ...


class RedisTensorStore:
    def __init__(self, client: redis.Redis, ttl_s: int = DEFAULT_TTL_S):
        self.client = cast(Replies, client)
        self.ttl_s = ttl_s
        self._commit = client.register_script(_COMMIT)
        self._create = client.register_script(_CREATE)
        self._claim = client.register_script(_CLAIM)
        self._mark_done = client.register_script(_MARK_DONE)
        self._snapshot = client.register_script(_SNAPSHOT)
        self._read_at = client.register_script(_READ_AT)

    # -- keys: built only from a validated run id and names the code chooses -------------
    @staticmethod
    def _key(run_id: str, kind: CacheKind, name: str = "") -> str:
        return cache_key(run_id, kind, name)

    def _marks(self, run_id: str) -> list[str]:
        """The keys every write checks first: the cursor, and the cancel mark."""
        return [self._key(run_id, CacheKind.CURSOR), self._key(run_id, CacheKind.CANCEL)]

    def _tensor_keys(self, run_id: str, names: list[str]) -> list[str]:
        return [self._key(run_id, CacheKind.TENSOR, n) for n in names]

    # -- run life cycle ---------------------------------------------------------------------
    def create_run(self, run_id: str, config_json: str, tensors: dict[str, np.ndarray], cursor: int = -1) -> bool:
        """Write a run's state, positioned after step `cursor`; refused if the run has state already."""
        names = list(tensors)
        blobs = [encode(tensors[n]) for n in names]
        keys = [*self._marks(run_id), self._key(run_id, CacheKind.CONFIG)]
        keys += self._tensor_keys(run_id, names)
        return bool(self._create(keys=keys, args=[self.ttl_s, str(cursor), config_json, *blobs]))

    def exists(self, run_id: str) -> bool:
        return bool(self.client.exists(self._key(run_id, CacheKind.CURSOR), self._key(run_id, CacheKind.CONFIG)))

    def config(self, run_id: str) -> str | None:
        value = self.client.get(self._key(run_id, CacheKind.CONFIG))
        return value.decode() if value is not None else None

    def snapshot(self, run_id: str, names: list[str]) -> tuple[int, bool, dict[str, np.ndarray]]:
        """(cursor, cancel requested, tensors), read atomically in one round trip."""
        keys = [*self._marks(run_id), *self._tensor_keys(run_id, names)]
        cursor, cancel, *values = self._snapshot(keys=keys)
        # Missing tensors are left out rather than raised: a duplicate event after the run ended
        # finds its inputs gone, and only needs the cursor to know it has nothing to do.
        present = {n: v for n, v in zip(names, values, strict=True) if v}
        cursor_value = int(cursor) if cursor else NO_CURSOR
        return cursor_value, bool(cancel), self._decode(list(present), list(present.values()))

    def read_at(self, run_id: str, position: int, names: list[str]) -> dict[str, np.ndarray]:
        """Tensors as they stand at chain position `position`; Superseded if the chain has moved."""
        if not names:
            return {}
        keys = [self._key(run_id, CacheKind.CURSOR), *self._tensor_keys(run_id, names)]
        values = self._read_at(keys=keys, args=[str(position)])
        if values == b"LOST":
            raise CacheLost(f"run {run_id}: the cache lost the run's chain position (at step {position})")
        if values is None:
            raise Superseded(f"run {run_id}: the chain moved past step {position}")
        return self._decode(names, [v or None for v in values])

    def _decode(self, names: list[str], values: list[bytes | None]) -> dict[str, np.ndarray]:
        missing = [n for n, v in zip(names, values, strict=True) if v is None]
        if missing:
            raise KeyError(f"tensors missing from the cache: {', '.join(missing)}")
        return {n: decode(v) for n, v in zip(names, values, strict=True) if v is not None}

    def commit(
        self, run_id: str, expected_cursor: int, new_cursor: int, tensors: dict[str, np.ndarray], outbox: str
    ) -> CommitResult:
        """Write `tensors` and the outbox of `new_cursor` and move the cursor, atomically, only if the
        cursor is still `expected_cursor` and the run is not cancelled."""
        names = list(tensors)
        blobs = [encode(tensors[n]) for n in names]
        keys = [
            *self._marks(run_id),
            self._key(run_id, CacheKind.OUTBOX, str(new_cursor)),
            *self._tensor_keys(run_id, names),
        ]
        args: list[str | int | bytes] = [str(expected_cursor), str(new_cursor), self.ttl_s, outbox, *blobs]
        result = self._commit(keys=keys, args=args)
        return CommitResult(result.decode())

    def outbox(self, run_id: str, seq: int) -> str | None:
        """What the commit of `seq` left to do, or None (no commit there: launch or a resume)."""
        value = self.client.get(self._key(run_id, CacheKind.OUTBOX, str(seq)))
        return value.decode() if value is not None else None

    def cursor(self, run_id: str) -> int:
        value = self.client.get(self._key(run_id, CacheKind.CURSOR))
        return int(value) if value is not None else NO_CURSOR

    # -- once-only effects of a committed position -------------------------------------------
    def claim(self, run_id: str, seq: int, token: str, lease_s: int) -> Claim:
        """Claim the completion of position `seq` (its effects and its one hand-off) for `token`;
        CacheLost when the cache no longer holds that position's commit."""
        keys = [self._key(run_id, CacheKind.HANDOFF, str(seq)), self._key(run_id, CacheKind.OUTBOX, str(seq))]
        result = self._claim(keys=keys, args=[token, lease_s]).decode()
        if result == "LOST":
            raise CacheLost(f"run {run_id!r}: the commit of step {seq} is gone from the cache")
        return Claim(result)

    def mark_done(self, run_id: str, seq: int, token: str) -> bool:
        """The completion of `seq` done (True), if `token` still holds its claim or held it last."""
        keys = [self._key(run_id, CacheKind.HANDOFF, str(seq)), self._key(run_id, CacheKind.OUTBOX, str(seq))]
        return bool(self._mark_done(keys=keys, args=[token, self.ttl_s]))

    def done(self, run_id: str, seq: int) -> bool:
        return self.client.get(self._key(run_id, CacheKind.HANDOFF, str(seq))) == b"sent"

    def release(self, run_id: str, seq: int, token: str) -> None:
        key = self._key(run_id, CacheKind.HANDOFF, str(seq))
        if self.client.get(key) == token.encode():
            self.client.delete(key)

    # -- data: read-only inputs, written once at launch --------------------------------------
    def put_data(self, run_id: str, arrays: dict[str, np.ndarray]) -> None:
        pipe = self.client.pipeline(transaction=True)
        for name, value in arrays.items():
            blob = encode(value)
            pipe.set(self._key(run_id, CacheKind.DATA, name), blob, ex=self.ttl_s)
        pipe.execute()

    def has_data(self, run_id: str, name: str = "x_train") -> bool:
        """Whether the cache holds the run's data (its training set, or the array `name` of it)."""
        return bool(self.client.exists(self._key(run_id, CacheKind.DATA, name)))

    def get_data(self, run_id: str, names: list[str]) -> dict[str, np.ndarray]:
        values = self.client.mget([self._key(run_id, CacheKind.DATA, n) for n in names])
        return self._decode(names, values)

    # -- cancel and clean-up -----------------------------------------------------------------
    def request_cancel(self, run_id: str, workers: bool = False) -> None:
        """The cancel mark (no commit passes it); for a data-parallel run (`workers`), also an entry
        on its stop stream (keys.stop_key), which every wait of its workers reads: a worker blocked
        in a wait for the others stops at once, not at the wait's bound."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self._key(run_id, CacheKind.CANCEL), "1", ex=self.ttl_s)
        if workers:
            pipe.xadd(stop_key(run_id), {"why": "cancelled"})
            pipe.expire(stop_key(run_id), self.ttl_s)
        pipe.execute()

    def cancel_requested(self, run_id: str) -> bool:
        return bool(self.client.exists(self._key(run_id, CacheKind.CANCEL)))

    def run_keys(self, run_id: str) -> list[bytes]:
        return list(self.client.scan_iter(match=f"{cache_prefix(run_id)}*", count=500))

    def delete_run(self, run_id: str, keep_cursor: bool = True) -> int:
        """Remove a run's tensors and data. With `keep_cursor`, the chain's bookkeeping (cursor,
        config, cancel mark, outboxes and claims) stays until its TTL, so that late duplicates are
        still recognised and do nothing."""
        keys = self.run_keys(run_id)
        if keep_cursor:
            prefix = cache_prefix(run_id)
            keys = [k for k in keys if k.decode()[len(prefix) :].partition(":")[0] in BULK_KINDS]
        return int(self.client.delete(*keys)) if keys else 0

    def dump_run(self, run_id: str) -> tuple[int, str | None, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(cursor, config, tensors, data) of a run: what a local resume needs to restore it."""
        tensors: dict[str, np.ndarray] = {}
        data: dict[str, np.ndarray] = {}
        prefix = cache_prefix(run_id)
        for key in self.run_keys(run_id):
            kind, _, name = key.decode()[len(prefix) :].partition(":")
            if kind in BULK_KINDS:
                value = self.client.get(key)
                if value is not None:
                    (tensors if kind == CacheKind.TENSOR else data)[name] = decode(value)
        return self.cursor(run_id), self.config(run_id), tensors, data
