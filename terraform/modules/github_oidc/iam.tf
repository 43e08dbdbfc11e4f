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

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = local.deploy_subjects
    }
  }
}

data "aws_iam_policy_document" "release_trust" {
  count = var.allow_tag_pushes ? 1 : 0

  statement {
    sid     = "GitHubReleaseTagsOfOneRepository"
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

    # The one wildcard subject: the tag pattern, with a role that can only push images.
    condition {
      test     = "StringLike"
      variable = "${local.oidc_host}:sub"
      values   = local.release_subjects
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
      values   = local.apply_subjects
    }
  }
}

data "aws_iam_policy_document" "terratest_trust" {
  count = var.terratest_environment == null ? 0 : 1

  statement {
    sid     = "GitHubTerratestEnvironmentOfOneRepository"
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
      values   = local.terratest_subjects
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
  statement {
    # What `terraform plan` refreshes for this stack: configuration and metadata only. Like the
    # managed ReadOnlyAccess policy, but limited to the services the stack uses and without the
    # actions that read data (s3:GetObject, dynamodb:GetItem/Query/Scan, sqs:ReceiveMessage,
    # lambda:InvokeFunction, ecr:BatchGetImage, kms:Decrypt). The stack holds no secret: the cache
    # authenticates its clients with IAM.
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
    ]
    resources = ["*"]
  }

  # What refreshing the storage module reads: the stack bucket's existence (HeadBucket).
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

# ---- release role: release tags push images, and nothing else ------------------------------------

resource "aws_iam_role" "release" {
  count = var.allow_tag_pushes ? 1 : 0

  name                 = "${var.name_prefix}-github-release"
  description          = "release image push (refs/tags/v*) of ${var.github_repository}; no function update"
  assume_role_policy   = data.aws_iam_policy_document.release_trust[0].json
  max_session_duration = var.max_session_duration

  tags = var.tags
}

data "aws_iam_policy_document" "release" {
  statement {
    # As for the deploy role: the registry login supports no resource-level permission.
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

  # The image workflow reads the trainer's architecture to build for it (image_platform.sh).
  statement {
    sid       = "ReadTheFunctionsArchitecture"
    effect    = "Allow"
    actions   = ["lambda:GetFunctionConfiguration"]
    resources = var.function_arns
  }
}

resource "aws_iam_role_policy" "release" {
  count = var.allow_tag_pushes ? 1 : 0

  name   = "push-release-images"
  role   = aws_iam_role.release[0].id
  policy = data.aws_iam_policy_document.release.json
}

# ---- apply and terratest roles: terraform apply of this stack (and of the test's stacks) ----------
#
# Both roles apply whole stacks, so they create keys, buckets, tables, functions, cache users and roles.
# What keeps them from becoming account administrators:
#   - every write is on the stack's own names (<name>, <name>-*), tags (Deployment) or role path
#     (/lnn/<name>/), never on "*" -- except EC2 and ElastiCache's groups and clusters, whose
#     resources have generated IDs (statement NetworkAndCache); ElastiCache users and user groups,
#     which decide who may connect to a cache, by name only (statement TheStacksCacheUsers), and no
#     elasticache:Connect at all;
#   - every role they create or change carries the stack's permissions boundary (iam:PermissionsBoundary),
#     and roles may be passed to Lambda and VPC Flow Logs only (iam:PassedToService);
#   - they can change nothing of the CI itself: the CI roles, the OIDC provider and the boundary
#     policy are denied explicitly (an administrator changes them: make registry).
# The terratest role does the same for the end-to-end test's stacks (<terratest_name_prefix>-*) only.

resource "aws_iam_role" "apply" {
  name                 = "${var.name_prefix}-github-apply"
  description          = "terraform apply of the LNN stack from the ${var.apply_environment} environment of ${var.github_repository}"
  assume_role_policy   = data.aws_iam_policy_document.apply_trust.json
  max_session_duration = var.max_session_duration

  tags = var.tags
}

resource "aws_iam_role" "terratest" {
  count = var.terratest_environment == null ? 0 : 1

  name                 = "${var.name_prefix}-github-terratest"
  description          = "end-to-end test stacks (${var.terratest_name_prefix}-*) from the ${coalesce(var.terratest_environment, "-")} environment of ${var.github_repository}"
  assume_role_policy   = data.aws_iam_policy_document.terratest_trust[0].json
  max_session_duration = var.max_session_duration

  tags = var.tags
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  arn        = { for service in ["logs", "dynamodb", "sns", "sqs", "lambda", "elasticache", "ecr", "kms"] : service => "arn:${local.partition}:${service}:${local.region}:${local.account_id}" }

  # What each role may write: the names of its stacks, their role path, their buckets.
  writers = {
    apply = {
      globs      = [var.name_prefix, "${var.name_prefix}-*"]
      role_paths = ["arn:${local.partition}:iam::${local.account_id}:role/lnn/${var.name_prefix}/*"]
      buckets    = compact([var.stack_bucket_arn, var.state_bucket_arn])
    }
    terratest = {
      globs      = ["${var.terratest_name_prefix}-*"]
      role_paths = ["arn:${local.partition}:iam::${local.account_id}:role/lnn/${var.terratest_name_prefix}-*"]
      buckets    = ["arn:${local.partition}:s3:::${var.terratest_name_prefix}-*"]
    }
  }

  key_services = formatlist("%s.${local.region}.amazonaws.com", ["dynamodb", "s3", "sns", "sqs", "lambda", "elasticache", "ecr", "logs"])

  # ElastiCache's replication groups, clusters, subnet and parameter groups, snapshots and tags:
  # not its users and user groups (who may connect) and not Connect (the functions' alone).
  cache_actions = [
    "elasticache:*ReplicationGroup*",
    "elasticache:*CacheCluster*",
    "elasticache:*CacheSubnetGroup*",
    "elasticache:*CacheParameterGroup*",
    "elasticache:*Snapshot*",
    "elasticache:*ReplicaCount",
    "elasticache:AddTagsToResource",
    "elasticache:RemoveTagsFromResource",
  ]
  cache_user_actions = [
    "elasticache:CreateUser",
    "elasticache:ModifyUser",
    "elasticache:DeleteUser",
    "elasticache:CreateUserGroup",
    "elasticache:ModifyUserGroup",
    "elasticache:DeleteUserGroup",
    "elasticache:AddTagsToResource",
    "elasticache:RemoveTagsFromResource",
  ]

  # Everything of the CI itself: no role this module makes may change it.
  ci_arns = concat(
    [aws_iam_role.plan.arn, aws_iam_role.deploy.arn, aws_iam_role.apply.arn],
    aws_iam_role.terratest[*].arn,
    aws_iam_role.release[*].arn,
    [local.oidc_provider_arn, var.permissions_boundary_arn],
  )
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

data "aws_iam_policy_document" "apply" {
  #checkov:skip=CKV_AWS_111:The unscoped writes are the network's EC2 kinds and ElastiCache (statement NetworkAndCache), whose resources get generated IDs, so no ARN exists before the apply; every other write names the stack's resources, tag or role path.
  #checkov:skip=CKV_AWS_356:Same statement, and the configuration reads of statement ReadConfiguration, most of which support no resource-level permissions.


  statement {
    # Configuration reads of the services the stack uses; none returns data (objects, items, secret
    # values). Most of these support no resource-level permissions.
    sid    = "ReadConfiguration"
    effect = "Allow"
    actions = [
      "sts:GetCallerIdentity",
      "ec2:Describe*",
      "elasticache:Describe*",
      "elasticache:List*",
      "dynamodb:Describe*",
      "dynamodb:List*",
      "sns:List*",
      "sqs:List*",
      "lambda:List*",
      "lambda:GetAccountSettings",
      "logs:Describe*",
      "logs:List*",
      "kms:List*",
      "kms:DescribeKey",
      "ecr:DescribeRepositories",
      "iam:Get*",
      "iam:List*",
    ]
    resources = ["*"]
  }

  # The VPC and the cache: their resources get generated IDs (vpc-, subnet-, sg-, ...), so there is
  # no ARN to name before the apply. The EC2 actions are the network's kinds only (no instances, no
  # images, no volumes); the network interfaces are Lambda's, which destroying a security group
  # detaches and deletes.
  statement {
    sid    = "NetworkAndCache"
    effect = "Allow"
    actions = concat([
      "ec2:CreateVpc",
      "ec2:DeleteVpc",
      "ec2:ModifyVpcAttribute",
      "ec2:CreateVpcEndpoint",
      "ec2:ModifyVpcEndpoint",
      "ec2:DeleteVpcEndpoints",
      "ec2:*Subnet*",
      "ec2:*RouteTable*",
      "ec2:*Route",
      "ec2:*SecurityGroup*",
      "ec2:*FlowLogs",
      "ec2:CreateTags",
      "ec2:DeleteTags",
      "ec2:DetachNetworkInterface",
      "ec2:DeleteNetworkInterface",
    ], local.cache_actions)
    resources = ["*"]
  }

  # The users and user groups of the stack's caches, by name: <name>-functions, <name>-default, <name>.
  statement {
    sid     = "TheStacksCacheUsers"
    effect  = "Allow"
    actions = local.cache_user_actions
    resources = flatten([for glob in local.writers.apply.globs : [
      "${local.arn.elasticache}:user:${glob}",
      "${local.arn.elasticache}:usergroup:${glob}",
    ]])
  }

  statement {
    sid     = "TheStacksTablesTopicsQueuesFunctionsRepositories"
    effect  = "Allow"
    actions = ["dynamodb:*", "sns:*", "sqs:*", "lambda:*", "ecr:*"]
    resources = flatten([for glob in local.writers.apply.globs : [
      "${local.arn.dynamodb}:table/${glob}",
      "${local.arn.dynamodb}:table/${glob}/*",
      "${local.arn.sns}:${glob}",
      "${local.arn.sqs}:${glob}",
      "${local.arn.lambda}:function:${glob}",
      "${local.arn.lambda}:function:${glob}:*",
      "${local.arn.ecr}:repository/${glob}",
    ]])
  }

  statement {
    sid     = "TheStacksLogGroups"
    effect  = "Allow"
    actions = ["logs:*"]
    resources = flatten([for glob in local.writers.apply.globs : [
      "${local.arn.logs}:log-group:/aws/lambda/${glob}",
      "${local.arn.logs}:log-group:/aws/lambda/${glob}:*",
      "${local.arn.logs}:log-group:/aws/vpc/${glob}/*",
    ]])
  }

  statement {
    sid       = "TheStacksBuckets"
    effect    = "Allow"
    actions   = ["s3:*"]
    resources = flatten([for bucket in local.writers.apply.buckets : [bucket, "${bucket}/*"]])
  }

  # A key has no name: it carries the Deployment tag (default_tags) and is used and changed only
  # while it does; another team's key has another tag, or none. The deployment's key is created by
  # an administrator with the registry (make registry), so the apply role never creates one. The
  # test's stacks create theirs: CreateKey with the tag in the request, and the TagResource it needs
  # for that (IAM cannot tell a key being created from an existing untagged one: see README, Security).
  statement {
    sid    = "ManageTheStacksKey"
    effect = "Allow"
    actions = [
      "kms:Describe*",
      "kms:Get*",
      "kms:List*",
      "kms:PutKeyPolicy",
      "kms:EnableKeyRotation",
      "kms:DisableKeyRotation",
      "kms:UpdateKeyDescription",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:ScheduleKeyDeletion",
      "kms:CancelKeyDeletion",
    ]
    resources = ["${local.arn.kms}:key/*"]

    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/Deployment"
      values   = local.writers.apply.globs
    }
  }

  # Encryption with the key happens in the services that create the stack's encrypted resources
  # (grants for the table, the cache, the functions' environment; the state's values): only through them.
  statement {
    sid       = "UseTheStacksKeyThroughItsServices"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:CreateGrant"]
    resources = ["${local.arn.kms}:key/*"]

    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/Deployment"
      values   = local.writers.apply.globs
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = local.key_services
    }
  }

  statement {
    sid       = "TheStacksKeyAlias"
    effect    = "Allow"
    actions   = ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"]
    resources = formatlist("${local.arn.kms}:alias/%s", local.writers.apply.globs)
  }

  # The IAM writes AWS evaluates iam:PermissionsBoundary for: only roles under the stack's path, and
  # only with the stack's boundary on them.
  statement {
    sid    = "WriteTheStacksRolesWithinTheBoundary"
    effect = "Allow"
    actions = [
      "iam:CreateRole",
      "iam:PutRolePolicy",
      "iam:DeleteRolePolicy",
      "iam:AttachRolePolicy",
      "iam:DetachRolePolicy",
      "iam:PutRolePermissionsBoundary",
    ]
    resources = local.writers.apply.role_paths

    condition {
      test     = "StringEquals"
      variable = "iam:PermissionsBoundary"
      values   = [var.permissions_boundary_arn]
    }
  }

  # The role writes for which AWS sets no iam:PermissionsBoundary in the request context (a
  # condition on it would never match, and terraform destroy could not delete the roles). They are
  # limited to the stack's path and its Deployment tag; every role there was created with the
  # boundary (statement above), and the boundary cannot be removed (statement DenyRemovingABoundary).
  statement {
    sid    = "ChangeTheStacksBoundedRoles"
    effect = "Allow"
    actions = [
      "iam:DeleteRole",
      "iam:UpdateRole",
      "iam:UpdateRoleDescription",
      "iam:UpdateAssumeRolePolicy",
      "iam:TagRole",
      "iam:UntagRole",
    ]
    resources = local.writers.apply.role_paths

    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/Deployment"
      values   = local.writers.apply.globs
    }
  }

  statement {
    sid       = "PassTheStacksRolesToLambdaAndFlowLogsOnly"
    effect    = "Allow"
    actions   = ["iam:PassRole"]
    resources = local.writers.apply.role_paths

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["lambda.amazonaws.com", "vpc-flow-logs.amazonaws.com"]
    }
  }

  statement {
    sid       = "ElastiCacheServiceLinkedRole"
    effect    = "Allow"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/elasticache.amazonaws.com/*"]

    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["elasticache.amazonaws.com"]
    }
  }

  statement {
    sid         = "DenyChangingTheCi"
    effect      = "Deny"
    not_actions = ["iam:Get*", "iam:List*"]
    resources   = local.ci_arns
  }

  statement {
    sid       = "DenyRemovingABoundary"
    effect    = "Deny"
    actions   = ["iam:DeleteRolePermissionsBoundary"]
    resources = ["*"]
  }
}

# The same document for the end-to-end test's stacks, plus the key creation those stacks need
# (tests/infra/github/test_github_oidc_module.py checks that the two stay the same otherwise).
data "aws_iam_policy_document" "terratest" {
  count = var.terratest_environment == null ? 0 : 1

  #checkov:skip=CKV_AWS_111:As for the apply role: the network's EC2 kinds and ElastiCache have generated IDs, and kms:CreateKey has no ARN before the key exists (it is conditioned on the request's Deployment tag instead).
  #checkov:skip=CKV_AWS_356:Same statements, and the configuration reads of statement ReadConfiguration, most of which support no resource-level permissions.


  statement {
    # Configuration reads of the services the stack uses; none returns data (objects, items, secret
    # values). Most of these support no resource-level permissions.
    sid    = "ReadConfiguration"
    effect = "Allow"
    actions = [
      "sts:GetCallerIdentity",
      "ec2:Describe*",
      "elasticache:Describe*",
      "elasticache:List*",
      "dynamodb:Describe*",
      "dynamodb:List*",
      "sns:List*",
      "sqs:List*",
      "lambda:List*",
      "lambda:GetAccountSettings",
      "logs:Describe*",
      "logs:List*",
      "kms:List*",
      "kms:DescribeKey",
      "ecr:DescribeRepositories",
      "iam:Get*",
      "iam:List*",
    ]
    resources = ["*"]
  }

  # The VPC and the cache: their resources get generated IDs (vpc-, subnet-, sg-, ...), so there is
  # no ARN to name before the apply. The EC2 actions are the network's kinds only (no instances, no
  # images, no volumes); the network interfaces are Lambda's, which destroying a security group
  # detaches and deletes.
  statement {
    sid    = "NetworkAndCache"
    effect = "Allow"
    actions = concat([
      "ec2:CreateVpc",
      "ec2:DeleteVpc",
      "ec2:ModifyVpcAttribute",
      "ec2:CreateVpcEndpoint",
      "ec2:ModifyVpcEndpoint",
      "ec2:DeleteVpcEndpoints",
      "ec2:*Subnet*",
      "ec2:*RouteTable*",
      "ec2:*Route",
      "ec2:*SecurityGroup*",
      "ec2:*FlowLogs",
      "ec2:CreateTags",
      "ec2:DeleteTags",
      "ec2:DetachNetworkInterface",
      "ec2:DeleteNetworkInterface",
    ], local.cache_actions)
    resources = ["*"]
  }

  # The users and user groups of the stack's caches, by name: <name>-functions, <name>-default, <name>.
  statement {
    sid     = "TheStacksCacheUsers"
    effect  = "Allow"
    actions = local.cache_user_actions
    resources = flatten([for glob in local.writers.terratest.globs : [
      "${local.arn.elasticache}:user:${glob}",
      "${local.arn.elasticache}:usergroup:${glob}",
    ]])
  }

  statement {
    sid     = "TheStacksTablesTopicsQueuesFunctionsRepositories"
    effect  = "Allow"
    actions = ["dynamodb:*", "sns:*", "sqs:*", "lambda:*", "ecr:*"]
    resources = flatten([for glob in local.writers.terratest.globs : [
      "${local.arn.dynamodb}:table/${glob}",
      "${local.arn.dynamodb}:table/${glob}/*",
      "${local.arn.sns}:${glob}",
      "${local.arn.sqs}:${glob}",
      "${local.arn.lambda}:function:${glob}",
      "${local.arn.lambda}:function:${glob}:*",
      "${local.arn.ecr}:repository/${glob}",
    ]])
  }

  statement {
    sid     = "TheStacksLogGroups"
    effect  = "Allow"
    actions = ["logs:*"]
    resources = flatten([for glob in local.writers.terratest.globs : [
      "${local.arn.logs}:log-group:/aws/lambda/${glob}",
      "${local.arn.logs}:log-group:/aws/lambda/${glob}:*",
      "${local.arn.logs}:log-group:/aws/vpc/${glob}/*",
    ]])
  }

  statement {
    sid       = "TheStacksBuckets"
    effect    = "Allow"
    actions   = ["s3:*"]
    resources = flatten([for bucket in local.writers.terratest.buckets : [bucket, "${bucket}/*"]])
  }

  # A key has no name: it carries the Deployment tag (default_tags) and is used and changed only
  # while it does; another team's key has another tag, or none. The deployment's key is created by
  # an administrator with the registry (make registry), so the apply role never creates one. The
  # test's stacks create theirs: CreateKey with the tag in the request, and the TagResource it needs
  # for that (IAM cannot tell a key being created from an existing untagged one: see README, Security).
  statement {
    sid       = "CreateTheTestStacksKeys"
    effect    = "Allow"
    actions   = ["kms:CreateKey", "kms:TagResource"]
    resources = ["*"]

    condition {
      test     = "StringLike"
      variable = "aws:RequestTag/Deployment"
      values   = local.writers.terratest.globs
    }

    condition {
      test     = "StringLikeIfExists"
      variable = "aws:ResourceTag/Deployment"
      values   = local.writers.terratest.globs
    }
  }

  statement {
    sid    = "ManageTheStacksKey"
    effect = "Allow"
    actions = [
      "kms:Describe*",
      "kms:Get*",
      "kms:List*",
      "kms:PutKeyPolicy",
      "kms:EnableKeyRotation",
      "kms:DisableKeyRotation",
      "kms:UpdateKeyDescription",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:ScheduleKeyDeletion",
      "kms:CancelKeyDeletion",
    ]
    resources = ["${local.arn.kms}:key/*"]

    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/Deployment"
      values   = local.writers.terratest.globs
    }
  }

  # Encryption with the key happens in the services that create the stack's encrypted resources
  # (grants for the table, the cache, the functions' environment; the state's values): only through them.
  statement {
    sid       = "UseTheStacksKeyThroughItsServices"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:CreateGrant"]
    resources = ["${local.arn.kms}:key/*"]

    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/Deployment"
      values   = local.writers.terratest.globs
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = local.key_services
    }
  }

  statement {
    sid       = "TheStacksKeyAlias"
    effect    = "Allow"
    actions   = ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"]
    resources = formatlist("${local.arn.kms}:alias/%s", local.writers.terratest.globs)
  }

  # The IAM writes AWS evaluates iam:PermissionsBoundary for: only roles under the stack's path, and
  # only with the stack's boundary on them.
  statement {
    sid    = "WriteTheStacksRolesWithinTheBoundary"
    effect = "Allow"
    actions = [
      "iam:CreateRole",
      "iam:PutRolePolicy",
      "iam:DeleteRolePolicy",
      "iam:AttachRolePolicy",
      "iam:DetachRolePolicy",
      "iam:PutRolePermissionsBoundary",
    ]
    resources = local.writers.terratest.role_paths

    condition {
      test     = "StringEquals"
      variable = "iam:PermissionsBoundary"
      values   = [var.permissions_boundary_arn]
    }
  }

  # The role writes for which AWS sets no iam:PermissionsBoundary in the request context (a
  # condition on it would never match, and terraform destroy could not delete the roles). They are
  # limited to the stack's path and its Deployment tag; every role there was created with the
  # boundary (statement above), and the boundary cannot be removed (statement DenyRemovingABoundary).
  statement {
    sid    = "ChangeTheStacksBoundedRoles"
    effect = "Allow"
    actions = [
      "iam:DeleteRole",
      "iam:UpdateRole",
      "iam:UpdateRoleDescription",
      "iam:UpdateAssumeRolePolicy",
      "iam:TagRole",
      "iam:UntagRole",
    ]
    resources = local.writers.terratest.role_paths

    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/Deployment"
      values   = local.writers.terratest.globs
    }
  }

  statement {
    sid       = "PassTheStacksRolesToLambdaAndFlowLogsOnly"
    effect    = "Allow"
    actions   = ["iam:PassRole"]
    resources = local.writers.terratest.role_paths

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["lambda.amazonaws.com", "vpc-flow-logs.amazonaws.com"]
    }
  }

  statement {
    sid       = "ElastiCacheServiceLinkedRole"
    effect    = "Allow"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/elasticache.amazonaws.com/*"]

    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["elasticache.amazonaws.com"]
    }
  }

  statement {
    sid         = "DenyChangingTheCi"
    effect      = "Deny"
    not_actions = ["iam:Get*", "iam:List*"]
    resources   = local.ci_arns
  }

  statement {
    sid       = "DenyRemovingABoundary"
    effect    = "Deny"
    actions   = ["iam:DeleteRolePermissionsBoundary"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "apply" {
  name   = "apply-the-stack"
  role   = aws_iam_role.apply.id
  policy = data.aws_iam_policy_document.apply.json
}

resource "aws_iam_role_policy" "terratest" {
  count = var.terratest_environment == null ? 0 : 1

  name   = "apply-the-test-stacks"
  role   = aws_iam_role.terratest[0].id
  policy = data.aws_iam_policy_document.terratest[0].json
}
