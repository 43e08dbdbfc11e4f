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

import datetime
from collections.abc import Callable
from typing import Any

from redis.credentials import CredentialProvider

SERVICE = "elasticache"
ALGORITHM = "AWS4-HMAC-SHA256"
TOKEN_LIFETIME_S = 900  # ElastiCache's: a token is accepted for 15 minutes after it was signed
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def signature(credentials: Any, region: str, url: str, timestamp: str) -> str:
    """The SigV4 signature of a GET of `url` (its query holds every X-Amz-* parameter but the
    signature), signed at `timestamp` with `credentials`' secret key. The signer and the local
    cloud's verifier both compute it so: botocore's canonical request, string to sign and key."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    signer = SigV4Auth(credentials, SERVICE, region)
    request = AWSRequest(method="GET", url=url)
    request.context["timestamp"] = timestamp
    return str(signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request))


def sign(
    credentials: Any, replication_group_id: str, user_id: str, region: str, now: datetime.datetime | None = None
) -> str:
    """The token for `user_id` on `replication_group_id`, signed at `now` (UTC; the clock's by default)."""
    from botocore.utils import percent_encode_sequence

    frozen = credentials.get_frozen_credentials() if hasattr(credentials, "get_frozen_credentials") else credentials
    moment = now or datetime.datetime.now(datetime.UTC)
    timestamp = moment.strftime(TIMESTAMP_FORMAT)
    params: dict[str, str | int] = {
        "X-Amz-Algorithm": ALGORITHM,
        "X-Amz-Credential": f"{frozen.access_key}/{timestamp[:8]}/{region}/{SERVICE}/aws4_request",
        "X-Amz-Date": timestamp,
        "X-Amz-Expires": TOKEN_LIFETIME_S,
        "X-Amz-SignedHeaders": "host",
    }
    if frozen.token:
        params["X-Amz-Security-Token"] = frozen.token
    action = percent_encode_sequence({"Action": "connect", "User": user_id})
    url = f"https://{replication_group_id}/?{action}&{percent_encode_sequence(params)}"
    return url.removeprefix("https://") + f"&X-Amz-Signature={signature(frozen, region, url, timestamp)}"


def _process_credentials() -> Any:
    """The function's own role credentials, resolved as boto3 resolves them (the environment's on
    Lambda), at each call: a local cloud's new key, or refreshed role credentials, are used at once."""
    import botocore.session

    credentials = botocore.session.Session().get_credentials()
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
