"""ElastiCache IAM authentication: the short-lived token a function sends as its Redis password.

The token is a SigV4 presigned request (query signing, service `elasticache`) of
`GET https://<replication-group-id>/?Action=connect&User=<user-id>`, without its scheme; ElastiCache
accepts it in AUTH <user-id> <token> for 15 minutes after it was signed. A connection once
authenticated stays so (ElastiCache ends it after 12 hours), so every *new* connection needs a fresh
token: `IamCredentials` is a redis-py credential provider, asked at each connect.

No secret exists anywhere: the function signs with its own role's credentials, which IAM lets
connect to the stack's cache and user only (elasticache:Connect).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any
from urllib.parse import urlencode

from redis.credentials import CredentialProvider

SERVICE = "elasticache"
TOKEN_LIFETIME_S = 900  # ElastiCache's: a token is accepted for 15 minutes after it was signed


def sign(credentials: Any, replication_group_id: str, user_id: str, region: str) -> str:
    """The token for `user_id` on `replication_group_id`, signed now by botocore's own presigner."""
    from botocore.hooks import HierarchicalEmitter
    from botocore.model import ServiceId
    from botocore.signers import RequestSigner

    emitter = HierarchicalEmitter()  # the signer holds it weakly: it must outlive the call
    signer = RequestSigner(ServiceId(SERVICE), region, SERVICE, "v4", credentials, emitter)
    request = {
        "method": "GET",
        "url": f"https://{replication_group_id}/?{urlencode({'Action': 'connect', 'User': user_id})}",
        "body": {},
        "headers": {},
        "context": {},
    }
    url = signer.generate_presigned_url(
        request, operation_name="connect", expires_in=TOKEN_LIFETIME_S, region_name=region
    )
    return str(url).removeprefix("https://")


@cache
def _session(access_key: str | None) -> Any:
    """One botocore session per key in the environment, as trainer.aws keeps one client per key: its
    credentials are resolved once and refresh themselves; a local cloud's new key gets a new one."""
    import botocore.session

    return botocore.session.Session()


def _process_credentials() -> Any:
    """The function's own role credentials, resolved as boto3 resolves them (the environment's on Lambda)."""
    credentials = _session(os.environ.get("AWS_ACCESS_KEY_ID")).get_credentials()
    if credentials is None:
        raise RuntimeError("no AWS credentials to sign the cache's IAM authentication token with")
    return credentials


class IamCredentials(CredentialProvider):
    """redis-py asks it for (user, password) at every new connection: a token signed just now."""

    def __init__(
        self,
        replication_group_id: str,
        user_id: str,
        region: str,
        credentials: Callable[[], Any] = _process_credentials,
    ) -> None:
        self.replication_group_id = replication_group_id
        self.user_id = user_id
        self.region = region
        self._credentials = credentials

    def get_credentials(self) -> tuple[str, str]:
        return self.user_id, sign(self._credentials(), self.replication_group_id, self.user_id, self.region)

    def __repr__(self) -> str:  # never a token in a log line
        return f"IamCredentials({self.replication_group_id!r}, {self.user_id!r}, {self.region!r})"
