"""ElastiCache, local: a replication group created through the ElastiCache API is a real
redis-server behind a TLS front that authenticates the group's IAM users with signed tokens as
ElastiCache does (a wrong signature, another user's token, an expired token: refused), at the primary
endpoint the API reports; user groups follow AWS's rules; deleting the group stops it; a node that
dies is replaced at the same endpoint, empty."""

from __future__ import annotations

import datetime
import json
import os
import secrets
import signal
import time
import urllib.error
from pathlib import Path

import botocore.exceptions
import pytest
import redis
from botocore.credentials import Credentials
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.cache_tokens import signing_at
from tests.support.cloud import REGION, aws
from trainer.local.provision import FUNCTIONS_ACCESS_STRING
from trainer.stores import tensor_store
from trainer.stores.cache_token import IamCredentials, sign

EVERYTHING = "on ~* +@all"  # a test user that may also read and set the node's configuration


def create_group(ec, group_id: str, access: str = EVERYTHING, **settings) -> str:
    """A TLS replication group whose user group holds an IAM user (`access`) and the disabled
    `default` user, as the stack creates one (`settings` override); returns the IAM user's id."""
    user_id = f"{group_id}-fn"
    ec.create_user(
        UserId=user_id, UserName=user_id, Engine="valkey", AccessString=access, AuthenticationMode={"Type": "iam"}
    )
    ec.create_user(
        UserId=f"{group_id}-df", UserName="default", Engine="valkey", AccessString="off -@all", NoPasswordRequired=True
    )
    ec.create_user_group(UserGroupId=group_id, Engine="valkey", UserIds=[user_id, f"{group_id}-df"])
    ec.create_replication_group(
        **{
            "ReplicationGroupId": group_id,
            "ReplicationGroupDescription": "test",
            "Engine": "valkey",
            "CacheNodeType": "cache.t4g.micro",
            "NumCacheClusters": 1,
            "TransitEncryptionEnabled": True,
            "UserGroupIds": [group_id],
            **settings,
        }
    )
    return user_id


def delete_group(ec, group_id: str) -> None:
    ec.delete_replication_group(ReplicationGroupId=group_id)
    ec.delete_user_group(UserGroupId=group_id)
    for user_id in (f"{group_id}-fn", f"{group_id}-df"):
        ec.delete_user(UserId=user_id)


def credentials(cloud_env) -> Credentials:
    return Credentials(cloud_env["AWS_ACCESS_KEY_ID"], cloud_env["AWS_SECRET_ACCESS_KEY"])


def endpoint_of(ec, group_id: str) -> dict:
    (group,) = ec.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"]
    return group["NodeGroups"][0]["PrimaryEndpoint"]


def token_client(cloud, endpoint: dict, user_id: str, token: str, **options) -> redis.Redis:
    """A client that authenticates with `token` (no retries)."""
    ca = str(Path(cloud.workdir) / "elasticache-ca.pem")  # what the functions get as REDIS_CA_FILE
    return redis.Redis(
        host=endpoint["Address"] if "Address" in endpoint else endpoint["address"],
        port=endpoint["Port"] if "Port" in endpoint else endpoint["port"],
        ssl=True,
        ssl_ca_certs=ca,
        username=user_id,
        password=token,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),  # a refusal is the answer under test, not a blip to retry
        **options,
    )


def test_a_replication_group_is_a_real_tls_redis_that_takes_signed_tokens(cloud, cloud_env) -> None:
    ec = aws("elasticache", cloud_env)
    group_id = f"g{secrets.token_hex(3)}"
    user_id = create_group(ec, group_id)
    (group,) = ec.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"]
    endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]
    assert group["TransitEncryptionEnabled"] and group["UserGroupIds"] == [group_id]
    assert not group.get("AuthTokenEnabled")
    token = sign(credentials(cloud_env), group_id, user_id, REGION)
    assert token_client(cloud, endpoint, user_id, token).ping() is True
    with pytest.raises(redis.ConnectionError):  # TLS only: a plaintext client gets nowhere
        redis.Redis(
            host=endpoint["Address"], port=endpoint["Port"], username=user_id, password=token, socket_timeout=2
        ).ping()

    delete_group(ec, group_id)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            token_client(cloud, endpoint, user_id, token, socket_connect_timeout=1).ping()
        except redis.ConnectionError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the group's endpoint still answers after DeleteReplicationGroup")
    assert group_id not in [g["ReplicationGroupId"] for g in ec.describe_replication_groups()["ReplicationGroups"]]


def test_tokens_elasticache_would_refuse_are_refused_with_redis_auth_error(cloud, cloud_env) -> None:
    """A wrong signature, another user's token, a token for another cache, an expired one, one
    signed with a key the cloud never issued, the default user and no AUTH at all: each refused
    by the real redis-server behind the front, with Redis's own errors; a good token still works."""
    ec = aws("elasticache", cloud_env)
    group_id = f"t{secrets.token_hex(3)}"
    user_id = create_group(ec, group_id)
    other = f"t{secrets.token_hex(3)}"
    other_user = create_group(ec, other)
    try:
        endpoint, key = endpoint_of(ec, group_id), credentials(cloud_env)
        with signing_at(datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=901)):
            expired = sign(key, group_id, user_id, REGION)
        refused = {
            "wrong signature": (
                user_id,
                sign(Credentials(key.access_key, "not-the-secret"), group_id, user_id, REGION),
            ),
            "another user's token": (user_id, sign(key, group_id, other_user, REGION)),
            "another user's token as that user": (other_user, sign(key, group_id, other_user, REGION)),
            "another cache's token": (user_id, sign(key, other, user_id, REGION)),
            "expired": (user_id, expired),
            "another region": (user_id, sign(key, group_id, user_id, "eu-west-1")),
            "an unknown key": (
                user_id,
                sign(Credentials("AKIANOTTHISCLOUDS", key.secret_key), group_id, user_id, REGION),
            ),
            "a password": (user_id, "a-password"),
            "the default user": ("default", sign(key, group_id, "default", REGION)),
        }
        for case, (user, token) in refused.items():
            client = token_client(cloud, endpoint, user, token)
            with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
                client.ping()
                pytest.fail(f"{case}: accepted")
        with pytest.raises(redis.AuthenticationError, match="Authentication required"):
            token_client(cloud, endpoint, None, None).get("x")  # type: ignore[arg-type]
        with signing_at(datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=840)):
            fresh = sign(key, group_id, user_id, REGION)
        assert token_client(cloud, endpoint, user_id, fresh).ping() is True  # within its 15 minutes
        assert token_client(cloud, endpoint, user_id, fresh, protocol=3).ping() is True  # HELLO 3 AUTH
    finally:
        delete_group(ec, group_id)
        delete_group(ec, other)


def test_the_users_access_string_is_what_the_node_allows(cloud, cloud_env) -> None:
    """The functions' access string: their commands, nothing that flushes, lists or reconfigures."""
    ec = aws("elasticache", cloud_env)
    group_id = f"a{secrets.token_hex(3)}"
    user_id = create_group(ec, group_id, FUNCTIONS_ACCESS_STRING)
    try:
        client = tensor_store.connect(
            **_endpoint_kwargs(ec, cloud, group_id),
            password=None,
            tls=True,
            credential_provider=IamCredentials(group_id, user_id, REGION, lambda: credentials(cloud_env)),
        )
        assert client.set("lnn:{r}:x", b"1", ex=60) and client.mget(["lnn:{r}:x"]) == [b"1"]
        assert client.register_script("return redis.call('GET', KEYS[1])")(keys=["lnn:{r}:x"]) == b"1"
        assert list(client.scan_iter(match="lnn:*")) == [b"lnn:{r}:x"]
        for command in (("FLUSHALL",), ("KEYS", "*"), ("CONFIG", "GET", "maxmemory-policy")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
    finally:
        delete_group(ec, group_id)


def test_user_groups_follow_elasticaches_rules(cloud, cloud_env) -> None:
    ec = aws("elasticache", cloud_env)
    prefix = f"u{secrets.token_hex(3)}"
    with pytest.raises(botocore.exceptions.ClientError, match="user name equal to its user id"):
        ec.create_user(
            UserId=f"{prefix}-a",
            UserName="other",
            Engine="valkey",
            AccessString=EVERYTHING,
            AuthenticationMode={"Type": "iam"},
        )
    ec.create_user(
        UserId=f"{prefix}-a",
        UserName=f"{prefix}-a",
        Engine="valkey",
        AccessString=EVERYTHING,
        AuthenticationMode={"Type": "iam"},
    )
    with pytest.raises(botocore.exceptions.ClientError, match="DefaultUserRequired"):
        ec.create_user_group(UserGroupId=prefix, Engine="valkey", UserIds=[f"{prefix}-a"])
    with pytest.raises(botocore.exceptions.ClientError, match="UserGroupNotFound"):
        ec.describe_user_groups(UserGroupId=prefix)
    with pytest.raises(botocore.exceptions.ClientError, match="UserGroupNotFound"):
        ec.create_replication_group(
            ReplicationGroupId=prefix,
            ReplicationGroupDescription="t",
            Engine="valkey",
            CacheNodeType="cache.t4g.micro",
            TransitEncryptionEnabled=True,
            UserGroupIds=[prefix],
        )
    with pytest.raises(botocore.exceptions.ClientError, match="needs a user group with an IAM user"):
        ec.create_replication_group(
            ReplicationGroupId=prefix,
            ReplicationGroupDescription="t",
            Engine="valkey",
            CacheNodeType="cache.t4g.micro",
            TransitEncryptionEnabled=True,
            AuthToken=secrets.token_urlsafe(24),
        )
    assert prefix not in [g["ReplicationGroupId"] for g in ec.describe_replication_groups()["ReplicationGroups"]]
    ec.delete_user(UserId=f"{prefix}-a")

    group_id = f"{prefix}g"
    create_group(ec, group_id)
    (user_group,) = ec.describe_user_groups(UserGroupId=group_id)["UserGroups"]
    assert user_group["Status"] == "active" and user_group["ReplicationGroups"] == [group_id]
    assert sorted(user_group["UserIds"]) == sorted([f"{group_id}-fn", f"{group_id}-df"])
    with pytest.raises(botocore.exceptions.ClientError, match="InvalidUserGroupState"):
        ec.delete_user_group(UserGroupId=group_id)
    delete_group(ec, group_id)
    with pytest.raises(botocore.exceptions.ClientError, match="UserGroupNotFound"):
        ec.describe_user_groups(UserGroupId=group_id)


def _endpoint_kwargs(ec, cloud, group_id: str) -> dict:
    endpoint = endpoint_of(ec, group_id)
    return {
        "host": endpoint["Address"],
        "port": endpoint["Port"],
        "ca_file": str(Path(cloud.workdir) / "elasticache-ca.pem"),
    }


def test_each_group_listens_on_its_own_port_at_an_address_of_its_own(cloud, cloud_env) -> None:
    """What Terraform reads back as `port` is the port it asked for (else every plan would replace
    the cache); two groups on the same port do not collide, as two ElastiCache endpoints do not."""
    ec = aws("elasticache", cloud_env)
    groups = {}
    try:
        for port in (6379, 6379, None):
            group_id = f"p{secrets.token_hex(3)}"
            groups[group_id] = create_group(ec, group_id, NumCacheClusters=2, **({"Port": port} if port else {}))
        endpoints = {
            g["ReplicationGroupId"]: g["NodeGroups"][0]["PrimaryEndpoint"]
            for g in ec.describe_replication_groups()["ReplicationGroups"]
            if g["ReplicationGroupId"] in groups
        }
        assert [e["Port"] for e in endpoints.values()] == [6379, 6379, 6379]  # ElastiCache's default too
        assert len({e["Address"] for e in endpoints.values()}) == 3
        for group_id, endpoint in endpoints.items():
            token = sign(credentials(cloud_env), group_id, groups[group_id], REGION)
            client = token_client(cloud, endpoint, groups[group_id], token)
            assert client.set("owner", group_id) and client.get("owner") == group_id.encode()
    finally:
        for group_id in groups:
            delete_group(ec, group_id)


def test_the_groups_parameter_group_reaches_its_server(cloud, cloud_env) -> None:
    """ElastiCache's default group evicts keys with a TTL (volatile-lru); the stack's own group
    says noeviction, and that is what its server does."""
    ec = aws("elasticache", cloud_env)
    own = f"pg{secrets.token_hex(3)}"
    ec.create_cache_parameter_group(
        CacheParameterGroupName=own, CacheParameterGroupFamily="valkey8", Description="test: never evict"
    )
    ec.modify_cache_parameter_group(
        CacheParameterGroupName=own,
        ParameterNameValues=[{"ParameterName": "maxmemory-policy", "ParameterValue": "noeviction"}],
    )
    policies, groups = {}, []
    try:
        for parameter_group in (None, own):
            group_id = f"m{secrets.token_hex(3)}"
            chosen = {"CacheParameterGroupName": parameter_group} if parameter_group else {}
            user_id = create_group(ec, group_id, **chosen)
            groups.append(group_id)
            token = sign(credentials(cloud_env), group_id, user_id, REGION)
            client = token_client(cloud, endpoint_of(ec, group_id), user_id, token)
            policies[parameter_group] = client.config_get("maxmemory-policy")["maxmemory-policy"]
    finally:
        for group_id in groups:
            delete_group(ec, group_id)
        ec.delete_cache_parameter_group(CacheParameterGroupName=own)
    assert policies == {None: "volatile-lru", own: "noeviction"}


def group_client(ec, cloud, cloud_env, group_id: str, user_id: str) -> redis.Redis:
    """A client of the group's primary endpoint as DescribeReplicationGroups reports it, made as the
    functions make theirs (tensor_store.connect: TLS, a fresh token at each connect, retries with
    backoff)."""
    return tensor_store.connect(
        **_endpoint_kwargs(ec, cloud, group_id),
        password=None,
        tls=True,
        credential_provider=IamCredentials(group_id, user_id, REGION, lambda: credentials(cloud_env)),
    )


def plain_client(
    cloud, cloud_env, node: dict, group_id: str, user_id: str, key: Credentials | None = None
) -> redis.Redis:
    """A client without retries of a node as /_lnn/nodes describes it."""
    token = sign(key or credentials(cloud_env), group_id, user_id, REGION)
    return token_client(cloud, node, user_id, token, socket_connect_timeout=2)


def test_a_replaced_node_answers_at_the_same_endpoint_empty_and_clients_reconnect(cloud, cloud_env) -> None:
    """As ElastiCache replaces a failed node: down for a while, then the same endpoint (address,
    port, TLS certificate, users, the group's parameters) with empty memory; a client that held a
    connection reconnects by itself, with a fresh token."""
    ec = aws("elasticache", cloud_env)
    group_id = f"r{secrets.token_hex(3)}"
    user_id = create_group(ec, group_id)
    try:
        client = group_client(ec, cloud, cloud_env, group_id, user_id)
        client.set("tensor", b"x" * 1000)
        client.config_set("maxmemory-policy", "allkeys-lru")  # set on the node, not in the group
        old = cloud.nodes()[group_id]
        assert old["status"] == "available" and old["replacements"] == 0

        down = cloud.replace_node(group_id, delay_s=3, wait=False)
        assert down["status"] == "replacing" and down["pid"] is None
        with pytest.raises(redis.ConnectionError):  # while the node is down, its endpoint refuses
            plain_client(cloud, cloud_env, old, group_id, user_id).ping()
        new = cloud.wait_node_replaced(group_id, 1)

        assert (new["address"], new["port"]) == (old["address"], old["port"]) and new["pid"] != old["pid"]
        assert (
            group_client(ec, cloud, cloud_env, group_id, user_id).connection_pool.connection_kwargs["host"]
            == new["address"]
        )
        assert client.get("tensor") is None  # the same client, reconnected: empty memory
        assert client.dbsize() == 0
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"  # the group's
        with pytest.raises(redis.AuthenticationError):
            plain_client(
                cloud, cloud_env, new, group_id, user_id, Credentials(cloud_env["AWS_ACCESS_KEY_ID"], "wrong")
            ).ping()
        assert client.set("tensor", b"y") and client.get("tensor") == b"y"
    finally:
        delete_group(ec, group_id)
    assert group_id not in cloud.nodes()


def test_a_redis_server_killed_from_outside_is_replaced(cloud, cloud_env) -> None:
    """A node that dies without being asked to (its host fails; here, SIGKILL from outside) is
    noticed and replaced: the same endpoint answers again, empty."""
    ec = aws("elasticache", cloud_env)
    group_id = f"k{secrets.token_hex(3)}"
    user_id = create_group(ec, group_id)
    try:
        client = group_client(ec, cloud, cloud_env, group_id, user_id)
        client.set("x_train", b"1")
        old = cloud.nodes()[group_id]
        os.kill(old["pid"], signal.SIGKILL)
        new = cloud.wait_node_replaced(group_id, 1)
        assert new["deaths_seen"] == 1 and new["pid"] != old["pid"]
        assert (new["address"], new["port"]) == (old["address"], old["port"])
        assert client.exists("x_train") == 0
        assert client.ping() is True
    finally:
        delete_group(ec, group_id)


def test_a_node_replacement_request_names_a_group_and_a_delay(cloud, cloud_env) -> None:
    """A bad request is refused with the reason and kills nothing."""
    ec = aws("elasticache", cloud_env)
    group_id = f"b{secrets.token_hex(3)}"
    user_id = create_group(ec, group_id)
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
        assert group_client(ec, cloud, cloud_env, group_id, user_id).ping() is True
    finally:
        delete_group(ec, group_id)
