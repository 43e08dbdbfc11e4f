"""ElastiCache, local: a replication group created through the ElastiCache API is a real TLS
redis-server requiring the group's auth token, at the primary endpoint the API reports; deleting
the group stops it; a node that dies is replaced at the same endpoint, empty."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
import urllib.error
from pathlib import Path

import pytest
import redis

from tests.support.cloud import aws
from trainer.stores import tensor_store


def create_group(ec, group_id: str, token: str, **settings) -> None:
    """A TLS replication group with an auth token, as the stack creates one (`settings` override)."""
    ec.create_replication_group(
        **{
            "ReplicationGroupId": group_id,
            "ReplicationGroupDescription": "test",
            "Engine": "redis",
            "CacheNodeType": "cache.t4g.micro",
            "NumCacheClusters": 1,
            "TransitEncryptionEnabled": True,
            "AuthToken": token,
            **settings,
        }
    )


def test_a_replication_group_is_a_real_tls_redis_with_its_token(cloud, cloud_env) -> None:
    ec = aws("elasticache", cloud_env)
    group_id, token = f"g{secrets.token_hex(3)}", secrets.token_urlsafe(24)
    create_group(ec, group_id, token)
    (group,) = ec.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"]
    endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]
    assert group["TransitEncryptionEnabled"] and group["AuthTokenEnabled"]
    ca = str(Path(cloud.workdir) / "elasticache-ca.pem")  # what the functions get as REDIS_CA_FILE
    tls = {"host": endpoint["Address"], "port": endpoint["Port"], "ssl": True, "ssl_ca_certs": ca}
    assert redis.Redis(**tls, password=token, socket_timeout=5).ping() is True
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(**tls, password="not-the-token", socket_timeout=5).ping()
    with pytest.raises(redis.ConnectionError):  # TLS only: a plaintext client gets nowhere
        redis.Redis(host=endpoint["Address"], port=endpoint["Port"], password=token, socket_timeout=2).ping()

    ec.delete_replication_group(ReplicationGroupId=group_id)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis(**tls, password=token, socket_timeout=1).ping()
        except redis.ConnectionError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the group's redis-server still answers after DeleteReplicationGroup")
    assert group_id not in [g["ReplicationGroupId"] for g in ec.describe_replication_groups()["ReplicationGroups"]]


def test_each_group_listens_on_its_own_port_at_an_address_of_its_own(cloud, cloud_env) -> None:
    """What Terraform reads back as `port` is the port it asked for (else every plan would replace
    the cache); two groups on the same port do not collide, as two ElastiCache endpoints do not."""
    ec = aws("elasticache", cloud_env)
    ca = str(Path(cloud.workdir) / "elasticache-ca.pem")
    groups = {}
    try:
        for port in (6379, 6379, None):
            group_id, token = f"p{secrets.token_hex(3)}", secrets.token_urlsafe(24)
            create_group(ec, group_id, token, NumCacheClusters=2, **({"Port": port} if port else {}))
            groups[group_id] = token
        endpoints = {
            g["ReplicationGroupId"]: g["NodeGroups"][0]["PrimaryEndpoint"]
            for g in ec.describe_replication_groups()["ReplicationGroups"]
            if g["ReplicationGroupId"] in groups
        }
        assert [e["Port"] for e in endpoints.values()] == [6379, 6379, 6379]  # ElastiCache's default too
        assert len({e["Address"] for e in endpoints.values()}) == 3
        for group_id, endpoint in endpoints.items():
            client = redis.Redis(
                host=endpoint["Address"],
                port=endpoint["Port"],
                password=groups[group_id],
                ssl=True,
                ssl_ca_certs=ca,
                socket_timeout=5,
            )
            assert client.set("owner", group_id) and client.get("owner") == group_id.encode()
    finally:
        for group_id in groups:
            ec.delete_replication_group(ReplicationGroupId=group_id)


def test_the_groups_parameter_group_reaches_its_server(cloud, cloud_env) -> None:
    """ElastiCache's default group evicts keys with a TTL (volatile-lru); the stack's own group
    says noeviction, and that is what its server does."""
    ec = aws("elasticache", cloud_env)
    own = f"pg{secrets.token_hex(3)}"
    ec.create_cache_parameter_group(
        CacheParameterGroupName=own, CacheParameterGroupFamily="redis7", Description="test: never evict"
    )
    ec.modify_cache_parameter_group(
        CacheParameterGroupName=own,
        ParameterNameValues=[{"ParameterName": "maxmemory-policy", "ParameterValue": "noeviction"}],
    )
    ca = str(Path(cloud.workdir) / "elasticache-ca.pem")
    policies, groups = {}, []
    try:
        for parameter_group in (None, own):
            group_id, token = f"m{secrets.token_hex(3)}", secrets.token_urlsafe(24)
            chosen = {"CacheParameterGroupName": parameter_group} if parameter_group else {}
            create_group(ec, group_id, token, **chosen)
            groups.append(group_id)
            (group,) = ec.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"]
            endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]
            client = redis.Redis(
                host=endpoint["Address"], port=endpoint["Port"], password=token, ssl=True, ssl_ca_certs=ca
            )
            policies[parameter_group] = client.config_get("maxmemory-policy")["maxmemory-policy"]
    finally:
        for group_id in groups:
            ec.delete_replication_group(ReplicationGroupId=group_id)
        ec.delete_cache_parameter_group(CacheParameterGroupName=own)
    assert policies == {None: "volatile-lru", own: "noeviction"}


def group_client(ec, cloud, group_id: str, token: str) -> redis.Redis:
    """A client of the group's primary endpoint as DescribeReplicationGroups reports it, made as the
    functions make theirs (tensor_store.connect: TLS, the token, retries with backoff)."""
    (group,) = ec.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"]
    endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]
    ca = str(Path(cloud.workdir) / "elasticache-ca.pem")
    return tensor_store.connect(endpoint["Address"], endpoint["Port"], token, tls=True, ca_file=ca)


def plain_client(cloud, node: dict, token: str) -> redis.Redis:
    """A client without retries of a node as /_lnn/nodes describes it."""
    ca = str(Path(cloud.workdir) / "elasticache-ca.pem")
    return redis.Redis(
        host=node["address"], port=node["port"], password=token, ssl=True, ssl_ca_certs=ca, socket_timeout=2
    )


def test_a_replaced_node_answers_at_the_same_endpoint_empty_and_clients_reconnect(cloud, cloud_env) -> None:
    """As ElastiCache replaces a failed node: down for a while, then the same endpoint (address,
    port, TLS certificate, token, the group's parameters) with empty memory; a client that held a
    connection reconnects by itself."""
    ec = aws("elasticache", cloud_env)
    group_id, token = f"r{secrets.token_hex(3)}", secrets.token_urlsafe(24)
    create_group(ec, group_id, token)
    try:
        client = group_client(ec, cloud, group_id, token)
        client.set("tensor", b"x" * 1000)
        client.config_set("maxmemory-policy", "allkeys-lru")  # set on the node, not in the group
        old = cloud.nodes()[group_id]
        assert old["status"] == "available" and old["replacements"] == 0

        down = cloud.replace_node(group_id, delay_s=3, wait=False)
        assert down["status"] == "replacing" and down["pid"] is None
        with pytest.raises(redis.ConnectionError):  # while the node is down, its endpoint refuses
            plain_client(cloud, old, token).ping()
        new = cloud.wait_node_replaced(group_id, 1)

        assert (new["address"], new["port"]) == (old["address"], old["port"]) and new["pid"] != old["pid"]
        assert group_client(ec, cloud, group_id, token).connection_pool.connection_kwargs["host"] == new["address"]
        assert client.get("tensor") is None  # the same client, reconnected: empty memory
        assert client.dbsize() == 0
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"  # the group's
        with pytest.raises(redis.AuthenticationError):
            plain_client(cloud, new, "not-the-token").ping()
        assert client.set("tensor", b"y") and client.get("tensor") == b"y"
    finally:
        ec.delete_replication_group(ReplicationGroupId=group_id)
    assert group_id not in cloud.nodes()


def test_a_redis_server_killed_from_outside_is_replaced(cloud, cloud_env) -> None:
    """A node that dies without being asked to (its host fails; here, SIGKILL from outside) is
    noticed and replaced: the same endpoint answers again, empty."""
    ec = aws("elasticache", cloud_env)
    group_id, token = f"k{secrets.token_hex(3)}", secrets.token_urlsafe(24)
    create_group(ec, group_id, token)
    try:
        client = group_client(ec, cloud, group_id, token)
        client.set("x_train", b"1")
        old = cloud.nodes()[group_id]
        os.kill(old["pid"], signal.SIGKILL)
        new = cloud.wait_node_replaced(group_id, 1)
        assert new["deaths_seen"] == 1 and new["pid"] != old["pid"]
        assert (new["address"], new["port"]) == (old["address"], old["port"])
        assert client.exists("x_train") == 0
        assert client.ping() is True
    finally:
        ec.delete_replication_group(ReplicationGroupId=group_id)


def test_a_node_replacement_request_names_a_group_and_a_delay(cloud, cloud_env) -> None:
    """A bad request is refused with the reason and kills nothing."""
    ec = aws("elasticache", cloud_env)
    group_id, token = f"b{secrets.token_hex(3)}", secrets.token_urlsafe(24)
    create_group(ec, group_id, token)
    try:
        before = cloud.nodes()[group_id]
        for request, status, words in (
            ({"replication_group_id": "no-such-group"}, 404, "no replication group 'no-such-group'"),
            ({"replication_group_id": group_id, "delay_s": -1}, 400, "delay_s must be a number"),
            ({"replication_group_id": group_id, "delay_s": "soon"}, 400, "delay_s must be a number"),
        ):
            with pytest.raises(urllib.error.HTTPError) as refused:
                cloud._call("/_lnn/replace-node", request)
            assert refused.value.code == status and words in json.loads(refused.value.read())["message"]
        assert cloud.nodes()[group_id] == before
        assert group_client(ec, cloud, group_id, token).ping() is True
    finally:
        ec.delete_replication_group(ReplicationGroupId=group_id)
