"""moto_patched's patch 9: ElastiCache user groups, which moto 5.2 lacks (CreateUserGroup,
DescribeUserGroups, ModifyUserGroup, DeleteUserGroup), and the rules AWS applies around them that
moto does not: an IAM-authenticated user's name is its id; a user group holds existing users, one
of them named `default`; a replication group names existing user groups, and a user group in use
by one cannot be deleted. The stack's cache authenticates its functions through an
`aws_elasticache_user_group` (trainer.local.elasticache reads its users when it starts the group's
node). Imported by `trainer.local.moto_patched.apply_patches` only (it imports moto)."""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult
from moto.elasticache import models, responses
from moto.elasticache.exceptions import ElastiCacheException


class UserGroupNotFound(ElastiCacheException):
    code = "UserGroupNotFound"

    def __init__(self, user_group_id: str) -> None:
        super().__init__(f"User group {user_group_id} not found.")


class UserGroupAlreadyExists(ElastiCacheException):
    code = "UserGroupAlreadyExists"

    def __init__(self, user_group_id: str) -> None:
        super().__init__(f"User group {user_group_id} already exists.")


class DefaultUserRequired(ElastiCacheException):
    code = "DefaultUserRequired"

    def __init__(self) -> None:
        super().__init__("A user group must contain a user named default.")


class InvalidUserGroupState(ElastiCacheException):
    code = "InvalidUserGroupState"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class InvalidParameterValue(ElastiCacheException):
    code = "InvalidParameterValue"

    def __init__(self, message: str) -> None:
        super().__init__(message)


def user_groups(backend: Any) -> dict[str, dict[str, Any]]:
    if not hasattr(backend, "lnn_user_groups"):
        backend.lnn_user_groups = {}
    return backend.lnn_user_groups


def existing_group(backend: Any, user_group_id: str) -> dict[str, Any]:
    if user_group_id not in user_groups(backend):
        raise UserGroupNotFound(user_group_id)
    return user_groups(backend)[user_group_id]


def group_users(backend: Any, user_group_id: str) -> list[Any]:
    """The users of a user group (moto's User objects)."""
    return [backend.users[u] for u in existing_group(backend, user_group_id)["UserIds"] if u in backend.users]


def _checked_users(backend: Any, user_ids: list[str]) -> list[str]:
    missing = [u for u in user_ids if u not in backend.users]
    if missing:
        raise InvalidParameterValue(f"User {missing[0]} not found.")
    if not any(backend.users[u].name == "default" for u in user_ids):
        raise DefaultUserRequired()
    return sorted(set(user_ids))


def _describe(backend: Any, group: dict[str, Any]) -> dict[str, Any]:
    in_use = [g for g, rg in backend.replication_groups.items() if group["UserGroupId"] in (rg.user_group_ids or [])]
    return {**group, "ReplicationGroups": in_use}


def _set_membership(backend: Any, user_group_id: str, user_ids: list[str], member: bool) -> None:
    for user_id in user_ids:
        user = backend.users.get(user_id)
        if user is None:
            continue
        groups = [g for g in user.user_group_ids if g != user_group_id]
        user.user_group_ids = [*groups, user_group_id] if member else groups


def create(self: Any) -> ActionResult:
    params = self._get_params()
    backend = self.elasticache_backend
    user_group_id = params["UserGroupId"]
    if user_group_id in user_groups(backend):
        raise UserGroupAlreadyExists(user_group_id)
    user_ids = _checked_users(backend, params.get("UserIds", []))
    arn = f"arn:aws:elasticache:{backend.region_name}:{backend.account_id}:usergroup:{user_group_id}"
    group = {
        "UserGroupId": user_group_id,
        "Status": "active",
        "Engine": str(params.get("Engine", "redis")).lower(),
        "UserIds": user_ids,
        "MinimumEngineVersion": "6.0",
        "ARN": arn,
    }
    user_groups(backend)[user_group_id] = group
    _set_membership(backend, user_group_id, user_ids, True)
    if params.get("Tags"):
        backend.tagging_service.tag_resource(arn, params["Tags"])
    return ActionResult(_describe(backend, group))


def describe(self: Any) -> ActionResult:
    backend = self.elasticache_backend
    user_group_id = self._get_param("UserGroupId")
    found = [existing_group(backend, user_group_id)] if user_group_id else list(user_groups(backend).values())
    return ActionResult({"UserGroups": [_describe(backend, g) for g in found]})


def modify(self: Any) -> ActionResult:
    params = self._get_params()
    backend = self.elasticache_backend
    group = existing_group(backend, params["UserGroupId"])
    removed = params.get("UserIdsToRemove", [])
    user_ids = [u for u in group["UserIds"] if u not in removed] + params.get("UserIdsToAdd", [])
    group["UserIds"] = _checked_users(backend, user_ids)
    _set_membership(backend, group["UserGroupId"], removed, False)
    _set_membership(backend, group["UserGroupId"], group["UserIds"], True)
    return ActionResult(_describe(backend, group))


def delete(self: Any) -> ActionResult:
    backend = self.elasticache_backend
    user_group_id = self._get_param("UserGroupId")
    group = _describe(backend, existing_group(backend, user_group_id))
    if group["ReplicationGroups"]:
        raise InvalidUserGroupState(f"User group {user_group_id} is in use by {', '.join(group['ReplicationGroups'])}.")
    del user_groups(backend)[user_group_id]
    _set_membership(backend, user_group_id, group["UserIds"], False)
    return ActionResult({**group, "Status": "deleting"})


def apply() -> None:
    responses.ElastiCacheResponse.create_user_group = create
    responses.ElastiCacheResponse.describe_user_groups = describe
    responses.ElastiCacheResponse.modify_user_group = modify
    responses.ElastiCacheResponse.delete_user_group = delete

    original_create_user = models.ElastiCacheBackend.create_user

    def create_user(backend: Any, **kwargs: Any) -> Any:
        if kwargs.get("authentication_type") == "iam" and kwargs.get("user_name") != kwargs.get("user_id"):
            raise InvalidParameterValue("A user with IAM authentication must have its user name equal to its user id.")
        return original_create_user(backend, **kwargs)

    models.ElastiCacheBackend.create_user = create_user

    original_create_group = models.ElastiCacheBackend.create_replication_group

    def create_replication_group(backend: Any, **kwargs: Any) -> Any:
        for user_group_id in kwargs.get("user_group_ids") or []:
            existing_group(backend, user_group_id)
        return original_create_group(backend, **kwargs)

    models.ElastiCacheBackend.create_replication_group = create_replication_group
