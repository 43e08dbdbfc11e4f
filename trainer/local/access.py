"""Only its owner can use the local cloud, although it listens on loopback, where every local
process (and, through a browser, every web page) can reach it:

- every request must be signed with the cloud's access key (SigV4's Credential, or a presigned
  URL's), /_lnn/* and Invoke included: anything else is refused with 403. The key is random per
  start: given in LNN_CLOUD_ACCESS_KEY_ID / LNN_CLOUD_SECRET_ACCESS_KEY (the starter's environment,
  never a command line), or made and printed in the ready line. Only the key id is compared (it is
  sent with every request; the signature itself is not recomputed);
- a request with an Origin header (a browser's) is refused with 403;
- a function runs one of the project's handlers only (PROJECT_HANDLERS, and those the starter allows
  with --allow-handler): CreateFunction and UpdateFunctionConfiguration naming another are refused;
  and PYTHON* and LD_* variables never reach an execution environment (lambda_service.config).
"""

from __future__ import annotations

import io
import json
import re
import secrets
from typing import Any
from urllib.parse import parse_qs

SIGV4_ACCESS_KEY = re.compile(r"Credential=(?P<key>[^/,\s]+)/")
# Lambda's control plane: CreateFunction and UpdateFunctionConfiguration (any API version moto routes).
CREATE_FUNCTION_PATH = re.compile(r"^/[^/]+/functions/?$")
UPDATE_CONFIGURATION_PATH = re.compile(r"^/[^/]+/functions/[^/]+/configuration/?$")
PROJECT_HANDLERS = ("trainer.handlers.launch.handler", "trainer.handlers.trainer.handler")
# The starter gives the cloud its key in these variables of its environment (never in argv, which
# every local user can read).
KEY_VARIABLES = {"AWS_ACCESS_KEY_ID": "LNN_CLOUD_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "LNN_CLOUD_SECRET_ACCESS_KEY"}


def new_credentials() -> dict[str, str]:
    """A random access key for one local cloud (AWS's shape: a 20-character id and a secret)."""
    return {
        "AWS_ACCESS_KEY_ID": "LNNL" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
    }


def request_access_key(environ: dict[str, Any]) -> str | None:
    """The access key id a request is signed with: SigV4's Credential (header or presigned URL) or
    SigV2's (S3's older form); None when it is not signed."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    if found := SIGV4_ACCESS_KEY.search(authorization):
        return found.group("key")
    if authorization.startswith("AWS ") and ":" in authorization:
        return authorization[4:].split(":", 1)[0]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "X-Amz-Credential" in query:
        return query["X-Amz-Credential"][0].split("/", 1)[0]
    if "AWSAccessKeyId" in query:
        return query["AWSAccessKeyId"][0]
    return None


def handler_allowed(handler: str, allowed: tuple[str, ...]) -> bool:
    """`allowed` holds handler names, and `module.*` for every handler of a module."""
    return any(handler == a or (a.endswith(".*") and handler.startswith(a[:-1])) for a in allowed)


def refusal(
    environ: dict[str, Any], path: str, method: str, access_key_id: str, allowed_handlers: tuple[str, ...]
) -> tuple[int, str, str] | None:
    """(status, error code, message) for a request the cloud does not serve; None to serve it."""
    if environ.get("HTTP_ORIGIN") is not None:
        return 403, "AccessDeniedException", "the local cloud serves no browser (the request has an Origin header)"
    if request_access_key(environ) != access_key_id:
        return 403, "UnrecognizedClientException", "the request is not signed with this local cloud's access key"
    if (method == "POST" and CREATE_FUNCTION_PATH.match(path)) or (
        method == "PUT" and UPDATE_CONFIGURATION_PATH.match(path)
    ):
        return handler_refusal(environ, allowed_handlers)
    return None


def handler_refusal(environ: dict[str, Any], allowed_handlers: tuple[str, ...]) -> tuple[int, str, str] | None:
    """A function's handler must be one of the project's: the local cloud runs it as its owner."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)  # moto reads it next
    try:
        config = json.loads(body or b"{}")
    except ValueError:
        return None  # moto answers a malformed body
    if not isinstance(config, dict):
        return None  # ... and one that is not an object
    command = (config.get("ImageConfig") or {}).get("Command") or []
    handlers = [str(h) for h in (command[:1] if command else [config.get("Handler")]) if h is not None]
    refused = [h for h in handlers if not handler_allowed(h, allowed_handlers)]
    if refused:
        return (
            400,
            "InvalidParameterValueException",
            f"handler {refused[0]!r} is not one of this local cloud's: {', '.join(allowed_handlers)}",
        )
    return None


def signed_headers(credentials: dict[str, str], method: str, url: str, data: bytes | None) -> dict[str, str]:
    """SigV4 headers for a request to the cloud's own /_lnn/ controls, as an SDK signs its calls."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=data or b"")
    key = Credentials(credentials["AWS_ACCESS_KEY_ID"], credentials["AWS_SECRET_ACCESS_KEY"])
    SigV4Auth(key, "lambda", "us-east-1").add_auth(request)
    return dict(request.headers.items())
