"""moto server with the few AWS APIs the LNN Terraform stack needs and moto 5.2 lacks (and one it
serves too slowly to measure by, and one lookup it repeats at every request).

Run as ``python -m trainer.local.moto_patched -H 127.0.0.1 -p PORT`` (same arguments as
``python -m moto.server``). The Terraform rehearsal starts it as a child process, and the local
cloud (trainer.local.cloud) applies the same patches; the plain moto server some adapter tests
start stays unpatched.

Each patch below covers exactly one API that the AWS provider calls and moto lacks or gets
wrong, and is written so that it can be dropped as soon as moto implements the API itself:

1. ``CreateReplicationGroup`` (member clusters) -- moto ignores ``NumCacheClusters`` when cluster
   mode is disabled (it creates one node unless ``ReplicasPerNodeGroup`` is given) and never
   registers the member clusters as cache clusters, so the provider's follow-up
   ``DescribeCacheClusters`` on the first member fails with CacheClusterNotFound and
   ``num_cache_clusters`` would never match. The patch creates ``NumCacheClusters`` members and a
   cache cluster for each, carrying the group's settings (encryption, auth, windows, ...).
2. ``DeleteReplicationGroup`` -- moto marks the group "deleting" forever; the provider waits until
   the group is gone. The patch removes the group and its member clusters.
3. ``DeleteCacheSubnetGroup`` -- not implemented in moto; ``terraform destroy`` of
   ``aws_elasticache_subnet_group`` calls it. The patch implements it.
4. ``PutFunctionRecursionConfig`` / ``GetFunctionRecursionConfig`` -- not implemented in moto
   (the API behind ``aws_lambda_function_recursion_config``: Put on create/update/delete, Get on
   read). The patch stores the function's ``RecursiveLoop`` setting (default ``Terminate``).
5. ``DescribeSecurityGroupRules`` (descriptions) -- moto returns a rule's ``Description`` only for
   CIDR rules; for rules that reference a security group or a prefix list it drops it, so every
   ``aws_vpc_security_group_{ingress,egress}_rule`` with a description would plan a change forever.
   The patch returns the description the rule was created with.
6. ``CreateCacheParameterGroup`` / ``ModifyCacheParameterGroup`` / ``DescribeCacheParameterGroups``
   / ``DescribeCacheParameters`` / ``DeleteCacheParameterGroup`` -- not implemented in moto; the
   stack's own parameter group (``maxmemory-policy = noeviction``) is an
   ``aws_elasticache_parameter_group``, whose create, read and delete call them, and whose tags
   are read with ``ListTagsForResource`` on a ``parametergroup`` ARN (moto's ARN pattern lacks it).
   The patch keeps the groups and their user-set parameters in memory.
7. S3 bucket policies and ``aws:SecureTransport`` -- moto's policy evaluation knows only the
   StringEquals condition operator and treats every other condition as met, so the standard
   TLS-only statement (Deny when ``Bool aws:SecureTransport = false``) denies every request and
   the state bucket becomes unreadable. Clients reach AWS over TLS; the emulator's plain-HTTP
   listener stands in for that endpoint, so the patch evaluates bucket policies as for a TLS
   request: such a statement never applies.
8. ``UpdateFunctionConfiguration`` (``ImageConfig``) -- moto ignores it, so a function's command
   (its handler) never changes after creation; Terraform's ``image_config`` and the local Lambda
   service read it. The patch applies it.
9. ``CreateUserGroup`` / ``DescribeUserGroups`` / ``ModifyUserGroup`` / ``DeleteUserGroup`` -- not
   implemented in moto; the cache's IAM-authenticated user is in an ``aws_elasticache_user_group``
   on the replication group. The patch keeps them in memory with AWS's rules (a ``default`` user
   in every group, an IAM user's name equal to its id, a group in use is not deleted).
10. ``GetObject`` with a ``Range`` -- moto reads the whole object at every GET and slices the range
   out of it, so each ranged read of a 376 MB dataset costs a read of all of it (a quarter of a
   second here), where S3's costs its own bytes: a data-parallel run's launch and workers, which
   read a dataset object by ranges (trainer/data/direct.py), would be measured paying for bytes
   they never read. The patch hands moto's own range handling a view of the object that reads only
   the bytes it slices; its answers (206, Content-Range, 416, If-Match's 412) are moto's.
11. The service a request is for -- moto's server finds it from the request's host at every
   request, by listing its own package directory and then trying each service's URL patterns (the
   signed request's host, since the local endpoint's names no service): a tenth of the local cloud's
   CPU in a chain's tests. The answer depends on the host alone, so the patch keeps
   it per host.
"""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import unquote


def _patch_create_replication_group_member_clusters() -> None:
    """Patch 1: CreateReplicationGroup creates NumCacheClusters member cache clusters."""
    from moto.elasticache import models

    original_set_disabled = models.ReplicationGroup._set_node_members_clusters_disabled

    def set_members_disabled(self: Any, **kwargs: Any) -> None:
        # moto derives the node count from ReplicasPerNodeGroup only; honour NumCacheClusters.
        if not kwargs.get("replicas_per_node_group") and (kwargs.get("num_cache_clusters") or 1) > 1:
            kwargs["replicas_per_node_group"] = kwargs["num_cache_clusters"] - 1
        original_set_disabled(self, **kwargs)

    models.ReplicationGroup._set_node_members_clusters_disabled = set_members_disabled

    original_create = models.ElastiCacheBackend.create_replication_group

    def create_replication_group(self: Any, **kwargs: Any) -> Any:
        group = original_create(self, **kwargs)
        for node_group in group.node_groups:
            for member in node_group["node_group_members"]:
                cluster = models.CacheCluster(
                    account_id=self.account_id,
                    region_name=self.region_name,
                    cache_cluster_id=member["cache_cluster_id"],
                    cache_node_type=group.cache_node_type,
                    replication_group_id=group.replication_group_id,
                    az_mode="single-az",
                    preferred_availability_zone=member.get("preferred_availability_zone"),
                    num_cache_nodes=1,
                    engine=group.engine,
                    engine_version=group.engine_version,
                    cache_parameter_group_name=group.cache_parameter_group_name,
                    cache_subnet_group_name=group.cache_subnet_group_name,
                    transit_encryption_enabled=group.transit_encryption_enabled,
                    network_type=group.network_type,
                    ip_discovery=group.ip_discovery,
                    snapshot_name=None,
                    preferred_maintenance_window=group.preferred_maintenance_window,
                    port=group.port,
                    notification_topic_arn=group.notification_topic_arn,
                    auto_minor_version_upgrade=group.auto_minor_version_upgrade,
                    snapshot_retention_limit=group.snapshot_retention_limit,
                    snapshot_window=group.snapshot_window,
                    auth_token=kwargs.get("auth_token"),
                    outpost_mode=None,
                    preferred_outpost_arn=None,
                    preferred_availability_zones=None,
                    cache_security_group_names=group.cache_security_group_names,
                    security_group_ids=group.security_group_ids,
                    tags=None,
                    snapshot_arns=None,
                    preferred_outpost_arns=None,
                    log_delivery_configurations=[],
                    cache_node_ids_to_remove=None,
                    cache_node_ids_to_reboot=None,
                )
                # Attributes DescribeCacheClusters returns that CacheCluster's constructor lacks.
                cluster.at_rest_encryption_enabled = group.at_rest_encryption_enabled
                cluster.transit_encryption_mode = group.transit_encryption_mode
                cluster.security_groups = [
                    {"SecurityGroupId": sg, "Status": "active"} for sg in group.security_group_ids or []
                ]
                cluster.cache_parameter_group = {
                    "CacheParameterGroupName": group.cache_parameter_group_name,
                    "ParameterApplyStatus": "in-sync",
                    "CacheNodeIdsToReboot": [],
                }
                self.cache_clusters[cluster.cache_cluster_id] = cluster
        return group

    models.ElastiCacheBackend.create_replication_group = create_replication_group


def _patch_delete_replication_group() -> None:
    """Patch 2: DeleteReplicationGroup really removes the group (and its member clusters)."""
    from moto.elasticache import models

    original_delete = models.ElastiCacheBackend.delete_replication_group

    def delete_replication_group(self: Any, replication_group_id: str, retain_primary_cluster: Any) -> Any:
        group = original_delete(self, replication_group_id, retain_primary_cluster)
        self.replication_groups.pop(replication_group_id, None)
        for cluster_id in [
            cid
            for cid, c in self.cache_clusters.items()
            if getattr(c, "replication_group_id", None) == replication_group_id
        ]:
            del self.cache_clusters[cluster_id]
        return group

    models.ElastiCacheBackend.delete_replication_group = delete_replication_group


def _patch_delete_cache_subnet_group() -> None:
    """Patch 3: DeleteCacheSubnetGroup."""
    from moto.core.responses import EmptyResult
    from moto.elasticache import models, responses
    from moto.elasticache.exceptions import CacheSubnetGroupNotFound

    def backend_delete(self: Any, cache_subnet_group_name: str) -> None:
        if cache_subnet_group_name not in self.cache_subnet_groups:
            raise CacheSubnetGroupNotFound(cache_subnet_group_name)
        del self.cache_subnet_groups[cache_subnet_group_name]

    def response_delete(self: Any) -> Any:
        self.elasticache_backend.delete_cache_subnet_group(self._get_param("CacheSubnetGroupName"))
        return EmptyResult()

    models.ElastiCacheBackend.delete_cache_subnet_group = backend_delete
    responses.ElastiCacheResponse.delete_cache_subnet_group = response_delete


def _patch_function_recursion_config() -> None:
    """Patch 4: PutFunctionRecursionConfig and GetFunctionRecursionConfig (one resource, one API)."""
    from moto.awslambda import responses, urls

    urls.url_paths[r"{0}/(?P<api_version>[^/]+)/functions/(?P<function_name>[\w_:%-]+)/recursion-config/?$"] = (
        responses.LambdaResponse.dispatch
    )

    def _function(self: Any) -> Any:
        name = unquote(self.path.rstrip("/").split("/")[-2])
        return self.backend.get_function(name)  # raises ResourceNotFound for an unknown function

    def put_function_recursion_config(self: Any) -> str:
        function = _function(self)
        loop = json.loads(self.body or "{}").get("RecursiveLoop", "Terminate")
        function.lnn_recursive_loop = loop
        return json.dumps({"RecursiveLoop": loop})

    def get_function_recursion_config(self: Any) -> str:
        function = _function(self)
        return json.dumps({"RecursiveLoop": getattr(function, "lnn_recursive_loop", "Terminate")})

    responses.LambdaResponse.put_function_recursion_config = put_function_recursion_config
    responses.LambdaResponse.get_function_recursion_config = get_function_recursion_config


def _patch_describe_security_group_rules_descriptions() -> None:
    """Patch 5: DescribeSecurityGroupRules returns descriptions of group and prefix-list rules."""
    from moto.ec2.models import security_groups

    rule_cls = security_groups.SecurityGroupRule
    original_init = rule_cls.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        prefix_list = kwargs.get("prefix_list_id", args[7] if len(args) > 7 else None)
        self.lnn_prefix_list_description = (prefix_list or {}).get("Description")

    def description(self: Any) -> str | None:
        return (
            self.ip_range.get("Description")
            or self.source_group.get("Description")
            or getattr(self, "lnn_prefix_list_description", None)
        )

    rule_cls.__init__ = init
    rule_cls.description = property(description)


def _patch_cache_parameter_groups() -> None:
    """Patch 6: cache parameter groups (create, modify, describe, describe parameters, delete)."""
    from trainer.local import moto_parameter_groups

    moto_parameter_groups.apply()


def _patch_bucket_policy_secure_transport() -> None:
    """Patch 7: bucket policies see aws:SecureTransport = true (the endpoint stands in for TLS)."""
    from moto.s3 import models

    def applies_to_tls(statement: dict[str, Any]) -> bool:
        secure = statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
        return secure is None or str(secure).lower() == "true"

    def get_permission(self: Any, action: str, resource: str) -> Any:
        from moto.iam.access_control import IAMPolicy, PermissionResult

        if self.policy is None:
            return PermissionResult.NEUTRAL
        policy = json.loads(self.policy.decode())
        statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
        policy["Statement"] = [st for st in statements if applies_to_tls(st)]
        return IAMPolicy(json.dumps(policy)).is_action_permitted(action, resource)

    models.FakeBucket.get_permission = get_permission


def _patch_update_image_config() -> None:
    """Patch 8: UpdateFunctionConfiguration applies ImageConfig."""
    from moto.awslambda import models

    original = models.LambdaFunction.update_configuration

    def update_configuration(self: Any, config_updates: dict[str, Any]) -> dict[str, Any]:
        if "ImageConfig" in config_updates:
            self.image_config = models.ImageConfig(config_updates["ImageConfig"] or {})
        return original(self, config_updates)

    models.LambdaFunction.update_configuration = update_configuration


def _patch_user_groups() -> None:
    """Patch 9: ElastiCache user groups (create, describe, modify, delete) and their rules."""
    from trainer.local import moto_user_groups

    moto_user_groups.apply()


def _patch_ranged_get_object() -> None:
    """Patch 10: GetObject with a Range reads only the range's bytes of the object."""
    import threading

    from moto.s3 import models, responses

    class Ranged:
        """The object's value as moto's range handling uses it (its length, one slice), read from
        the object's buffer only where sliced."""

        def __init__(self, key: Any) -> None:
            self.key = key

        def __len__(self) -> int:
            return int(self.key.size)

        def __getitem__(self, part: slice) -> bytes:
            start, stop, _ = part.indices(len(self))
            with self.key.lock:
                self.key._value_buffer.seek(start)
                return bytes(self.key._value_buffer.read(max(0, stop - start)))

    ranged = threading.local()  # set while a GetObject with a Range runs on this thread
    value = models.FakeKey.value

    def lazy_value(self: Any) -> Any:
        return Ranged(self) if getattr(ranged, "on", False) else value.fget(self)

    models.FakeKey.value = property(lazy_value, value.fset)

    def whole(body: Any) -> Any:
        return body[:] if isinstance(body, Ranged) else body

    get_object = responses.S3Response.get_object

    def ranged_get_object(self: Any) -> Any:
        ranged.on = bool(self.headers.get("range"))
        try:
            status, headers, body = get_object(self)
        finally:
            ranged.on = False
        # Only moto's range handling (a 200 with a Range) slices the view; anything else gets bytes.
        return status, headers, (body if status == 200 else whole(body))

    responses.S3Response.get_object = ranged_get_object
    handle_range = responses.S3Response._handle_range_header

    def ranged_handle_range(self: Any, request: Any, headers: Any, content: Any) -> Any:
        status, headers, body = handle_range(self, request, headers, content)
        return status, headers, whole(body)  # a range moto answers with the whole object

    responses.S3Response._handle_range_header = ranged_handle_range


def _patch_backend_lookup() -> None:
    """Patch 11: the service a host names is looked up once per host."""
    from moto.moto_server import werkzeug_app

    dispatcher = werkzeug_app.DomainDispatcherApplication
    lookup = dispatcher.get_backend_for_host
    found: dict[str | None, Any] = {}  # the URL patterns are moto's own, the same for every instance

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host not in found:
            found[host] = lookup(self, host)
        return found[host]

    dispatcher.get_backend_for_host = get_backend_for_host


def apply_patches() -> None:
    _patch_create_replication_group_member_clusters()
    _patch_delete_replication_group()
    _patch_delete_cache_subnet_group()
    _patch_function_recursion_config()
    _patch_describe_security_group_rules_descriptions()
    _patch_cache_parameter_groups()
    _patch_bucket_policy_secure_transport()
    _patch_update_image_config()
    _patch_user_groups()
    _patch_ranged_get_object()
    _patch_backend_lookup()


def main(argv: list[str] | None = None) -> None:
    apply_patches()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
