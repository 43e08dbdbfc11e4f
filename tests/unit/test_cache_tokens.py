"""ElastiCache IAM authentication tokens: the functions sign them as AWS's presigner does, and the
local cloud's cache front accepts exactly the tokens ElastiCache accepts (signature, user, cache,
region, 15 minutes)."""

from __future__ import annotations

import datetime

import pytest
from botocore.credentials import Credentials
from botocore.model import ServiceId
from botocore.session import get_session
from botocore.signers import RequestSigner

from tests.support.cache_tokens import signing_at
from trainer.local.cache_tokens import TokenRefusal, refusal
from trainer.stores.cache_token import IamCredentials, sign

KEY = Credentials("AKIALOCALCLOUDKEY01", "the-secret")
SESSION = Credentials("ASIALOCALCLOUDKEY01", "the-secret", "a-session-token")
SECRETS = {KEY.access_key: KEY.secret_key, SESSION.access_key: SESSION.secret_key}
SIGNED_AT = datetime.datetime(2026, 12, 7, 10, 0, 0, tzinfo=datetime.UTC)


def judged(token: str, user: str = "lnn-functions", group: str = "lnn", at: float = 1.0) -> TokenRefusal | None:
    return refusal(token, user, group, "us-east-1", SECRETS.get, SIGNED_AT + datetime.timedelta(seconds=at))


def token(
    credentials: Credentials = KEY, group: str = "lnn", user: str = "lnn-functions", region: str = "us-east-1"
) -> str:
    with signing_at(SIGNED_AT):
        return sign(credentials, group, user, region)


def test_the_token_is_botocores_presigned_connect_url_without_its_scheme() -> None:
    """What AWS documents: a SigV4 query-signed GET https://<group>/?Action=connect&User=<user>,
    service elasticache, 900 seconds; botocore's own presigner makes the same bytes."""
    emitter = get_session().get_component("event_emitter")  # the signer holds it weakly: kept alive here
    signer = RequestSigner(ServiceId("elasticache"), "us-east-1", "elasticache", "v4", SESSION, emitter)
    request = {
        "method": "GET",
        "url": "https://lnn/?Action=connect&User=lnn-functions",
        "body": {},
        "headers": {},
        "context": {},
    }
    with signing_at(SIGNED_AT):
        url = signer.generate_presigned_url(request, operation_name="connect", expires_in=900, region_name="us-east-1")
    assert token(SESSION) == url.removeprefix("https://")
    assert token(SESSION).startswith("lnn/?Action=connect&User=lnn-functions&X-Amz-Algorithm=AWS4-HMAC-SHA256&")
    assert "X-Amz-Expires=900" in token(SESSION) and "X-Amz-Security-Token=a-session-token" in token(SESSION)


def test_a_good_token_is_accepted_for_its_fifteen_minutes() -> None:
    assert judged(token()) is None and judged(token(SESSION)) is None
    assert judged(token(), at=900) is None
    assert judged(token(), at=901) is TokenRefusal.EXPIRED
    assert judged(token(), at=-600) is TokenRefusal.NOT_YET_VALID  # beyond SigV4's five minutes of skew
    assert judged(token(), at=-60) is None


@pytest.mark.parametrize(
    ("made", "why"),
    [
        (lambda: token(Credentials(KEY.access_key, "not-the-secret")), TokenRefusal.BAD_SIGNATURE),
        (lambda: token(Credentials("AKIANOTISSUEDHERE01", KEY.secret_key)), TokenRefusal.UNKNOWN_KEY),
        (lambda: token(user="someone-else"), TokenRefusal.OTHER_USER),
        (lambda: token(group="other-cache"), TokenRefusal.OTHER_CACHE),
        (lambda: token(region="eu-west-1"), TokenRefusal.OTHER_REGION),
        (lambda: token().replace("User=lnn-functions", "User=lnn-functions2"), TokenRefusal.OTHER_USER),
        (lambda: token().replace("Action=connect", "Action=Connect"), TokenRefusal.MALFORMED),
        (lambda: token().replace("X-Amz-Expires=900", "X-Amz-Expires=3600"), TokenRefusal.MALFORMED),
        (
            lambda: token().replace("X-Amz-Date=20261207T100000Z", "X-Amz-Date=20261207T100500Z"),
            TokenRefusal.BAD_SIGNATURE,
        ),
        (lambda: token() + "&Action=connect", TokenRefusal.MALFORMED),
        (lambda: "a-password", TokenRefusal.MALFORMED),
        (lambda: "", TokenRefusal.MALFORMED),
    ],
)
def test_a_token_elasticache_would_refuse_is_refused_and_says_why(made, why) -> None:
    assert judged(made()) is why


def test_a_token_for_another_user_is_refused_even_when_presented_as_that_user() -> None:
    """The token names its user: one signed for `other` authenticates `other` only."""
    other = token(user="other")
    assert judged(other, user="lnn-functions") is TokenRefusal.OTHER_USER
    assert judged(other, user="other") is None


def test_the_credential_provider_gives_a_fresh_token_at_each_connect() -> None:
    provider = IamCredentials("lnn", "lnn-functions", "us-east-1", lambda: KEY)
    with signing_at(SIGNED_AT):
        first = provider.get_credentials()
    with signing_at(SIGNED_AT + datetime.timedelta(minutes=20)):
        later = provider.get_credentials()
    assert first[0] == later[0] == "lnn-functions"
    assert judged(first[1]) is None
    assert judged(later[1], at=20 * 60 + 1) is None and judged(first[1], at=20 * 60 + 1) is TokenRefusal.EXPIRED
    assert "Signature" not in repr(provider)


def test_a_users_acl_line_carries_its_access_string_and_nothing_else() -> None:
    """The local cloud writes each IAM user into its redis-server's config: an id or access string
    ElastiCache would not take, or one that would add a line or a password, is refused by name."""
    from trainer.local.elasticache import user_acl_line

    line = user_acl_line("lnn-functions", "on ~* -@all +@read -@dangerous", "private")
    assert line == "user lnn-functions >private on ~* -@all +@read -@dangerous"
    for user_id, access in (
        ("1st", "on"),
        ("has space", "on"),
        ("x" * 41, "on"),
        ("ok", "on ~*\nrename-command FLUSHALL x"),
        ("ok", "on >another-password"),
        ("ok", "on nopass"),
        ("ok", "on #0123abcd"),
        ("ok", ""),
    ):
        with pytest.raises(ValueError, match=r"user id|access string"):
            user_acl_line(user_id, access, "private")
