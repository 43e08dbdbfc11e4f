"""ElastiCache, local: a replication group created through the ElastiCache API (moto's control plane)
is a real redis-server behind an auth front that checks IAM authentication tokens as AWS does.

CreateReplicationGroup needs TransitEncryptionEnabled and a user group (UserGroupIds) with an
IAM-authenticated user, as the stack creates it: it starts a redis-server listening on a private
Unix socket, with each IAM user of the group's user groups as an ACL user carrying the user's access
string, and in front of it a `CacheFront` (trainer.local.cache_front) at the group's primary
endpoint (DescribeReplicationGroups, what Terraform's `primary_endpoint_address` and `port` read).
The front speaks TLS and accepts AUTH <user> <token> only with a token ElastiCache would accept
(trainer.local.cache_tokens): signed for this group and that user, within its 15 minutes, with the
secret key of an access key this cloud issued (`secret_for`; the local Lambda service hands the
cloud's own key to every execution environment). Whether the signer may `elasticache:Connect` is
not evaluated: every principal of the local cloud is its owner's one key.

As on AWS, each group has an address of its own and listens on the group's Port (6379 unless the
request names another): a loopback address picked at random from 127.0.0.0/8, so that groups on the
same port -- of this cloud or of another one on the machine -- never collide, and Terraform reads
back exactly the port it asked for. Every node of a group (NumCacheClusters) is that one server. The
group's cache parameter group is applied to it (CONFIG SET): a group of the stack's own
(trainer.local.moto_patched keeps them) with its user-set parameters, otherwise ElastiCache's default
group, whose `maxmemory-policy` is volatile-lru -- so what the stack sets is observable on the
server. DeleteReplicationGroup stops it. Each node has its own throwaway CA; `ca_bundle` holds the
CAs of the nodes running, and the local Lambda service hands its path to every execution
environment as REDIS_CA_FILE (on AWS the system trust store trusts ElastiCache's CA).

A node that dies is replaced as ElastiCache replaces a failed node: after a delay, a new server
answers at the same endpoint (address, port, TLS certificate, users, parameters) with empty
memory. A watcher notices a redis-server that exited (killed from outside, say); `replace_node`
kills one on purpose (the chaos control /_lnn/replace-node). While a node is down its endpoint
refuses connections; `nodes()` tells each group's node status and how often it was replaced.
"""

from __future__ import annotations

import datetime
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from trainer.local.cache_front import CacheFront
from trainer.local.cache_tokens import refusal
from trainer.local.servers import RedisServer, make_tls_files

DEFAULT_PORT = 6379  # ElastiCache's default for Redis
# What ElastiCache's default parameter groups (default.redis7, ...) set that redis-server's own
# defaults do not: keys with a TTL are evicted when memory runs out.
DEFAULT_PARAMETERS = {"maxmemory-policy": "volatile-lru"}
ADDRESS_ATTEMPTS = 8
REPLACEMENT_DELAY_S = 1.0  # ElastiCache takes minutes; the local cloud need not
WATCH_INTERVAL_S = 0.1  # how often the watcher looks for a dead redis-server


USER_ID = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,39}$")  # ElastiCache's user ids
# An access string's ACL rules (on/off, ~keys, %R~keys, &channels, +/-commands and @categories,
# allkeys, allcommands, ...), one line: no password rule (an IAM user has none) and nothing that
# could end the redis.conf line it is written into.
ACCESS_STRING = re.compile(r"^[A-Za-z0-9 ~%&*@+\-:_.|{}\[\]?^$!()]{1,4096}$")
PASSWORD_RULES = ("nopass", "resetpass")


def user_acl_line(user_id: str, access_string: str, password: str) -> str:
    """The redis.conf `user` line of an IAM user: ValueError for an id or access string that
    ElastiCache would not take (or that would say more than ACL rules in the file)."""
    if not USER_ID.match(user_id):
        raise ValueError(f"user id {user_id!r}: letters, digits and hyphens, starting with a letter, at most 40")
    rules = access_string.split()
    if not ACCESS_STRING.match(access_string) or any(r.lower() in PASSWORD_RULES for r in rules):
        raise ValueError(f"user {user_id!r}: the access string is not a line of ACL rules without passwords")
    return f"user {user_id} >{password} {' '.join(rules)}"


class NodeStatus(str, Enum):
    AVAILABLE = "available"
    REPLACING = "replacing"  # down: its replacement comes up after the delay


@dataclass
class Node:
    """A group's node: its server and front, the parameters to apply again to a replacement, and
    its history."""

    server: RedisServer
    front: CacheFront
    ca_file: Path
    parameters: dict[str, str]
    status: NodeStatus = NodeStatus.AVAILABLE
    replacements: int = 0
    deaths_seen: int = 0  # of which the watcher found the server dead (not replaced on request)


def loopback_address(rng: random.Random) -> str:
    """A random address of 127.0.0.0/8 outside 127.0.0.0/16, where 127.0.0.1 and its neighbours
    are busy with everything else on the machine."""
    return f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def apply_parameters(server: RedisServer, parameters: dict[str, str]) -> None:
    import redis

    client = redis.Redis(**server.client_kwargs(), socket_timeout=5)
    try:
        for name, value in parameters.items():
            client.config_set(name, value)
    finally:
        client.close()


class LocalElastiCache:
    def __init__(
        self,
        ca_bundle: Path,
        replacement_delay_s: float = REPLACEMENT_DELAY_S,
        secret_for: Callable[[str], str | None] = lambda access_key_id: None,
    ) -> None:
        """`secret_for(access_key_id)`: the secret key of an access key the cloud issued, or None."""
        self.ca_bundle = ca_bundle
        self.secret_for = secret_for
        self.ca_bundle.write_bytes(b"")
        self.replacement_delay_s = replacement_delay_s
        self.nodes_by_group: dict[str, Node] = {}
        self._lock = threading.Lock()
        # Held while a server process starts or stops, so that a group's deletion and its node's
        # replacement never interleave (a replacement must not outlive the group).
        self._process_lock = threading.Lock()
        self._rng = random.SystemRandom()
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None

    def start_group(
        self,
        group_id: str,
        users: dict[str, str],
        tls: bool,
        port: int | None = None,
        parameters: dict[str, str] | None = None,
        region: str = "us-east-1",
    ) -> Node:
        """`users`: the IAM-authenticated users of the group's user groups, by id, with their
        access strings."""
        if not users:
            # Without an IAM user nobody could use the cache (and ElastiCache's default user is off):
            # the local cloud refuses, as the stack never creates such a group.
            raise ValueError(f"replication group {group_id!r}: the local cloud needs a user group with an IAM user")
        if not tls:
            raise ValueError(f"replication group {group_id!r}: IAM authentication needs TransitEncryptionEnabled")
        server = RedisServer(tls=False, unix_socket=True)
        server.acl_users = tuple(user_acl_line(user_id, access, server.password) for user_id, access in users.items())
        server.start()
        applied = {**DEFAULT_PARAMETERS, **(parameters or {})}
        assert server.workdir is not None
        tls_dir = Path(server.workdir)  # private (0700), removed with the server
        try:
            apply_parameters(server, applied)
            front = self._front(group_id, users, region, server, tls_dir, port or DEFAULT_PORT)
        except BaseException:
            server.stop()
            raise
        node = Node(server, front, tls_dir / "ca.crt", applied)
        with self._lock:
            self.nodes_by_group[group_id] = node
            self._write_bundle()
        self._watch()
        return node

    def _front(
        self, group_id: str, users: dict[str, str], region: str, server: RedisServer, tls_dir: Path, port: int
    ) -> CacheFront:
        """The node's front at an address of its own (another one when an address is taken)."""

        def authenticate(user_id: str, token: str) -> str | None:
            now = datetime.datetime.now(datetime.UTC)
            refused = "not a user of the group" if user_id not in users else None
            refused = refused or refusal(token, user_id, group_id, region, self.secret_for, now)
            if refused:
                print(f"local elasticache: {group_id} refused AUTH as {user_id!r}: {refused}", flush=True)
                return None
            return server.password

        assert server.socket_path is not None
        for attempt in range(ADDRESS_ATTEMPTS):
            host = loopback_address(self._rng)
            files = make_tls_files(tls_dir, hosts=(host, "localhost"))
            front = CacheFront(host, port, files["cert"], files["key"], Path(server.socket_path), authenticate)
            try:
                return front.start()
            except OSError:  # that address:port is taken: another address
                if attempt == ADDRESS_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def stop_group(self, group_id: str) -> None:
        with self._process_lock:
            with self._lock:
                node = self.nodes_by_group.pop(group_id, None)
                self._write_bundle()
            if node is not None:
                node.front.stop()
                node.server.stop()

    def stop_all(self) -> None:
        self._closed.set()
        for group_id in list(self.nodes_by_group):
            self.stop_group(group_id)
        if self._watcher is not None:
            self._watcher.join(timeout=10)

    def replace_node(self, group_id: str, delay_s: float | None = None) -> dict[str, object]:
        """Kill the group's node now; its replacement answers at the same endpoint, empty, after
        `delay_s` (the cloud's replacement delay by default). KeyError for an unknown group; a node
        already being replaced is left to that replacement; ValueError for a delay that is not a
        number of seconds from 0 to an hour (and then nothing is killed)."""
        delay = self.replacement_delay_s if delay_s is None else delay_s
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 3600:
            raise ValueError(f"delay_s must be a number of seconds from 0 to 3600, not {delay_s!r}")
        with self._lock:
            node = self.nodes_by_group[group_id]
            if node.status is NodeStatus.REPLACING:
                return self._describe(node)
            node.status = NodeStatus.REPLACING
        node.front.stop()
        node.server.kill()
        self._replace_later(group_id, node, float(delay))
        with self._lock:
            return self._describe(node)

    def reset_connections(self, group_id: str) -> int:
        """Reset every client connection to the group's node, which stays up with its data (a
        network fault); how many there were. KeyError for an unknown group."""
        with self._lock:
            node = self.nodes_by_group[group_id]
        return node.front.reset()

    def nodes(self) -> dict[str, dict[str, object]]:
        """Each group's node: status, endpoint, redis-server pid, replacements so far and the
        parameters applied to its server."""
        with self._lock:
            return {group_id: self._describe(node) for group_id, node in self.nodes_by_group.items()}

    @staticmethod
    def _describe(node: Node) -> dict[str, object]:
        process = node.server.process
        return {
            "status": node.status.value,
            "address": node.front.host,
            "port": node.front.port,
            "pid": process.pid if process is not None and node.status is NodeStatus.AVAILABLE else None,
            "replacements": node.replacements,
            "deaths_seen": node.deaths_seen,
            "parameters": dict(node.parameters),  # what the cloud set on the server (CONFIG SET)
        }

    def _replace_later(self, group_id: str, node: Node, delay_s: float) -> None:
        def replace() -> None:
            if self._closed.wait(max(0.0, delay_s)):
                return
            while not self._closed.is_set():
                with self._process_lock:
                    with self._lock:
                        if self.nodes_by_group.get(group_id) is not node:
                            return  # the group was deleted meanwhile: nothing to replace
                    try:
                        node.server.restart()
                        apply_parameters(node.server, node.parameters)
                        node.front.start()
                    except Exception as exc:  # its address taken for a moment, say: try again
                        print(f"local elasticache: replacing {group_id}'s node failed: {exc}; retrying", flush=True)
                    else:
                        with self._lock:
                            node.replacements += 1
                            node.status = NodeStatus.AVAILABLE
                        return
                self._closed.wait(self.replacement_delay_s)

        threading.Thread(target=replace, name=f"replace-{group_id}", daemon=True).start()

    def _watch(self) -> None:
        """Start the watcher that replaces a node whose redis-server died (once, with the first group)."""
        with self._lock:
            if self._watcher is not None or self._closed.is_set():
                return
            self._watcher = threading.Thread(target=self._watch_loop, name="elasticache-watcher", daemon=True)
        self._watcher.start()

    def _watch_loop(self) -> None:
        while not self._closed.wait(WATCH_INTERVAL_S):
            with self._lock:
                dead = [
                    (group_id, node)
                    for group_id, node in self.nodes_by_group.items()
                    if node.status is NodeStatus.AVAILABLE and node.server.exited()
                ]
                for _, node in dead:
                    node.status = NodeStatus.REPLACING
                    node.deaths_seen += 1
            for group_id, node in dead:
                node.front.stop()  # the endpoint refuses connections while the node is down
                self._replace_later(group_id, node, self.replacement_delay_s)

    def _write_bundle(self) -> None:
        cas = [node.ca_file.read_bytes() for node in self.nodes_by_group.values() if node.ca_file.exists()]
        tmp = self.ca_bundle.with_suffix(".tmp")
        tmp.write_bytes(b"".join(cas))
        tmp.replace(self.ca_bundle)

    def patch_moto(self) -> None:
        """Route moto's CreateReplicationGroup / DeleteReplicationGroup through real servers."""
        from moto.elasticache import models
        from moto.elasticache.exceptions import InvalidParameterValueException

        local = self
        original_create = models.ElastiCacheBackend.create_replication_group
        original_delete = models.ElastiCacheBackend.delete_replication_group

        def create_replication_group(backend: Any, **kwargs: Any) -> Any:
            from trainer.local.moto_user_groups import group_users

            group_id = kwargs["replication_group_id"]
            parameter_group = kwargs.get("cache_parameter_group_name") or ""
            own = getattr(backend, "lnn_parameter_groups", {}).get(parameter_group, {})
            users = {
                user.id: user.access_string
                for user_group_id in kwargs.get("user_group_ids") or []
                for user in group_users(backend, user_group_id)
                if user.authentication_type == "iam"
            }
            try:
                node = local.start_group(
                    group_id,
                    users,
                    bool(kwargs.get("transit_encryption_enabled")),
                    kwargs.get("port"),
                    dict(own.get("parameters", {})),
                    backend.region_name,
                )
            except ValueError as exc:  # a group the local cloud cannot serve: the caller's error
                raise InvalidParameterValueException(str(exc)) from exc
            try:
                group = original_create(backend, **kwargs)
            except BaseException:
                local.stop_group(group_id)
                raise
            host, port = node.front.host, node.front.port
            group.port = port
            for node_group in group.node_groups:
                node_group["primary_endpoint_address"] = host
                node_group["reader_endpoint_address"] = host
                node_group["port"] = port
                node_group["primary_endpoint"] = {"address": host, "port": port}
            return group

        def delete_replication_group(backend: Any, replication_group_id: str, retain_primary_cluster: Any) -> Any:
            group = original_delete(backend, replication_group_id, retain_primary_cluster)
            local.stop_group(replication_group_id)
            return group

        models.ElastiCacheBackend.create_replication_group = create_replication_group  # type: ignore[method-assign, assignment]
        models.ElastiCacheBackend.delete_replication_group = delete_replication_group  # type: ignore[method-assign, assignment]
