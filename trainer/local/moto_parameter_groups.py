"""moto_patched's patch 6: ElastiCache cache parameter groups, which moto 5.2 lacks (create, modify,
describe, describe parameters, delete), kept in memory per backend with their user-set parameters.
The stack's own group (`maxmemory-policy = noeviction`) is an `aws_elasticache_parameter_group`;
its tags are read with ListTagsForResource on a `parametergroup` ARN, which moto's ARN pattern
lacks. Imported by `trainer.local.moto_patched.apply_patches` only (it imports moto)."""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.elasticache import models, responses
from moto.elasticache.exceptions import ElastiCacheException

ARN_PATTERN = (
    r"^arn:aws:elasticache:.*:[0-9]*:(cluster|snapshot|subnetgroup|replicationgroup|user|usergroup|parametergroup):.*$"
)


class CacheParameterGroupNotFound(ElastiCacheException):
    code = "CacheParameterGroupNotFound"

    def __init__(self, name: str) -> None:
        super().__init__(f"CacheParameterGroup {name} not found.")


_original_init = models.ElastiCacheBackend.__init__


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    self.arn_regex = models.re_compile(ARN_PATTERN)
    self.lnn_parameter_groups: dict[str, dict[str, Any]] = {}


def _groups(self: Any) -> dict[str, dict[str, Any]]:
    return self.elasticache_backend.lnn_parameter_groups


def _existing(self: Any, name: str) -> dict[str, Any]:
    if name not in _groups(self):
        raise CacheParameterGroupNotFound(name)
    return _groups(self)[name]


def create(self: Any) -> ActionResult:
    params = self._get_params()
    name = params["CacheParameterGroupName"]
    backend = self.elasticache_backend
    arn = f"arn:aws:elasticache:{backend.region_name}:{backend.account_id}:parametergroup:{name}"
    _groups(self)[name] = {
        "description": {
            "CacheParameterGroupName": name,
            "CacheParameterGroupFamily": params["CacheParameterGroupFamily"],
            "Description": params.get("Description", ""),
            "IsGlobal": False,
            "ARN": arn,
        },
        "parameters": {},
    }
    if params.get("Tags"):
        backend.tagging_service.tag_resource(arn, params["Tags"])
    return ActionResult({"CacheParameterGroup": _groups(self)[name]["description"]})


def modify(self: Any) -> ActionResult:
    params = self._get_params()
    group = _existing(self, params["CacheParameterGroupName"])
    for item in params.get("ParameterNameValues", []):
        group["parameters"][item["ParameterName"]] = item["ParameterValue"]
    return ActionResult({"CacheParameterGroupName": params["CacheParameterGroupName"]})


def describe_groups(self: Any) -> ActionResult:
    name = self._get_param("CacheParameterGroupName")
    found = [_existing(self, name)] if name else list(_groups(self).values())
    return ActionResult({"CacheParameterGroups": [g["description"] for g in found]})


def describe_parameters(self: Any) -> ActionResult:
    group = _existing(self, self._get_param("CacheParameterGroupName"))
    # Only user-set values are kept: the provider asks for Source=user.
    parameters = [
        {"ParameterName": k, "ParameterValue": v, "Source": "user", "IsModifiable": True}
        for k, v in sorted(group["parameters"].items())
    ]
    return ActionResult({"Parameters": parameters})


def delete(self: Any) -> EmptyResult:
    name = self._get_param("CacheParameterGroupName")
    _existing(self, name)
    del _groups(self)[name]
    return EmptyResult()


def apply() -> None:
    models.ElastiCacheBackend.__init__ = _init
    responses.ElastiCacheResponse.create_cache_parameter_group = create
    responses.ElastiCacheResponse.modify_cache_parameter_group = modify
    responses.ElastiCacheResponse.describe_cache_parameter_groups = describe_groups
    responses.ElastiCacheResponse.describe_cache_parameters = describe_parameters
    responses.ElastiCacheResponse.delete_cache_parameter_group = delete
