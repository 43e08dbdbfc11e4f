"""ElastiCache, local: a replication group created through the ElastiCache API (moto's control plane)
is a real redis-server.

CreateReplicationGroup starts a redis-server, speaking TLS when the group has
TransitEncryptionEnabled and requiring the group's AuthToken; the group's primary endpoint
(DescribeReplicationGroups, what Terraform's `primary_endpoint_address` and `port` read) is that
server's address. As on AWS, each group has an address of its own and listens on the group's Port
(6379 unless the request names another): a loopback address picked at random from 127.0.0.0/8, so
that groups on the same port -- of this cloud or of another one on the machine -- never collide,
and Terraform reads back exactly the port it asked for. Every node of a group (NumCacheClusters)
is that one server. The group's cache parameter group is applied to it (CONFIG SET): a group of
the stack's own (trainer.local.moto_patched keeps them) with its user-set parameters, otherwise
ElastiCache's default group, whose `maxmemory-policy` is volatile-lru -- so what the stack sets is
observable on the server. DeleteReplicationGroup stops it. Each server has its own throwaway CA; `ca_bundle`
holds the CAs of the servers running, and the local Lambda service hands its path to every
execution environment as REDIS_CA_FILE (on AWS the system trust store trusts ElastiCache's CA).
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

from trainer.local.servers import RedisServer

DEFAULT_PORT = 6379  # ElastiCache's default for Redis
# What ElastiCache's default parameter groups (default.redis7, ...) set that redis-server's own
# defaults do not: keys with a TTL are evicted when memory runs out.
DEFAULT_PARAMETERS = {"maxmemory-policy": "volatile-lru"}
ADDRESS_ATTEMPTS = 8


def loopback_address(rng: random.Random) -> str:
    """A random address of 127.0.0.0/8 outside 127.0.0.0/16, where 127.0.0.1 and its neighbours
    are busy with everything else on the machine."""
    return f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def apply_parameters(server: RedisServer, parameters: dict[str, str]) -> None:
    import redis

    client = redis.Redis(**server.client_kwargs(), socket_timeout=5)  # type: ignore[arg-type]
    try:
        for name, value in parameters.items():
            client.config_set(name, value)
    finally:
        client.close()


class LocalElastiCache:
    def __init__(self, ca_bundle: Path) -> None:
        self.ca_bundle = ca_bundle
        self.ca_bundle.write_bytes(b"")
        self.servers: dict[str, RedisServer] = {}
        self._lock = threading.Lock()
        self._rng = random.SystemRandom()

    def start_group(
        self,
        group_id: str,
        auth_token: str | None,
        tls: bool,
        port: int | None = None,
        parameters: dict[str, str] | None = None,
    ) -> RedisServer:
        if not auth_token:
            # Without a token anyone on the network could use the cache: the local cloud refuses,
            # as the stack never creates such a group.
            raise ValueError(f"replication group {group_id!r}: the local cloud needs an AuthToken")
        for attempt in range(ADDRESS_ATTEMPTS):
            server = RedisServer(
                port=port or DEFAULT_PORT, host=loopback_address(self._rng), password=auth_token, tls=tls
            )
            try:
                server.start()
                break
            except RuntimeError:  # that address:port is taken (redis-server exits): another address
                if attempt == ADDRESS_ATTEMPTS - 1:
                    raise
        try:
            apply_parameters(server, {**DEFAULT_PARAMETERS, **(parameters or {})})
        except BaseException:
            server.stop()
            raise
        with self._lock:
            self.servers[group_id] = server
            self._write_bundle()
        return server

    def stop_group(self, group_id: str) -> None:
        with self._lock:
            server = self.servers.pop(group_id, None)
            self._write_bundle()
        if server is not None:
            server.stop()

    def stop_all(self) -> None:
        for group_id in list(self.servers):
            self.stop_group(group_id)

    def _write_bundle(self) -> None:
        cas = [Path(s.ca_file).read_bytes() for s in self.servers.values() if s.ca_file and Path(s.ca_file).exists()]
        tmp = self.ca_bundle.with_suffix(".tmp")
        tmp.write_bytes(b"".join(cas))
        tmp.replace(self.ca_bundle)

    def patch_moto(self) -> None:
        """Route moto's CreateReplicationGroup / DeleteReplicationGroup through real servers."""
        from moto.elasticache import models

        local = self
        original_create = models.ElastiCacheBackend.create_replication_group
        original_delete = models.ElastiCacheBackend.delete_replication_group

        def create_replication_group(backend: Any, **kwargs: Any) -> Any:
            group_id = kwargs["replication_group_id"]
            parameter_group = kwargs.get("cache_parameter_group_name") or ""
            own = getattr(backend, "lnn_parameter_groups", {}).get(parameter_group, {})
            server = local.start_group(
                group_id,
                kwargs.get("auth_token"),
                bool(kwargs.get("transit_encryption_enabled")),
                kwargs.get("port"),
                dict(own.get("parameters", {})),
            )
            try:
                group = original_create(backend, **kwargs)
            except BaseException:
                local.stop_group(group_id)
                raise
            group.port = server.port
            for node_group in group.node_groups:
                node_group["primary_endpoint_address"] = server.host
                node_group["reader_endpoint_address"] = server.host
                node_group["port"] = server.port
                node_group["primary_endpoint"] = {"address": server.host, "port": server.port}
            return group

        def delete_replication_group(backend: Any, replication_group_id: str, retain_primary_cluster: Any) -> Any:
            group = original_delete(backend, replication_group_id, retain_primary_cluster)
            local.stop_group(replication_group_id)
            return group

        models.ElastiCacheBackend.create_replication_group = create_replication_group
        models.ElastiCacheBackend.delete_replication_group = delete_replication_group
