"""ElastiCache, local: a replication group created through the ElastiCache API (moto's control plane)
is a real redis-server.

CreateReplicationGroup starts a redis-server on a free loopback port, speaking TLS when the group
has TransitEncryptionEnabled and requiring the group's AuthToken; the group's primary endpoint
(DescribeReplicationGroups, what Terraform's `primary_endpoint_address` and `port` read) is that
server's address. DeleteReplicationGroup stops it. Each server has its own throwaway CA; `ca_bundle`
holds the CAs of the servers running, and the local Lambda service hands its path to every
execution environment as REDIS_CA_FILE (on AWS the system trust store trusts ElastiCache's CA).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from trainer.local.servers import RedisServer


class LocalElastiCache:
    def __init__(self, ca_bundle: Path) -> None:
        self.ca_bundle = ca_bundle
        self.ca_bundle.write_bytes(b"")
        self.servers: dict[str, RedisServer] = {}
        self._lock = threading.Lock()

    def start_group(self, group_id: str, auth_token: str | None, tls: bool) -> RedisServer:
        if not auth_token:
            # Without a token anyone on the network could use the cache: the local cloud refuses,
            # as the stack never creates such a group.
            raise ValueError(f"replication group {group_id!r}: the local cloud needs an AuthToken")
        server = RedisServer(password=auth_token, tls=tls).start()
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
            server = local.start_group(
                group_id, kwargs.get("auth_token"), bool(kwargs.get("transit_encryption_enabled"))
            )
            try:
                group = original_create(backend, **kwargs)
            except BaseException:
                local.stop_group(group_id)
                raise
            group.port = server.port
            for node_group in group.node_groups:
                node_group["primary_endpoint_address"] = "127.0.0.1"
                node_group["reader_endpoint_address"] = "127.0.0.1"
                node_group["port"] = server.port
                node_group["primary_endpoint"] = {"address": "127.0.0.1", "port": server.port}
            return group

        def delete_replication_group(backend: Any, replication_group_id: str, retain_primary_cluster: Any) -> Any:
            group = original_delete(backend, replication_group_id, retain_primary_cluster)
            local.stop_group(replication_group_id)
            return group

        models.ElastiCacheBackend.create_replication_group = create_replication_group
        models.ElastiCacheBackend.delete_replication_group = delete_replication_group
