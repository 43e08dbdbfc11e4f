# The permissions boundary of every role the stack creates (the functions' roles, the flow-log
# role). A boundary is the ceiling of what a role can ever do, whatever policy is attached to it
# later: the CI apply role may create and change roles only with this boundary on them
# (modules/github_oidc), so a compromised apply job cannot make a role stronger than this.
#
# The boundary is written for a deployment and every stack named after it (<name>, <name>-*), so the
# end-to-end test's stacks (<name>-tt-<id>) can be created under the same boundary
# (permissions_boundary_arn) instead of writing their own. Like the CI roles, it is changed by an
# administrator (make registry), never by the apply role, which is denied every write on it.

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # Role path of every role the stack creates: the CI roles may write roles under this path only,
  # and a path in the project's own namespace cannot match another team's roles (a name prefix such
  # as "app-" could).
  role_path = "/lnn/${var.name}/"

  boundary_name = "${var.name}-boundary"
  boundary_arn  = var.permissions_boundary_arn == null ? aws_iam_policy.boundary[0].arn : var.permissions_boundary_arn

  # The deployment's names and the names of the stacks named after it.
  name_globs = [var.name, "${var.name}-*"]
  arn_prefix = { for service in ["logs", "dynamodb", "sns", "sqs", "lambda", "elasticache"] : service => "arn:${local.partition}:${service}:${var.aws_region}:${local.account_id}" }
}

data "aws_iam_policy_document" "boundary" {
  #checkov:skip=CKV_AWS_111:The only unscoped writes are Lambda's VPC network-interface actions (statement VpcNetworkInterfaces): the interfaces do not exist before Lambda creates them.
  #checkov:skip=CKV_AWS_356:Same statement: ec2:DescribeNetworkInterfaces and ec2:DescribeSubnets support no resource-level permissions; every other statement names the stack's resources.

  statement {
    sid       = "WriteTheStacksLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${local.arn_prefix.logs}:log-group:/aws/lambda/${var.name}-*:*", "${local.arn_prefix.logs}:log-group:/aws/vpc/${var.name}/*", "${local.arn_prefix.logs}:log-group:/aws/vpc/${var.name}-*/*"]
  }

  statement {
    sid = "VpcNetworkInterfaces"
    actions = [
      "ec2:CreateNetworkInterface",
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeSubnets",
      "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses",
      "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "TheStacksRunHistory"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:BatchWriteItem"]
    resources = ["${local.arn_prefix.dynamodb}:table/${var.name}-*"]
  }

  statement {
    sid       = "TheStacksBucket"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"]
    resources = ["arn:${local.partition}:s3:::${local.bucket_name}", "arn:${local.partition}:s3:::${local.bucket_name}/*", "arn:${local.partition}:s3:::${var.name}-*", "arn:${local.partition}:s3:::${var.name}-*/*"]
  }

  statement {
    sid       = "TheStacksTopic"
    actions   = ["sns:Publish"]
    resources = ["${local.arn_prefix.sns}:${var.name}-*"]
  }

  statement {
    sid       = "TheStacksTrainer"
    actions   = ["lambda:InvokeFunction"]
    resources = ["${local.arn_prefix.lambda}:function:${var.name}-*"]
  }

  # ElastiCache IAM authentication: connecting to the stack's caches as their users.
  statement {
    sid     = "TheStacksCache"
    actions = ["elasticache:Connect"]
    resources = [
      "${local.arn_prefix.elasticache}:replicationgroup:${var.name}",
      "${local.arn_prefix.elasticache}:replicationgroup:${var.name}-*",
      "${local.arn_prefix.elasticache}:user:${var.name}-*",
    ]
  }

  statement {
    sid       = "TheStacksFailureQueue"
    actions   = ["sqs:SendMessage"]
    resources = ["${local.arn_prefix.sqs}:${var.name}-*"]
  }

  # The stack's keys are tagged Deployment = <name> (default_tags); another team's key is not.
  statement {
    sid       = "TheStacksKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = ["arn:${local.partition}:kms:${var.aws_region}:${local.account_id}:key/*"]

    condition {
      test     = "StringLike"
      variable = "aws:ResourceTag/Deployment"
      values   = local.name_globs
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = formatlist("%s.${var.aws_region}.amazonaws.com", ["dynamodb", "s3", "sns", "sqs", "lambda"])
    }
  }
}

resource "aws_iam_policy" "boundary" {
  count = var.permissions_boundary_arn == null ? 1 : 0

  name        = local.boundary_name
  path        = local.role_path
  description = "LNN ${var.name}: the most any role of the stack may do (permissions boundary)"
  policy      = data.aws_iam_policy_document.boundary.json

  tags = local.tags
}
