"""The rules by which ElastiCache accepts an IAM authentication token (trainer.stores.cache_token
signs them), checked by the local cloud's cache front as AWS checks them: a presigned
`connect` of this replication group for the user named in AUTH, signed with a key the cloud
issued (the signature recomputed with its secret), in the group's region, and no older than its
lifetime (at most 15 minutes)."""

from __future__ import annotations

import datetime
import hmac
from collections.abc import Callable
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl

from trainer.stores.cache_token import SERVICE, TOKEN_LIFETIME_S

ALGORITHM = "AWS4-HMAC-SHA256"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"

CLOCK_SKEW_S = 300  # SigV4's tolerance for a signer's clock ahead of the service's


def signature(credentials: Any, region: str, url: str, timestamp: str) -> str:
    """The SigV4 signature of a GET of `url` (its query holds every X-Amz-* parameter but the
    signature), signed at `timestamp` with `credentials`' secret key: botocore's canonical request,
    string to sign and key, as its presigner computed them for the token."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    signer = SigV4Auth(credentials, SERVICE, region)
    request = AWSRequest(method="GET", url=url)
    request.context["timestamp"] = timestamp
    return str(signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request))


class TokenRefusal(StrEnum):
    MALFORMED = "not a presigned elasticache connect request"
    OTHER_CACHE = "signed for another cache"
    OTHER_USER = "signed for another user"
    OTHER_REGION = "signed for another region"
    NOT_YET_VALID = "signed in the future"
    EXPIRED = "expired"
    UNKNOWN_KEY = "signed with a key this cloud did not issue"
    BAD_SIGNATURE = "its signature does not match"


def refusal(
    token: str,
    user_id: str,
    replication_group_id: str,
    region: str,
    secret_for: Callable[[str], str | None],
    now: datetime.datetime,
) -> TokenRefusal | None:
    """Why ElastiCache would refuse `token` as `user_id`'s password on `replication_group_id`; None
    when it accepts it."""
    host, _, query = token.partition("/?")
    pairs = parse_qsl(query, keep_blank_values=True)
    params = dict(pairs)
    if not host or len(params) != len(pairs) or params.get("Action") != "connect":
        return TokenRefusal.MALFORMED
    if params.get("X-Amz-Algorithm") != ALGORITHM or params.get("X-Amz-SignedHeaders") != "host":
        return TokenRefusal.MALFORMED
    scope = params.get("X-Amz-Credential", "").split("/")
    signed = params.get("X-Amz-Signature", "")
    try:
        signed_at = datetime.datetime.strptime(params.get("X-Amz-Date", ""), TIMESTAMP_FORMAT).replace(
            tzinfo=datetime.UTC
        )
        lifetime = int(params.get("X-Amz-Expires", ""))
    except ValueError:
        return TokenRefusal.MALFORMED
    if len(scope) != 5 or scope[3:] != [SERVICE, "aws4_request"] or scope[1] != signed_at.strftime("%Y%m%d"):
        return TokenRefusal.MALFORMED
    if not signed or not 0 < lifetime <= TOKEN_LIFETIME_S:
        return TokenRefusal.MALFORMED
    if host.lower() != replication_group_id.lower():
        return TokenRefusal.OTHER_CACHE
    if params.get("User") != user_id:
        return TokenRefusal.OTHER_USER
    if scope[2] != region:
        return TokenRefusal.OTHER_REGION
    if signed_at > now + datetime.timedelta(seconds=CLOCK_SKEW_S):
        return TokenRefusal.NOT_YET_VALID
    if now > signed_at + datetime.timedelta(seconds=lifetime):
        return TokenRefusal.EXPIRED
    secret = secret_for(scope[0])
    if secret is None:
        return TokenRefusal.UNKNOWN_KEY
    from botocore.credentials import Credentials

    unsigned = (
        "https://" + token[: token.rindex("&X-Amz-Signature=")] if token.endswith(f"&X-Amz-Signature={signed}") else ""
    )
    if not unsigned:
        return TokenRefusal.MALFORMED  # the signature must come last, as a presigner puts it
    expected = signature(
        Credentials(scope[0], secret, params.get("X-Amz-Security-Token")),
        region,
        unsigned,
        params["X-Amz-Date"],
    )
    if not hmac.compare_digest(expected, signed):
        return TokenRefusal.BAD_SIGNATURE
    return None
