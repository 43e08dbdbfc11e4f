"""terraform/modules/github_oidc: formatted, every variable typed and described (validated where
the value enters: the root module), and the IAM it writes trusts only this repository and grants
only what plan, deploy and apply need."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.hcl import block

REPO_ROOT = Path(__file__).resolve().parents[3]
MODULE = REPO_ROOT / "terraform" / "modules" / "github_oidc"


def text(name: str) -> str:
    """A file of the module; "main.tf" stands for the module's code (main.tf and iam.tf)."""
    if name == "main.tf":
        return (MODULE / "main.tf").read_text() + (MODULE / "iam.tf").read_text()
    return (MODULE / name).read_text()


def statements(document: str) -> dict[str, str]:
    """sid -> statement body of a data "aws_iam_policy_document"."""
    out = {}
    for match in re.finditer(r"\bstatement\s*\{", document):
        body = block(document[match.start() :], r"statement")
        sid = re.search(r'sid\s*=\s*"([^"]+)"', body)
        out[sid.group(1) if sid else f"#{len(out)}"] = body
    return out


def test_module_files_and_terraform_fmt() -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
        assert (MODULE / name).exists(), name
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.fail("terraform is needed (make setup / hashicorp/setup-terraform)")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-diff", "-recursive", str(MODULE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_interface() -> None:
    variables = text("variables.tf")
    for name in (
        "name_prefix",
        "github_repository",
        "create_oidc_provider",
        "ecr_repository_arn",
        "function_arns",
        "state_bucket_arn",
        "tags",
    ):
        body = block(variables, rf'variable\s+"{name}"')
        assert "description" in body and "type" in body, name
    # The module's own input (another module's output) is checked here; the repository, the
    # names and the state bucket are the user's values, validated by the root module.
    assert "validation" in block(variables, r'variable\s+"ecr_repository_arn"')
    assert re.search(r"default\s*=\s*true", block(variables, r'variable\s+"create_oidc_provider"'))
    assert re.search(r"default\s*=\s*null", block(variables, r'variable\s+"state_bucket_arn"'))
    assert "list(string)" in block(variables, r'variable\s+"function_arns"')
    outputs = text("outputs.tf")
    for name in ("plan_role_arn", "deploy_role_arn", "apply_role_arn"):
        assert "description" in block(outputs, rf'output\s+"{name}"')


def test_github_repository_validation_rejects_wildcards() -> None:
    """Where the user's value enters: the root module's variable."""
    body = block((REPO_ROOT / "terraform" / "variables.tf").read_text(), r'variable\s+"github_repository"')
    pattern = re.search(r'regex\("(.+?)", var\.github_repository\)', body).group(1).replace("\\\\", "\\")
    regex = re.compile(pattern)
    for good in ("octo/lnn", "my-org/lambda.neural_network"):
        assert regex.search(good), good
    for bad in ("octo/*", "*/*", "octo", "octo/lnn/extra", "repo:octo/lnn"):
        assert not regex.search(bad), bad


def test_trust_only_this_repository_per_event() -> None:
    main = text("main.tf")
    assert 'oidc_host         = "token.actions.githubusercontent.com"' in main
    # Plan and apply: only jobs of a GitHub environment (reviewers approve them); a pull request's
    # own workflow file cannot get the plan role's token without that approval.
    flat = re.sub(r"\s+", " ", main)
    assert 'plan_subjects = ["repo:${var.github_repository}:environment:${var.plan_environment}"]' in flat
    assert 'apply_subjects = ["repo:${var.github_repository}:environment:${var.apply_environment}"]' in flat
    assert ":pull_request" not in main.replace("pull_request events", "")
    assert '["repo:${var.github_repository}:ref:refs/heads/main"]' in main
    for document in ("plan_trust", "deploy_trust", "apply_trust"):
        body = block(main, rf'data\s+"aws_iam_policy_document"\s+"{document}"')
        assert '"sts:AssumeRoleWithWebIdentity"' in body
        assert "${local.oidc_host}:aud" in body and '"sts.amazonaws.com"' in body
        assert "${local.oidc_host}:sub" in body
        assert "*" not in body.replace('"*"', "")  # no wildcard subject in the trust policy itself


def test_deploy_role_is_limited_to_this_repository_and_these_functions() -> None:
    document = block(text("main.tf"), r'data\s+"aws_iam_policy_document"\s+"deploy"')
    found = statements(document)
    assert set(found) == {"LogInToTheRegistry", "PushToThisRepositoryOnly", "RollTheseFunctionsOntoTheImage"}
    assert '"ecr:GetAuthorizationToken"' in found["LogInToTheRegistry"]
    assert 'resources = ["*"]' in found["LogInToTheRegistry"]
    assert "resources = [var.ecr_repository_arn]" in found["PushToThisRepositoryOnly"]
    assert "resources = var.function_arns" in found["RollTheseFunctionsOntoTheImage"]
    lambda_actions = set(re.findall(r'"(lambda:[A-Za-z]+)"', found["RollTheseFunctionsOntoTheImage"]))
    assert lambda_actions == {
        "lambda:UpdateFunctionCode",
        "lambda:GetFunction",
        "lambda:GetFunctionConfiguration",
    }
    # The only Resource "*" is the registry login, which IAM cannot scope (commented in main.tf).
    assert document.count('resources = ["*"]') == 1


def test_plan_role_reads_configuration_not_data() -> None:
    document = block(text("main.tf"), r'data\s+"aws_iam_policy_document"\s+"plan"')
    describe = statements(document)["DescribeTheStack"]
    actions = re.findall(r'"([a-z0-9-]+:[A-Za-z*]+)"', describe)
    assert actions
    read_verbs = ("Describe", "Get", "List")
    for action in actions:
        verb = action.split(":", 1)[1]
        assert verb.startswith(read_verbs), f"{action} is not read-only"
    for data_read in (
        "s3:GetObject",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "secretsmanager:GetSecretValue",
        "kms:Decrypt",
        "sqs:ReceiveMessage",
        "lambda:InvokeFunction",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    ):
        assert f'"{data_read}"' not in describe, data_read
    # What a plan refreshes beyond configuration: the stack bucket's existence (finding: without it
    # the read-only role could not plan). No secret exists to refresh (the cache authenticates with
    # IAM), so nothing of Secrets Manager and no decrypt at all.
    found = statements(document)
    assert '"s3:ListBucket"' in found["HeadTheStackBucket"] and "var.stack_bucket_arn" in found["HeadTheStackBucket"]
    assert '"secretsmanager:' not in document and '"kms:Decrypt"' not in document
    assert set(found) == {"DescribeTheStack", "HeadTheStackBucket"}
    # State bucket: read only, and only when given.
    assert "ReadTheTerraformState" in document
    state = document[document.index("ReadTheTerraformState") :]
    assert re.search(r"for_each\s*=\s*var\.state_bucket_arn == null \? \[\] :", document)
    state_actions = set(re.findall(r'"(s3:[A-Za-z]+)"', state))
    assert state_actions == {"s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion"}


def test_everything_is_tagged() -> None:
    main = text("main.tf")
    tagged = r'resource\s+"(aws_iam_role|aws_iam_openid_connect_provider)"\s+"(\w+)"'
    for resource in re.finditer(tagged, main):
        body = block(main[resource.start() :], rf'resource\s+"{resource.group(1)}"\s+"{resource.group(2)}"')
        assert "tags = var.tags" in body, resource.group(0)


def test_terratest_role_is_the_apply_role_scoped_to_the_test_stacks() -> None:
    """One document per role (checkov evaluates neither a for_each document nor a for expression in
    it): the terratest document is the apply one on the test's scope, plus the key creation."""
    main = text("main.tf")
    apply = block(main, r'data\s+"aws_iam_policy_document"\s+"apply"')
    terratest = block(main, r'data\s+"aws_iam_policy_document"\s+"terratest"')
    apply_statements = statements(apply)
    terratest_statements = statements(terratest)
    assert set(terratest_statements) == set(apply_statements) | {"CreateTheTestStacksKeys"}
    for sid, body in apply_statements.items():
        assert terratest_statements[sid] == body.replace("local.writers.apply.", "local.writers.terratest."), sid
    assert "local.writers.terratest" not in apply and "local.writers.apply" not in terratest
    # The apply role never creates a key (the registry step does, as an administrator).
    assert "kms:CreateKey" not in apply
    # No Allow of iam:* or of every action, anywhere.
    for document in (apply, terratest):
        assert '"iam:*"' not in document and 'actions   = ["*"]' not in document


def test_terratest_workflow_uses_the_terratest_role_output() -> None:
    outputs = (REPO_ROOT / "terraform" / "outputs.tf").read_text()
    assert "module.github_oidc[*].terratest_role_arn" in outputs
    workflow = (REPO_ROOT / ".github" / "workflows" / "terratest.yml").read_text()
    assert "github_terratest_role_arn" in workflow and "github_apply_role_arn" not in workflow
