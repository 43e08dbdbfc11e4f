"""The documented deploy path, rehearsed end to end against the local cloud, then the stack inspected.

The steps are the README's (terraform/README.md, "Deploy"), in its order, each from a fresh copy of
terraform/ and through the same make targets and .github/scripts the user and the workflows run:

1. ``make bootstrap``: the state bucket, in the emulator's S3;
2. ``make init``: the S3 backend with its lock file (use_lockfile) in that bucket;
3. ``make registry``: the key, the ECR repository and the CI roles, before any image exists;
4. the image "push": an image manifest put into the emulator's ECR (no Docker here), its digest
   recorded as ``make push`` records it;
5. ``make deploy``: the whole stack, the functions created on that digest (the emulator checks the
   image exists in its ECR: MOTO_LAMBDA_STUB_ECR=false);
6. a second image pushed and rolled out with ``make rollout`` (.github/scripts/rollout.sh, the
   image workflow's step);
7. the root module's ``launch_command`` (the README's ``aws lambda invoke``, in the form of the AWS
   CLI v1 of the dev lock) on the LaunchLambda Terraform created: the functions run in the local
   Lambda service with the environment Terraform gave them (the replication group's endpoint, the
   token's secret, the table, bucket and topic), the run reaches SUCCEEDED (``python -m trainer
   status``), and its SNS summary is read back through an SQS queue subscribed to the topic;
8. ``terraform plan`` from another fresh copy with the same backend (.github/scripts/plan.sh, the
   terraform workflow's step): no changes, the rollout and the training run included;
9. ``terraform destroy`` from that copy: nothing left but the state bucket, and the redis-server the
   replication group started is gone.

The plans of steps 5 and 8, plus an in-place update and the documented auth-token rotation (which
replaces the cache), are rendered by .github/scripts/plan_comment.py and checked as a reviewer would
read them.

The emulator is the local cloud (trainer.local.cloud, one child process): moto's control and data
planes with the patches of trainer/local/moto_patched.py, Invoke executed in awslambdaric processes,
and each replication group a real TLS redis-server with the group's token, on the group's port. The
image the functions run is the image's file system built without Docker from requirements.lock and
trainer/ (tests/support/imageenv.py, Python 3.12); the pushed manifests stand for it (the local
Lambda service runs that one file system for every image, with the handler of the function's image
config command). The provider reaches the cloud through its standard endpoint variable
(AWS_ENDPOINT_URL) and a test-only override file, written into the temporary copies only; the
backend through a backend-config file given with TF_CLI_ARGS_init, so the committed backend block
and scripts run unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
import redis
from botocore.credentials import Credentials

from tests.support.imageenv import build as build_image_env
from tests.support.plan_comment import load as load_plan_comment
from tests.support.processes import command_line, descendants, still_running
from tests.support.requests import REQUEST
from tests.support.terraform import EMULATOR_PROVIDER_OVERRIDE, REPO_ROOT, Terraform, copy_configuration, explain
from trainer.local.cloud import CloudProcess
from trainer.stores import cache_token

REGION = "us-east-1"
NAME = "lnn-ci"
STATE_BUCKET = "lnn-ci-tfstate"
SCRIPTS = REPO_ROOT / ".github" / "scripts"
plan_comment = load_plan_comment()

BACKEND_CONFIG = """\
use_path_style              = true
skip_credentials_validation = true
skip_metadata_api_check     = true
skip_region_validation      = true
endpoints = {{ s3 = "{endpoint}" }}
"""

TFVARS = f"""\
name                         = "{NAME}"
force_destroy                = true
dynamodb_deletion_protection = false
kms_deletion_window_in_days  = 7
github_repository            = "example-org/lnn"
trainer_reserved_concurrency = 2
terraform_state_bucket_arn   = "arn:aws:s3:::{STATE_BUCKET}"
"""

RETRY_DELAY_S = 0.2  # Lambda waits a minute, then two, between async attempts; the rehearsal does not


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    outputs: dict[str, object]
    cloud: CloudProcess
    tmp: Path
    first_digest: str = ""
    rolled_digest: str = ""
    first_plan: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    destroyed: bool = False

    def client(self, service: str):  # boto3 clients have no common base type
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.cloud.endpoint_url,
            aws_access_key_id=self.cloud.credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.cloud.credentials["AWS_SECRET_ACCESS_KEY"],
        )

    def fresh_copy(self, name: str) -> Path:
        workdir = copy_configuration(self.tmp / name / "terraform")
        (workdir / "emulator_override.tf").write_text(EMULATOR_PROVIDER_OVERRIDE)
        (workdir / "ci.auto.tfvars").write_text(TFVARS)
        return workdir


def push_image(stack: Stack, tag: str) -> str:
    """What `make push` leaves behind, without Docker: an image manifest in ECR; its digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    # A layer of its own per image: the emulator derives the digest from the layers' digests, so
    # two images without layers would share one digest and the rollout would prove nothing.
    layer = f"the trainer's files, image {tag}".encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": len(config),
            "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": len(layer),
                "digest": "sha256:" + hashlib.sha256(layer).hexdigest(),
            }
        ],
    }
    image = stack.client("ecr").put_image(repositoryName=NAME, imageManifest=json.dumps(manifest), imageTag=tag)
    return image["image"]["imageId"]["imageDigest"]


def make(stack: Stack, target: str, workdir: Path, timeout: float = 900, **variables: str) -> None:
    args = ["make", "--no-print-directory", "-C", str(REPO_ROOT), target, f"TF_DIR={workdir}"]
    args += [f"{k}={v}" for k, v in variables.items()]
    started = time.monotonic()
    result = subprocess.run(args, env=stack.env, capture_output=True, text=True, timeout=timeout, check=False)
    stack.timings[f"make {target}"] = time.monotonic() - started
    assert result.returncode == 0, explain(result, limit=20000)


def plan(stack: Stack, workdir: Path, out: Path, *args: str) -> int:
    """.github/scripts/plan.sh, as the terraform workflow runs it; its exit code file."""
    started = time.monotonic()
    result = subprocess.run(
        [str(SCRIPTS / "plan.sh"), str(out), *args],
        cwd=workdir,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    stack.timings[f"plan {out.name}"] = time.monotonic() - started
    code = int((out / "exitcode").read_text())
    assert code in (0, 2), explain(result, limit=20000) + (out / "plan.txt").read_text()[-5000:]
    return code


def comment(out: Path) -> str:
    code = int((out / "exitcode").read_text())
    return plan_comment.render(
        code, (out / "plan.txt").read_text(), json.loads((out / "plan.json").read_text()), artifact_url="https://x/a/1"
    )


def readme_deploy_targets() -> list[str]:
    """The make targets of terraform/README.md's deploy block, in order."""
    readme = (REPO_ROOT / "terraform" / "README.md").read_text()
    block = readme.split("<!-- deploy-path: rehearsed by tests/infra/terraform/test_apply_cycle.py -->", 1)[1]
    block = block.split("```sh", 1)[1].split("```", 1)[0]
    return re.findall(r"^make (\w+)", block, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def local_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudProcess]:
    image = build_image_env()
    workdir = tmp_path_factory.mktemp("local-cloud")
    cloud = CloudProcess(
        args=(
            *("--image-root", str(image.root), "--python", str(image.python)),
            *("--retry-delay", str(RETRY_DELAY_S), "--concurrency", "4", "--workdir", str(workdir)),
        ),
        # Lambda then checks that a function's image exists in ECR and resolves its digest, as AWS does.
        env={"MOTO_LAMBDA_STUB_ECR": "false"},
        log_path=workdir / "cloud.log",
    )
    seen: set[int] = set()
    try:
        with cloud:
            yield cloud
            assert cloud.process is not None
            seen = descendants(cloud.process.pid)
    finally:
        shutil.rmtree(image.root, ignore_errors=True)  # the image's /var/task and /opt/deps under /tmp
    # Stopping the cloud stops every execution environment and redis-server it started.
    assert still_running(seen) == []


def cloud_processes(cloud: CloudProcess, marker: str) -> set[int]:
    """The processes below the cloud whose command line holds `marker`."""
    assert cloud.process is not None
    return {pid for pid in descendants(cloud.process.pid) - {cloud.process.pid} if marker in command_line(pid)}


def redis_servers(cloud: CloudProcess) -> set[int]:
    """The redis-server processes of the cloud's replication groups."""
    return cloud_processes(cloud, "redis-server")


def execution_environments(cloud: CloudProcess) -> set[int]:
    """The functions' execution environments, as the cloud lists them (forked from a fork server, their
    command line is the fork server's)."""
    return {env["pid"] for env in cloud.environments()}


@pytest.fixture(scope="module")
def stack(terraform: Terraform, local_cloud: CloudProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("deploy-rehearsal")
    backend = tmp / "emulator.s3.tfbackend"
    backend.write_text(BACKEND_CONFIG.format(endpoint=local_cloud.endpoint_url))
    env = terraform.env(
        {
            **local_cloud.aws_env,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "TF_STATE_BUCKET": STATE_BUCKET,
            "TF_CLI_ARGS_init": f"-backend-config={backend}",
            "TF_CLI_ARGS_apply": "-auto-approve",
            # The AWS CLI of the dev lock (awscli) for the scripts.
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
    )
    stack = Stack(tmp / "first" / "terraform", env, {}, local_cloud, tmp)
    stack.workdir = stack.fresh_copy("first")
    assert readme_deploy_targets() == ["bootstrap", "init", "registry", "push", "deploy", "push", "rollout"]
    try:
        make(stack, "bootstrap", stack.workdir, AWS_REGION=REGION)
        make(stack, "init", stack.workdir, AWS_REGION=REGION)
        make(stack, "registry", stack.workdir)
        stack.first_digest = push_image(stack, "v1")
        stack.first_plan = tmp / "plan-first-apply"
        assert plan(stack, stack.workdir, stack.first_plan, f"-var=image_digest={stack.first_digest}") == 2
        make(stack, "deploy", stack.workdir, IMAGE_DIGEST=stack.first_digest)
        out = terraform.run("output", "-json", cwd=stack.workdir, env=env)
        assert out.returncode == 0, explain(out)
        stack.outputs = {k: v["value"] for k, v in json.loads(out.stdout).items()}
        stack.rolled_digest = push_image(stack, "v2")
        make(
            stack,
            "rollout",
            stack.workdir,
            IMAGE_DIGEST=stack.rolled_digest,
            ECR_REPOSITORY_URL=str(stack.outputs["ecr_repository_url"]),
            LAUNCH_FUNCTION_NAME=f"{NAME}-launch",
            TRAINER_FUNCTION_NAME=f"{NAME}-trainer",
        )
        yield stack
    finally:
        if not stack.destroyed:  # a test failed before the destroy test: still clean up
            terraform.run(
                "destroy", "-auto-approve", "-input=false", "-no-color", cwd=stack.workdir, env=env, timeout=900
            )
        print("deploy rehearsal timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in stack.timings.items()))


# ---- the path ---------------------------------------------------------------------------------------


def test_state_is_in_the_bucket_with_its_lock_released(stack: Stack) -> None:
    s3 = stack.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=STATE_BUCKET).get("Contents", [])]
    assert "lnn/terraform.tfstate" in keys
    assert "lnn/terraform.tfstate.tflock" not in keys  # use_lockfile: taken during apply, then released
    assert s3.get_bucket_versioning(Bucket=STATE_BUCKET)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=STATE_BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    block = s3.get_public_access_block(Bucket=STATE_BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    state = json.loads(s3.get_object(Bucket=STATE_BUCKET, Key="lnn/terraform.tfstate")["Body"].read())
    assert any(r["type"] == "aws_lambda_function" for r in state["resources"])


def test_the_rollout_owns_the_image(stack: Stack) -> None:
    assert stack.rolled_digest != stack.first_digest
    s3 = stack.client("s3")
    state = json.loads(s3.get_object(Bucket=STATE_BUCKET, Key="lnn/terraform.tfstate")["Body"].read())
    created = [
        i["attributes"]["image_uri"]
        for r in state["resources"]
        if r["type"] == "aws_lambda_function"
        for i in r["instances"]
    ]
    assert created == [f"{stack.outputs['ecr_repository_url']}@{stack.first_digest}"] * 2  # make deploy's
    lam = stack.client("lambda")
    for name in (f"{NAME}-launch", f"{NAME}-trainer"):
        code = lam.get_function(FunctionName=name)["Code"]
        assert code["ResolvedImageUri"].endswith(stack.rolled_digest), code


def cli(stack: Stack, *args: str, cwd: Path | None = None, timeout: float = 120) -> str:
    """The AWS CLI (v1, from the dev lock, first on the rehearsal's PATH) or the trainer's CLI."""
    started = time.monotonic()
    result = subprocess.run(
        list(args), cwd=cwd or stack.tmp, env=stack.env, capture_output=True, text=True, timeout=timeout, check=False
    )
    key = " ".join(args[:3])
    stack.timings[key] = stack.timings.get(key, 0.0) + time.monotonic() - started
    assert result.returncode == 0, explain(result)
    return result.stdout


def v1_invoke(launch_command: str) -> list[str]:
    """The output's command (AWS CLI v2) in the form of the v1 CLI, which sends --payload as given
    and has no --cli-binary-format; without the trailing `&& cat`."""
    words = shlex.split(launch_command.split("&&", 1)[0])
    at = words.index("--cli-binary-format")
    assert words[at + 1] == "raw-in-base64-out", words
    return words[:at] + words[at + 2 :]


def test_the_readme_invoke_trains_a_model_on_the_deployed_functions(stack: Stack) -> None:
    """The functions Terraform created run: LaunchLambda, then TrainerLambda handing on to itself,
    reaching the cache, the table, the bucket and the topic through the environment Terraform set."""
    sqs = ["aws", "sqs", "--endpoint-url", stack.cloud.endpoint_url]  # v1's SQS commands set their own
    command = v1_invoke(str(stack.outputs["launch_command"]))
    assert command == [
        *("aws", "lambda", "invoke", "--region", REGION, "--function-name", f"{NAME}-launch"),
        *("--payload", "file://request.json", "response.json"),
    ]
    topic = str(stack.outputs["sns_topic_arn"])
    queue_url = json.loads(cli(stack, *sqs, "create-queue", "--queue-name", f"{NAME}-rehearsal-summaries"))["QueueUrl"]
    subscription = ""
    try:
        attributes = cli(stack, *sqs, "get-queue-attributes", "--queue-url", queue_url, "--attribute-names", "QueueArn")
        queue_arn = json.loads(attributes)["Attributes"]["QueueArn"]
        subscribe = ("sns", "subscribe", "--topic-arn", topic, "--protocol", "sqs")
        subscription = json.loads(cli(stack, "aws", *subscribe, "--notification-endpoint", queue_arn))[
            "SubscriptionArn"
        ]

        workdir = stack.tmp / "invoke"
        workdir.mkdir()
        (workdir / "request.json").write_text(json.dumps(REQUEST))
        started = time.monotonic()
        cli(stack, *command, cwd=workdir)
        launched = json.loads((workdir / "response.json").read_text())
        assert launched["status"] == "RUNNING", launched
        run_id = launched["run_id"]

        # The README's status command reads the run's record from the table Terraform created.
        status_command = (str(REPO_ROOT / ".venv" / "bin" / "python"), "-m", "trainer", "status", run_id)
        stack.env["TABLE_NAME"] = str(stack.outputs["table_name"])
        try:
            deadline, status = time.monotonic() + 240, {}
            while time.monotonic() < deadline:
                status = json.loads(cli(stack, *status_command, cwd=REPO_ROOT))
                if status["status"] != "RUNNING":
                    break
                time.sleep(0.5)
        finally:
            del stack.env["TABLE_NAME"]
        stack.timings["launch to SUCCEEDED"] = time.monotonic() - started
        assert status["status"] == "SUCCEEDED", status
        assert status["epochs_recorded"] == REQUEST["epochs"], status
        bucket = str(stack.outputs["bucket_name"])
        assert status["model_uri"] == f"s3://{bucket}/models/{run_id}/model.npz", status
        model = stack.client("s3").head_object(Bucket=bucket, Key=f"models/{run_id}/model.npz")
        assert model["ContentLength"] > 0 and model["ServerSideEncryption"] == "aws:kms", model

        summaries: list[dict[str, object]] = []
        deadline = time.monotonic() + 30
        while not summaries and time.monotonic() < deadline:
            received = cli(stack, *sqs, "receive-message", "--queue-url", queue_url, "--wait-time-seconds", "1")
            messages = json.loads(received or "{}").get("Messages", [])
            summaries += [json.loads(json.loads(m["Body"])["Message"]) for m in messages]
        assert [(s["kind"], s["run_id"]) for s in summaries] == [("SUCCEEDED", run_id)], summaries
        assert summaries[0]["test_accuracy"] == pytest.approx(status["test_accuracy"])
        assert float(status["test_accuracy"]) > 0.8, status  # moons is learnable: the training happened

        # Both functions ran in the service, with the cache the replication group started.
        (group,) = stack.client("elasticache").describe_replication_groups(ReplicationGroupId=NAME)["ReplicationGroups"]
        endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]
        assert f"{endpoint['Address']}:{endpoint['Port']}" == stack.outputs["redis_endpoint"]
        assert len(redis_servers(stack.cloud)) == 1  # two nodes in Terraform, one server locally
        stats = stack.cloud.stats()
        # LaunchLambda by the CLI; TrainerLambda by LaunchLambda's asynchronous hand-off.
        assert stats["invocations_sync"] >= 1 and stats["events_accepted"] >= 1, stats
        assert stats["function_errors"] == 0, stats
    finally:
        if subscription:
            cli(stack, "aws", "sns", "unsubscribe", "--subscription-arn", subscription)
        cli(stack, *sqs, "delete-queue", "--queue-url", queue_url)


def test_second_plan_from_a_fresh_directory_shows_no_changes(stack: Stack) -> None:
    """Same backend, nothing local: the state is found, and the rolled-out image is not reverted."""
    workdir = stack.fresh_copy("second")
    out = stack.tmp / "plan-no-changes"
    assert plan(stack, workdir, out) == 0, (out / "plan.txt").read_text()[-5000:]
    body = comment(out)
    assert "### Terraform plan: no changes" in body and "[!CAUTION]" not in body and "| resource |" not in body


def test_first_apply_plan_reads_as_a_creation(stack: Stack) -> None:
    assert stack.first_plan is not None
    body = comment(stack.first_plan)
    headline = re.search(r"### Terraform plan: (\d+) to add, 0 to change, 0 to destroy, 0 to replace", body)
    assert headline and int(headline.group(1)) > 30, body[:2000]
    assert "[!CAUTION]" not in body
    assert '| `module.functions.aws_lambda_function.this["trainer"]` | add |' in body
    assert "<details><summary>Full plan</summary>" in body and len(body) <= plan_comment.GITHUB_COMMENT_LIMIT
    # The whole stack's plan is longer than a comment may be: the text is cut, with the pointer.
    text = (stack.first_plan / "plan.txt").read_text()
    plan_json = json.loads((stack.first_plan / "plan.json").read_text())
    uncut = plan_comment.render(2, text, plan_json, artifact_url="https://x/a/1", limit=10**9)
    if len(uncut) > plan_comment.GITHUB_COMMENT_LIMIT:
        assert "cut to fit a comment" in body and "https://x/a/1" in body
    else:
        assert body == uncut and "Plan: " in body


def test_in_place_update_plan_has_no_warning(stack: Stack) -> None:
    out = stack.tmp / "plan-in-place"
    assert plan(stack, stack.fresh_copy("in-place"), out, "-refresh=false", "-var=log_retention_in_days=14") == 2
    body = comment(out)
    assert re.search(r"### Terraform plan: 0 to add, \d+ to change, 0 to destroy, 0 to replace", body), body[:2000]
    # Log groups hold data, but an in-place retention change destroys nothing.
    assert "[!CAUTION]" not in body
    assert '| `module.functions.aws_cloudwatch_log_group.this["trainer"]` | change |' in body


def test_a_cache_replacement_plan_warns_first_that_the_cache_is_replaced(stack: Stack) -> None:
    """A plan that replaces the cache loses every run in flight: the reviewer must see that before anything."""
    out = stack.tmp / "plan-replace"
    args = ("-refresh=false", "-replace=module.cache.aws_elasticache_replication_group.this")
    assert plan(stack, stack.fresh_copy("replace"), out, *args) == 2
    body = comment(out)
    assert body.startswith(plan_comment.MARKER + "\n> [!CAUTION]")
    warning = body[: body.index("### Terraform plan")]
    assert (
        "`module.cache.aws_elasticache_replication_group.this` (ElastiCache replication group): **replace**" in warning
    )
    # The functions' REDIS_HOST (and their roles' elasticache:Connect on the group's ARN) are only
    # known after the new cache exists: they change in place too.
    assert re.search(r"### Terraform plan: 0 to add, \d+ to change, 0 to destroy, 1 to replace", body), body[:2000]
    assert '| `module.functions.aws_lambda_function.this["trainer"]` | change |' in body


def test_outputs(stack: Stack) -> None:
    o = stack.outputs
    assert o["launch_function_name"] == "lnn-ci-launch" and o["trainer_function_name"] == "lnn-ci-trainer"
    assert o["launch_function_arn"].endswith(":function:lnn-ci-launch")
    assert o["ecr_repository_url"].endswith("/lnn-ci")
    # The running image belongs to the rollout: an output of it would change with every rollout.
    assert "image_uri" not in o
    assert o["table_name"] == "lnn-ci-runs"
    assert o["sns_topic_arn"].endswith(":lnn-ci-runs")
    assert o["redis_endpoint"].endswith(":6379")
    assert o["redis_user_id"] == "lnn-ci-functions"  # IAM authentication: no secret, no secret's ARN
    assert not [k for k in o if "secret" in k]
    assert o["launch_command"].startswith("aws lambda invoke --region us-east-1 --function-name lnn-ci-launch ")
    assert o["github_plan_role_arn"] and o["github_deploy_role_arn"] and o["github_apply_role_arn"]


def test_cache_never_evicts_and_launch_knows_its_capacity(stack: Stack) -> None:
    cache = stack.client("elasticache")
    group = cache.describe_replication_groups(ReplicationGroupId=NAME)["ReplicationGroups"][0]
    member = cache.describe_cache_clusters(CacheClusterId=group["MemberClusters"][0])["CacheClusters"][0]
    name = member["CacheParameterGroup"]["CacheParameterGroupName"]
    assert name == NAME
    (described,) = cache.describe_cache_parameter_groups(CacheParameterGroupName=name)["CacheParameterGroups"]
    assert described["CacheParameterGroupFamily"] == "valkey8"
    params = cache.describe_cache_parameters(CacheParameterGroupName=name, Source="user")["Parameters"]
    assert {p["ParameterName"]: p["ParameterValue"] for p in params} == {"maxmemory-policy": "noeviction"}
    # And the cache itself runs it (the local cloud applies a group's parameter group to its server;
    # ElastiCache's default group would say volatile-lru).
    assert stack.cloud.nodes()[NAME]["parameters"]["maxmemory-policy"] == "noeviction"
    # Reached as the functions reach it (their IAM user, a token signed with the caller's key), the
    # cache answers their commands and refuses to be reconfigured (the user's access string).
    endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]
    key = Credentials(stack.cloud.credentials["AWS_ACCESS_KEY_ID"], stack.cloud.credentials["AWS_SECRET_ACCESS_KEY"])
    server = redis.Redis(
        host=endpoint["Address"],
        port=endpoint["Port"],
        username=stack.outputs["redis_user_id"],
        password=cache_token.sign(key, NAME, stack.outputs["redis_user_id"], REGION),
        ssl=True,
        ssl_ca_certs=str(Path(stack.cloud.workdir) / "elasticache-ca.pem"),
        socket_timeout=5,
    )
    assert server.set("lnn:{probe}:x", b"1", ex=60) and server.get("lnn:{probe}:x") == b"1"
    with pytest.raises(redis.exceptions.NoPermissionError):
        server.config_get("maxmemory-policy")
    server.close()
    env = stack.client("lambda").get_function(FunctionName=f"{NAME}-launch")["Configuration"]["Environment"]
    assert env["Variables"]["CACHE_CAPACITY_MIB"] == "1052"


def test_only_the_stacks_functions_may_pull_the_image(stack: Stack) -> None:
    policy = json.loads(stack.client("ecr").get_repository_policy(repositoryName=NAME)["policyText"])
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert sorted(statement["Action"]) == ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    assert sorted(statement["Condition"]["StringLike"]["aws:sourceArn"]) == sorted(
        [stack.outputs["launch_function_arn"], stack.outputs["trainer_function_arn"]]
    )


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
        assert env["REDIS_TLS"] == "true" and "REDIS_AUTH_SECRET_ARN" not in env
        assert (env["REDIS_USER_ID"], env["REDIS_REPLICATION_GROUP_ID"]) == (stack.outputs["redis_user_id"], NAME)
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
    assert group["AtRestEncryptionEnabled"] and group["TransitEncryptionEnabled"] and not group.get("AuthTokenEnabled")
    # IAM authentication: the stack's user group (its IAM user and the disabled default user) is on it.
    assert group["Engine"] == "valkey" and group["UserGroupIds"] == ["lnn-ci"]
    (user_group,) = cache.describe_user_groups(UserGroupId="lnn-ci")["UserGroups"]
    assert sorted(user_group["UserIds"]) == ["lnn-ci-default", "lnn-ci-functions"]
    (user,) = cache.describe_users(UserId="lnn-ci-functions")["Users"]
    assert user["Authentication"]["Type"] == "iam" and user["UserName"] == "lnn-ci-functions"
    (default,) = cache.describe_users(UserId="lnn-ci-default")["Users"]
    assert default["UserName"] == "default" and default["AccessString"].startswith("off ")
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
    """Notes 2 and 3: sns:Publish on the topic only; of ElastiCache, only elasticache:Connect on the
    stack's cache and its user (IAM authentication); nothing of Secrets Manager."""
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
        assert [a for a in by_action if a.lower().startswith("elasticache:")] == ["elasticache:Connect"]
        (group,) = stack.client("elasticache").describe_replication_groups(ReplicationGroupId=NAME)["ReplicationGroups"]
        (user,) = stack.client("elasticache").describe_users(UserId=stack.outputs["redis_user_id"])["Users"]
        assert sorted(by_action["elasticache:Connect"]) == sorted([group["ARN"], user["ARN"]])
        assert by_action["lambda:InvokeFunction"] == [stack.outputs["trainer_function_arn"]]
        assert not [a for a in by_action if a.lower().startswith("secretsmanager:")]
        star = {a for a, r in by_action.items() if "*" in r}
        assert star and all(a.startswith("ec2:") for a in star), star
        # Under the stack's path, with the stack's boundary (the CI roles may write roles only so).
        role = iam.get_role(RoleName=name)["Role"]
        assert role["Path"] == "/lnn/lnn-ci/"
        assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == stack.outputs["permissions_boundary_arn"]


def test_trainer_has_reserved_concurrency(stack: Stack) -> None:
    lam = stack.client("lambda")
    assert lam.get_function_concurrency(FunctionName="lnn-ci-trainer")["ReservedConcurrentExecutions"] == 2
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName="lnn-ci-launch")
    env = lam.get_function(FunctionName="lnn-ci-launch")["Configuration"]["Environment"]["Variables"]
    assert env["TRAINER_RESERVED_CONCURRENCY"] == "2"


def test_destroy_from_a_fresh_directory_leaves_nothing_behind(terraform: Terraform, stack: Stack) -> None:
    workdir = stack.fresh_copy("destroy")
    init = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT), "init", f"TF_DIR={workdir}", f"AWS_REGION={REGION}"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert init.returncode == 0, explain(init)
    servers, environments = redis_servers(stack.cloud), execution_environments(stack.cloud)
    assert len(servers) == 1 and environments  # the replication group's; the warm functions'
    started = time.monotonic()
    destroyed = terraform.run(
        "destroy", "-auto-approve", "-input=false", "-no-color", cwd=workdir, env=stack.env, timeout=900
    )
    stack.timings["destroy"] = time.monotonic() - started
    stack.destroyed = destroyed.returncode == 0
    assert destroyed.returncode == 0, explain(destroyed, limit=20000)
    state = terraform.run("state", "list", cwd=workdir, env=stack.env)
    assert state.returncode == 0 and state.stdout.strip() == "", explain(state)
    c = stack.client
    assert c("lambda").list_functions()["Functions"] == []
    assert c("elasticache").describe_replication_groups()["ReplicationGroups"] == []
    assert still_running(servers) == [] and redis_servers(stack.cloud) == set()
    assert still_running(environments) == [] and execution_environments(stack.cloud) == set()
    assert c("elasticache").describe_cache_subnet_groups()["CacheSubnetGroups"] == []
    assert c("elasticache").describe_cache_parameter_groups()["CacheParameterGroups"] == []
    assert c("elasticache").describe_user_groups()["UserGroups"] == []
    assert [u["UserId"] for u in c("elasticache").describe_users()["Users"] if u["UserId"].startswith(NAME)] == []
    assert c("ecr").describe_repositories()["repositories"] == []
    assert c("dynamodb").list_tables()["TableNames"] == []
    assert [b["Name"] for b in c("s3").list_buckets()["Buckets"]] == [STATE_BUCKET]
    assert c("sns").list_topics()["Topics"] == [] and c("sqs").list_queues().get("QueueUrls", []) == []
    assert c("secretsmanager").list_secrets()["SecretList"] == []
    assert c("logs").describe_log_groups()["logGroups"] == []
    assert [v for v in c("ec2").describe_vpcs()["Vpcs"] if not v["IsDefault"]] == []
    assert [r["RoleName"] for r in c("iam").list_roles()["Roles"] if r["RoleName"].startswith(NAME)] == []
    keys = [c("kms").describe_key(KeyId=k["KeyId"])["KeyMetadata"] for k in c("kms").list_keys()["Keys"]]
    stack_keys = [k for k in keys if k.get("Description", "").startswith(f"LNN {NAME}:")]
    assert stack_keys and all(k["KeyState"] == "PendingDeletion" for k in stack_keys), stack_keys
