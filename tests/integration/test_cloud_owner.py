"""The local cloud serves its owner only: it listens on loopback, where every local process (and,
through a browser, every web page) reaches it, so a request must be signed with the cloud's own
access key, a browser's request (Origin) is refused, a function runs one of the project's handlers
(and the test functions this cloud allows), and no PYTHON* or LD_* variable of a function's
configuration reaches its execution environment."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import psutil
import pytest
import redis
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.support.cloud import ACCOUNT, REGION, aws, invoke, make_function
from trainer.local.cloud import CloudProcess, new_credentials, signed_headers
from trainer.stores import cache_token


def _stranger(service: str, cloud_env: dict[str, str]):
    """A client of the same endpoint signing with a key of its own."""
    other = new_credentials()
    return boto3.client(
        service,
        endpoint_url=cloud_env["AWS_ENDPOINT_URL"],
        region_name=REGION,
        aws_access_key_id=other["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=other["AWS_SECRET_ACCESS_KEY"],
    )


def _status(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _forbidden(call) -> None:
    with pytest.raises(ClientError) as info:
        call()
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, info.value.response


def test_a_request_signed_with_another_key_gets_403(cloud: CloudProcess, cloud_env, stack) -> None:
    launch = stack["LAUNCH_FUNCTION_NAME"]
    before = cloud.stats()["invocations_sync"]
    _forbidden(lambda: _stranger("lambda", cloud_env).invoke(FunctionName=launch, Payload=b"{}"))
    _forbidden(lambda: _stranger("lambda", cloud_env).list_functions())
    _forbidden(lambda: _stranger("s3", cloud_env).list_objects_v2(Bucket=stack["MODEL_BUCKET"]))
    _forbidden(lambda: _stranger("dynamodb", cloud_env).scan(TableName=stack["TABLE_NAME"]))
    assert cloud.stats()["invocations_sync"] == before  # the launch never ran
    # The cloud's own controls too: unsigned, or signed with another key.
    url = f"{cloud.endpoint_url}/_lnn/stats"
    assert _status(urllib.request.Request(url)) == 403
    stranger = signed_headers(new_credentials(), "GET", url, None)
    assert _status(urllib.request.Request(url, headers=stranger)) == 403
    body = json.dumps({"function": launch, "hold": True}).encode()
    hold = f"{cloud.endpoint_url}/_lnn/hold"
    assert _status(urllib.request.Request(hold, data=body, headers={"Content-Type": "text/plain"})) == 403
    # The owner's key is served.
    assert _status(urllib.request.Request(url, headers=signed_headers(cloud.credentials, "GET", url, None))) == 200


def test_the_cache_takes_tokens_signed_with_the_owners_key_only(cloud: CloudProcess, cloud_env, stack) -> None:
    """The cache's IAM authentication checks a token's signature against the key the cloud issued:
    the same token shape signed with another key (or for another user) is refused."""
    (group,) = aws("elasticache", cloud_env).describe_replication_groups(
        ReplicationGroupId=stack["REPLICATION_GROUP_ID"]
    )["ReplicationGroups"]
    endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]

    def client(key: dict[str, str], user: str) -> redis.Redis:
        token = cache_token.sign(
            Credentials(key["AWS_ACCESS_KEY_ID"], key["AWS_SECRET_ACCESS_KEY"]),
            group["ReplicationGroupId"],
            user,
            REGION,
        )
        return redis.Redis(
            host=endpoint["Address"],
            port=endpoint["Port"],
            username=stack["REDIS_USER_ID"],
            password=token,
            ssl=True,
            ssl_ca_certs=str(Path(cloud.workdir) / "elasticache-ca.pem"),
            socket_timeout=5,
        )

    stranger = new_credentials()
    forged = {
        "AWS_ACCESS_KEY_ID": cloud.credentials["AWS_ACCESS_KEY_ID"],
        **{"AWS_SECRET_ACCESS_KEY": stranger["AWS_SECRET_ACCESS_KEY"]},
    }
    for key, user in (
        (stranger, stack["REDIS_USER_ID"]),
        (forged, stack["REDIS_USER_ID"]),
        (cloud.credentials, "default"),
    ):
        with pytest.raises(redis.AuthenticationError):
            client(key, user).ping()
    assert client(cloud.credentials, stack["REDIS_USER_ID"]).ping() is True


def test_a_request_with_an_origin_gets_403(cloud: CloudProcess, cloud_env, stack) -> None:
    """A web page's "simple" POST carries its Origin: refused even with the owner's signature."""
    launch = stack["LAUNCH_FUNCTION_NAME"]
    before = cloud.stats()["invocations_sync"]
    invoke_url = f"{cloud.endpoint_url}/2015-03-31/functions/{launch}/invocations"
    for url, data in ((invoke_url, b"{}"), (f"{cloud.endpoint_url}/_lnn/stats", None)):
        method = "POST" if data else "GET"
        headers = {**signed_headers(cloud.credentials, method, url, data), "Origin": "https://example.org"}
        assert _status(urllib.request.Request(url, data=data, method=method, headers=headers)) == 403
        simple = {"Origin": "https://example.org", "Content-Type": "text/plain"}
        assert _status(urllib.request.Request(url, data=data, method=method, headers=simple)) == 403
    assert cloud.stats()["invocations_sync"] == before


@pytest.fixture
def marker_module(tmp_path: Path) -> tuple[Path, Path]:
    """A folder with a module and a sitecustomize that each write the marker file when run."""
    folder, marker = tmp_path / "stranger", tmp_path / "ran"
    folder.mkdir()
    code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
    (folder / "sitecustomize.py").write_text(code)
    (folder / "stranger_code.py").write_text(code + "def handler(event, context):\n    return 'ran'\n")
    return folder, marker


def test_create_function_with_a_pythonpath_marker_module_never_runs_it(cloud_env, marker_module) -> None:
    folder, marker = marker_module
    lam = aws("lambda", cloud_env)
    name = f"stranger-{secrets.token_hex(3)}"
    aws("iam", cloud_env).create_role(RoleName=f"r-{name}", AssumeRolePolicyDocument="{}")
    with pytest.raises(ClientError) as refused:
        lam.create_function(
            FunctionName=name,
            Role=f"arn:aws:iam::{ACCOUNT}:role/r-{name}",
            PackageType="Image",
            Code={"ImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/test:latest"},
            ImageConfig={"Command": ["stranger_code.handler"]},
            Environment={"Variables": {"PYTHONPATH": str(folder)}},
        )
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "'stranger_code.handler' is not one of this local cloud's" in refused.value.response["Error"]["Message"]
    assert name not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]

    # A project handler with the stranger's folder on PYTHONPATH (its sitecustomize would run at
    # start): the variable never reaches the environment, nor LD_PRELOAD.

    variables = {"PYTHONPATH": str(folder), "PYTHONSTARTUP": str(folder / "stranger_code.py")}
    name = make_function(cloud_env, "describe", env={**variables, "LD_PRELOAD": "/nonexistent.so", "GREETING": "hi"})
    _, body = invoke(cloud_env, name, {})
    assert body["greeting"] == "hi"  # the function ran, with its other variables
    for environment in (body["environ"], psutil.Process(body["pid"]).environ()):  # its own, and at its start
        assert str(folder) not in json.dumps(environment) and "LD_PRELOAD" not in environment
    assert str(folder) not in json.dumps(body["sys_path"])
    # Nor can the handler be changed to the stranger's afterwards.
    with pytest.raises(ClientError) as refused:
        lam.update_function_configuration(FunctionName=name, ImageConfig={"Command": ["stranger_code.handler"]})
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert lam.get_function_configuration(FunctionName=name)["ImageConfigResponse"]["ImageConfig"]["Command"] == [
        "lnn_test_functions.describe"
    ]
    assert invoke(cloud_env, name, {})[1]["greeting"] == "hi"
    assert not marker.exists(), "a stranger's code ran in the local cloud"
