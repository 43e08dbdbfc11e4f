# GitHub Actions -> AWS without stored keys: the GitHub OIDC identity provider and two roles that
# only workflows of ONE repository can assume, each for one kind of event:
#
#   plan role    sub = repo:<owner/name>:pull_request        read-only: describe/list the stack's
#                                                             services, read the Terraform state
#   deploy role  sub = repo:<owner/name>:ref:refs/heads/main  push to this ECR repository, update
#                                                             the code of these functions
#
# A job that names a GitHub environment gets sub = repo:<owner/name>:environment:<name> instead,
# so neither role can be assumed from one; the terraform apply job (environment "production") uses
# a role of its own (see .github/workflows/terraform.yml).

locals {
  oidc_host         = "token.actions.githubusercontent.com"
  oidc_provider_arn = var.create_oidc_provider ? aws_iam_openid_connect_provider.this[0].arn : data.aws_iam_openid_connect_provider.this[0].arn

  plan_subjects   = ["repo:${var.github_repository}:pull_request"]
  deploy_subjects = concat(["repo:${var.github_repository}:ref:refs/heads/main"], var.allow_tag_pushes ? ["repo:${var.github_repository}:ref:refs/tags/v*"] : [])

  partition = data.aws_partition.current.partition
}

data "aws_partition" "current" {}

# ---- identity provider ----------------------------------------------------------------------------

resource "aws_iam_openid_connect_provider" "this" {
  count = var.create_oidc_provider ? 1 : 0

  url            = "https://${local.oidc_host}"
  client_id_list = ["sts.amazonaws.com"]
  # AWS validates GitHub's certificate against its own trusted CAs; the thumbprints are kept for
  # providers created before that change (GitHub's two published intermediate thumbprints).
  thumbprint_list = [
    "6938fd4d98bab03faadb97b34396831e3780aea1",
    "1c58a3a8518e8759bf075b76b750d4f2df264fcd",
  ]

  tags = var.tags
}

data "aws_iam_openid_connect_provider" "this" {
  count = var.create_oidc_provider ? 0 : 1

  url = "https://${local.oidc_host}"
}

# ---- trust policies -------------------------------------------------------------------------------

data "aws_iam_policy_document" "plan_trust" {
  statement {
    sid     = "GitHubPullRequestsOfOneRepository"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = local.plan_subjects
    }
  }
}

data "aws_iam_policy_document" "deploy_trust" {
  statement {
    sid     = "GitHubMainOfOneRepository"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }

    # StringLike only for the optional tag pattern; without it the values hold no wildcard and
    # StringLike matches exactly as StringEquals would.
    condition {
      test     = "StringLike"
      variable = "${local.oidc_host}:sub"
      values   = local.deploy_subjects
    }
  }
}

# ---- plan role: read-only -------------------------------------------------------------------------

resource "aws_iam_role" "plan" {
  name                 = "${var.name_prefix}-github-plan"
  description          = "terraform plan from pull requests of ${var.github_repository} (read-only)"
  assume_role_policy   = data.aws_iam_policy_document.plan_trust.json
  max_session_duration = var.max_session_duration

  tags = var.tags
}

data "aws_iam_policy_document" "plan" {
  #checkov:skip=CKV_AWS_356:Describe/List/Get-configuration actions of these services do not support resource-level permissions (or are needed on resources whose ARNs are not known before they exist); none of them reads data.
  #checkov:skip=CKV_AWS_111:There are no write actions in this policy; the check misreads Get*/Describe* wildcards.
  #checkov:skip=CKV_AWS_108:No data is read: s3 object reads are limited to the state bucket, DynamoDB items, secret values and queue messages are not readable.
  statement {
    # What `terraform plan` refreshes for this stack: configuration and metadata only. Like the
    # managed ReadOnlyAccess policy, but limited to the services the stack uses and without the
    # actions that read data (s3:GetObject, dynamodb:GetItem/Query/Scan, sqs:ReceiveMessage,
    # lambda:InvokeFunction, ecr:BatchGetImage, secretsmanager:GetSecretValue, kms:Decrypt).
    sid    = "DescribeTheStack"
    effect = "Allow"
    actions = [
      "sts:GetCallerIdentity",
      "ec2:Describe*",
      "elasticache:Describe*",
      "elasticache:ListTagsForResource",
      "dynamodb:Describe*",
      "dynamodb:ListTables",
      "dynamodb:ListTagsOfResource",
      "s3:GetBucket*",
      "s3:GetEncryptionConfiguration",
      "s3:GetLifecycleConfiguration",
      "s3:GetReplicationConfiguration",
      "s3:GetAccelerateConfiguration",
      "s3:GetIntelligentTieringConfiguration",
      "s3:ListAllMyBuckets",
      "sns:GetTopicAttributes",
      "sns:GetSubscriptionAttributes",
      "sns:ListSubscriptionsByTopic",
      "sns:ListTagsForResource",
      "sns:ListTopics",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      "sqs:ListQueueTags",
      "sqs:ListQueues",
      "lambda:GetFunction",
      "lambda:GetFunctionConfiguration",
      "lambda:GetFunctionCodeSigningConfig",
      "lambda:GetFunctionEventInvokeConfig",
      "lambda:GetFunctionRecursionConfig",
      "lambda:GetPolicy",
      "lambda:ListTags",
      "lambda:ListVersionsByFunction",
      "logs:DescribeLogGroups",
      "logs:ListTagsForResource",
      "logs:ListTagsLogGroup",
      "ecr:DescribeRepositories",
      "ecr:GetLifecyclePolicy",
      "ecr:GetRepositoryPolicy",
      "ecr:ListTagsForResource",
      "iam:GetRole",
      "iam:GetRolePolicy",
      "iam:GetPolicy",
      "iam:GetPolicyVersion",
      "iam:GetOpenIDConnectProvider",
      "iam:ListAttachedRolePolicies",
      "iam:ListRolePolicies",
      "iam:ListOpenIDConnectProviders",
      "kms:DescribeKey",
      "kms:GetKeyPolicy",
      "kms:GetKeyRotationStatus",
      "kms:ListAliases",
      "kms:ListResourceTags",
      "secretsmanager:DescribeSecret",
      "secretsmanager:GetResourcePolicy",
      "secretsmanager:ListSecrets",
    ]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = var.state_bucket_arn == null ? [] : [var.state_bucket_arn]
    content {
      sid       = "ReadTheTerraformState"
      effect    = "Allow"
      actions   = ["s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion"]
      resources = [statement.value, "${statement.value}/*"]
    }
  }
}

resource "aws_iam_role_policy" "plan" {
  name   = "read-only-plan"
  role   = aws_iam_role.plan.id
  policy = data.aws_iam_policy_document.plan.json
}

# ---- deploy role: this repository, these functions ------------------------------------------------

resource "aws_iam_role" "deploy" {
  name                 = "${var.name_prefix}-github-deploy"
  description          = "image push and function rollout from main of ${var.github_repository}"
  assume_role_policy   = data.aws_iam_policy_document.deploy_trust.json
  max_session_duration = var.max_session_duration

  tags = var.tags
}

data "aws_iam_policy_document" "deploy" {
  statement {
    # ecr:GetAuthorizationToken is an account-level call (it returns the registry login, not access
    # to any repository) and supports no resource-level permission: IAM requires Resource "*".
    # What may be pushed is governed by the next statement.
    sid       = "LogInToTheRegistry"
    effect    = "Allow"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid    = "PushToThisRepositoryOnly"
    effect = "Allow"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:DescribeImages",
      "ecr:GetDownloadUrlForLayer",
      "ecr:InitiateLayerUpload",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = [var.ecr_repository_arn]
  }

  statement {
    sid    = "RollTheseFunctionsOntoTheImage"
    effect = "Allow"
    actions = [
      "lambda:GetFunction",
      "lambda:GetFunctionConfiguration",
      "lambda:UpdateFunctionCode",
    ]
    resources = var.function_arns
  }
}

resource "aws_iam_role_policy" "deploy" {
  name   = "push-and-roll-out"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.deploy.json
}
