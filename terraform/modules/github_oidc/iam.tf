# The three roles, their trust (which GitHub jobs may assume them) and their permissions.

# ---- trust policies -------------------------------------------------------------------------------

data "aws_iam_policy_document" "plan_trust" {
  statement {
    sid     = "GitHubPlanEnvironmentOfOneRepository"
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

data "aws_iam_policy_document" "apply_trust" {
  statement {
    sid     = "GitHubApplyEnvironmentOfOneRepository"
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
      values   = concat(local.apply_subjects, local.terratest_subjects)
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

  # What refreshing the cache module reads: the random-password data source, the secret version
  # (its value, encrypted with the stack's key) and the stack bucket's existence (HeadBucket).
  statement {
    sid       = "GenerateTheAuthTokenCandidate"
    effect    = "Allow"
    actions   = ["secretsmanager:GetRandomPassword"]
    resources = ["*"]
  }

  statement {
    sid       = "RefreshTheAuthTokenSecret"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.redis_secret_arn]
  }

  statement {
    sid       = "DecryptWithTheStackKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }

  statement {
    sid       = "HeadTheStackBucket"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [var.stack_bucket_arn]
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

# ---- apply role: terraform apply of this stack, from the protected environment only ----------------

resource "aws_iam_role" "apply" {
  name                 = "${var.name_prefix}-github-apply"
  description          = "terraform apply of the LNN stack from the ${var.apply_environment} environment of ${var.github_repository}"
  assume_role_policy   = data.aws_iam_policy_document.apply_trust.json
  max_session_duration = var.max_session_duration

  tags = var.tags
}

data "aws_iam_policy_document" "apply" {
  # This role applies the whole stack: it creates keys, buckets, tables, repositories, roles and
  # secrets whose ARNs do not exist before the apply. It is limited to the stack's services, IAM
  # writes to roles named after this deployment, and it is reachable only from the reviewed
  # environment.
  #checkov:skip=CKV_AWS_109:Creating the stack's key, bucket and repository policies is the apply's job; see the comment above.
  #checkov:skip=CKV_AWS_111:Write actions on resources the apply itself creates (no ARN exists before).
  #checkov:skip=CKV_AWS_356:Create* calls have no resource ARN to scope to before the resource exists.
  #checkov:skip=CKV_AWS_108:The apply reads the state and the stack's objects' configuration.
  #checkov:skip=CKV_AWS_107:The apply writes and refreshes the auth-token secret it generates.
  #checkov:skip=CKV_AWS_110:IAM writes only on roles named <name_prefix>-* and the GitHub OIDC provider (statement ManageTheStacksRoles).
  #checkov:skip=CKV2_AWS_40:Same: iam:* is scoped to this deployment's roles and the OIDC provider, not to every IAM resource.

  statement {
    # Every service the stack has resources in, and nothing else (no EC2 instances are created,
    # but the VPC, subnets, endpoints and security groups are ec2: actions).
    sid    = "ManageTheStacksServices"
    effect = "Allow"
    actions = [
      "sts:GetCallerIdentity",
      "ec2:*",
      "elasticache:*",
      "dynamodb:*",
      "s3:*",
      "sns:*",
      "sqs:*",
      "lambda:*",
      "logs:*",
      "ecr:*",
      "kms:*",
      "secretsmanager:*",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "ManageTheStacksRoles"
    effect    = "Allow"
    actions   = ["iam:*"]
    resources = ["arn:${local.partition}:iam::*:role/${var.name_prefix}-*", "arn:${local.partition}:iam::*:oidc-provider/${local.oidc_host}"]
  }

  statement {
    sid       = "ReadIam"
    effect    = "Allow"
    actions   = ["iam:Get*", "iam:List*"]
    resources = ["*"]
  }

  statement {
    sid       = "ElastiCacheServiceLinkedRole"
    effect    = "Allow"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["elasticache.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "apply" {
  name   = "apply-the-stack"
  role   = aws_iam_role.apply.id
  policy = data.aws_iam_policy_document.apply.json
}
