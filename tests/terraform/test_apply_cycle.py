"""The whole stack against moto server: apply -> plan shows no changes -> destroy.

moto runs as a child process on a free port, started from tests/terraform/moto_patched.py, which
adds the few APIs this stack needs and moto 5.2 lacks (each patch is documented there). The
session-wide moto server of tests/conftest.py is a plain child process that cannot be patched, so
this cycle has its own.

The provider reaches moto through its standard endpoint variable (AWS_ENDPOINT_URL) and a test-only
override file, written into the temporary copy only, that skips the credential and metadata checks
and uses path-style S3 addressing. Between apply and destroy, the applied resources are inspected
through boto3 for the original notes' General Notes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from trainer.local.servers import MotoServer

from .conftest import REPO_ROOT, Terraform, copy_configuration, explain

REGION = "us-east-1"

OVERRIDE = """\
# Written by tests/terraform/test_apply_cycle.py into a temporary copy only: moto accepts any
# credentials, has no instance metadata service, and serves S3 path-style. The endpoint itself comes
# from AWS_ENDPOINT_URL, the provider's standard variable.
provider "aws" {
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true
}
"""

TFVARS = """\
name                           = "lnn-ci"
image_tag                      = "ci"
force_destroy                  = true
dynamodb_deletion_protection   = false
secret_recovery_window_in_days = 0
kms_deletion_window_in_days    = 7
github_repository              = "example-org/lnn"
"""


def patched_moto_server() -> MotoServer:
    """moto server with the emulator patches of moto_patched.py (see its docstring)."""
    return MotoServer(program=(str(Path(__file__).with_name("moto_patched.py")),), cwd=str(REPO_ROOT))


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    outputs: dict[str, object]
    moto: MotoServer
    destroyed: bool = False

    def client(self, service: str):  # boto3 clients have no common base type
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.moto.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="module")
def patched_moto() -> Iterator[MotoServer]:
    server = patched_moto_server().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(terraform: Terraform, patched_moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = copy_configuration(tmp_path_factory.mktemp("terraform-cycle") / "terraform")
    (workdir / "moto_override.tf").write_text(OVERRIDE)
    (workdir / "ci.auto.tfvars").write_text(TFVARS)
    env = {
        "AWS_ENDPOINT_URL": patched_moto.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    terraform.init(workdir)
    started = time.monotonic()
    applied = terraform.run("apply", "-auto-approve", "-input=false", "-no-color", cwd=workdir, env=env, timeout=900)
    assert applied.returncode == 0, explain(applied, limit=20000)
    print(f"terraform apply against moto: {time.monotonic() - started:.0f} s")
    out = terraform.run("output", "-json", cwd=workdir, env=env)
    assert out.returncode == 0, explain(out)
    outputs = {k: v["value"] for k, v in json.loads(out.stdout).items()}
    stack = Stack(workdir, env, outputs, patched_moto)
    try:
        yield stack
    finally:
        if not stack.destroyed:  # a test failed before the destroy test: still clean up
            terraform.run("destroy", "-auto-approve", "-input=false", "-no-color", cwd=workdir, env=env, timeout=900)


def test_plan_after_apply_shows_no_changes(terraform: Terraform, stack: Stack) -> None:
    plan = terraform.run(
        "plan", "-detailed-exitcode", "-input=false", "-no-color", cwd=stack.workdir, env=stack.env, timeout=600
    )
    assert plan.returncode == 0, "exit 2 means the re-plan found changes\n" + explain(plan, limit=20000)


def test_outputs(stack: Stack) -> None:
    o = stack.outputs
    assert o["launch_function_name"] == "lnn-ci-launch" and o["trainer_function_name"] == "lnn-ci-trainer"
    assert o["launch_function_arn"].endswith(":function:lnn-ci-launch")
    assert o["ecr_repository_url"].endswith("/lnn-ci")
    assert o["image_uri"] == f"{o['ecr_repository_url']}:ci"
    assert o["table_name"] == "lnn-ci-runs"
    assert o["sns_topic_arn"].endswith(":lnn-ci-runs")
    assert o["redis_endpoint"].endswith(":6379")
    assert o["launch_command"].startswith("aws lambda invoke --region us-east-1 --function-name lnn-ci-launch ")
    assert o["github_plan_role_arn"] and o["github_deploy_role_arn"]


def test_functions_are_images_in_the_vpc_with_the_environment(stack: Stack) -> None:
    """Notes 1/5/6: ARNs and topic in the environment; the Lambdas in the VPC."""
    lam, ec2 = stack.client("lambda"), stack.client("ec2")
    launch = lam.get_function(FunctionName="lnn-ci-launch")["Configuration"]
    trainer = lam.get_function(FunctionName="lnn-ci-trainer")["Configuration"]
    for fn, handler in ((launch, "trainer.handlers.launch.handler"), (trainer, "trainer.handlers.trainer.handler")):
        assert fn["PackageType"] == "Image"
        assert fn["ImageConfigResponse"]["ImageConfig"]["Command"] == [handler]
        env = fn["Environment"]["Variables"]
        assert env["TRAINER_FUNCTION_ARN"] == trainer["FunctionArn"]
        assert env["LAUNCH_FUNCTION_ARN"] == launch["FunctionArn"]
        assert env["SNS_TOPIC_ARN"] == stack.outputs["sns_topic_arn"]
        assert env["TABLE_NAME"] == "lnn-ci-runs" and env["MODEL_BUCKET"] == stack.outputs["bucket_name"]
        assert f"{env['REDIS_HOST']}:{env['REDIS_PORT']}" == stack.outputs["redis_endpoint"]
        assert env["REDIS_TLS"] == "true" and env["REDIS_AUTH_SECRET_ARN"] == stack.outputs["redis_auth_secret_arn"]
        subnets = ec2.describe_subnets(SubnetIds=fn["VpcConfig"]["SubnetIds"])["Subnets"]
        assert len(subnets) == 2 and len({s["AvailabilityZone"] for s in subnets}) == 2
        assert not any(s["MapPublicIpOnLaunch"] for s in subnets)
        groups = ec2.describe_security_groups(GroupIds=fn["VpcConfig"]["SecurityGroupIds"])["SecurityGroups"]
        assert [g["GroupName"] for g in groups] == ["lnn-ci-lambda"]


def test_trainer_recursion_allowed_and_async_failures_queued(stack: Stack) -> None:
    lam = stack.client("lambda")
    assert lam.get_function_recursion_config(FunctionName="lnn-ci-trainer")["RecursiveLoop"] == "Allow"
    for name in ("lnn-ci-launch", "lnn-ci-trainer"):
        config = lam.get_function_event_invoke_config(FunctionName=name)
        assert config["MaximumRetryAttempts"] == 2 and config["MaximumEventAgeInSeconds"] == 3600
        assert config["DestinationConfig"]["OnFailure"]["Destination"].endswith(":lnn-ci-failed-invocations")


def test_log_groups_keep_7_days(stack: Stack) -> None:
    """Note 7: log retention of 7 days (functions and flow logs)."""
    groups = stack.client("logs").describe_log_groups()["logGroups"]
    names = {g["logGroupName"]: g.get("retentionInDays") for g in groups}
    for name in ("/aws/lambda/lnn-ci-launch", "/aws/lambda/lnn-ci-trainer", "/aws/vpc/lnn-ci/flow-logs"):
        assert names.get(name) == 7, (name, names)


def test_redis_port_open_only_to_the_lambdas_group_within_the_vpc(stack: Stack) -> None:
    """Note 4: the security group pushed to the Lambdas; port 6379 open within the VPC only."""
    ec2, cache = stack.client("ec2"), stack.client("elasticache")
    group = cache.describe_replication_groups(ReplicationGroupId="lnn-ci")["ReplicationGroups"][0]
    assert group["AtRestEncryptionEnabled"] and group["TransitEncryptionEnabled"] and group["AuthTokenEnabled"]
    member = cache.describe_cache_clusters(CacheClusterId=group["MemberClusters"][0])["CacheClusters"][0]
    redis_sg = [sg["SecurityGroupId"] for sg in member["SecurityGroups"]]
    lambda_sg = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["lnn-ci-lambda"]}])[
        "SecurityGroups"
    ][0]["GroupId"]
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": redis_sg}])["SecurityGroupRules"]
    ingress = [r for r in rules if not r["IsEgress"]]
    assert len(ingress) == 1
    assert (ingress[0]["IpProtocol"], ingress[0]["FromPort"], ingress[0]["ToPort"]) == ("tcp", 6379, 6379)
    assert ingress[0]["ReferencedGroupInfo"]["GroupId"] == lambda_sg and "CidrIpv4" not in ingress[0]


def test_cache_subnet_group_in_the_private_subnets(stack: Stack) -> None:
    """Note 4: "may need to create a Subnet Group"."""
    cache = stack.client("elasticache")
    groups = cache.describe_cache_subnet_groups(CacheSubnetGroupName="lnn-ci")["CacheSubnetGroups"]
    subnet_ids = {s["SubnetIdentifier"] for s in groups[0]["Subnets"]}
    launch = stack.client("lambda").get_function(FunctionName="lnn-ci-launch")["Configuration"]
    assert subnet_ids == set(launch["VpcConfig"]["SubnetIds"])


def test_iam_least_privilege(stack: Stack) -> None:
    """Notes 2 and 3: sns:Publish on the topic only; no ElastiCache permission at all."""
    iam = stack.client("iam")
    for name in ("lnn-ci-launch", "lnn-ci-trainer"):
        (policy_name,) = iam.list_role_policies(RoleName=name)["PolicyNames"]
        document = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
        if isinstance(document, str):
            document = json.loads(document)
        assert not iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
        statements = document["Statement"]
        by_action: dict[str, list[str]] = {}
        for s in statements:
            actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
            resources = [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
            for action in actions:
                by_action.setdefault(action, []).extend(resources)
        assert by_action["sns:Publish"] == [stack.outputs["sns_topic_arn"]]
        assert not [a for a in by_action if a.lower().startswith("elasticache:")]
        assert by_action["lambda:InvokeFunction"] == [stack.outputs["trainer_function_arn"]]
        assert by_action["secretsmanager:GetSecretValue"] == [stack.outputs["redis_auth_secret_arn"]]
        star = {a for a, r in by_action.items() if "*" in r}
        assert star and all(a.startswith("ec2:") for a in star), star


def test_destroy_removes_everything(terraform: Terraform, stack: Stack) -> None:
    destroyed = terraform.run(
        "destroy", "-auto-approve", "-input=false", "-no-color", cwd=stack.workdir, env=stack.env, timeout=900
    )
    stack.destroyed = destroyed.returncode == 0
    assert destroyed.returncode == 0, explain(destroyed, limit=20000)
    state = terraform.run("state", "list", cwd=stack.workdir, env=stack.env)
    assert state.stdout.strip() == "", state.stdout
    assert stack.client("lambda").list_functions()["Functions"] == []
    assert stack.client("elasticache").describe_replication_groups()["ReplicationGroups"] == []
    assert stack.client("elasticache").describe_cache_subnet_groups()["CacheSubnetGroups"] == []
