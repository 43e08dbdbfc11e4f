# One role per function, least privilege.

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "this" {
  for_each = local.functions

  name                 = each.value.name
  path                 = var.role_path
  description          = "Execution role of ${each.value.name}"
  assume_role_policy   = data.aws_iam_policy_document.assume.json
  permissions_boundary = var.permissions_boundary_arn

  tags = var.tags
}

data "aws_iam_policy_document" "this" {
  for_each = local.functions

  #checkov:skip=CKV_AWS_111:The only unscoped write actions are the VPC network-interface ones (statement VpcNetworkInterfaces); Lambda creates the ENI before its ID exists, see the comment there.
  #checkov:skip=CKV_AWS_356:Same statement: ec2:Describe* support no resource-level permissions and the ENI does not exist yet when Lambda creates it; every other statement names its resource ARN.

  # No aws:SourceVpc on three statements, because their calls never pass through the VPC: the logs
  # (WriteOwnLogGroup) and the on-failure destination (SendFailedEvents) are written by the Lambda
  # service with the function's role, and the network interfaces (VpcNetworkInterfaces) are created
  # by Lambda before the function runs. A condition on them would refuse Lambda itself. The key
  # (UseStackKey) is used by the services on the function's behalf: kms:ViaService instead.
  statement {
    sid       = "WriteOwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this[each.key].arn}:*"]
  }

  # The equivalent of AWSLambdaVPCAccessExecutionRole. "*" is unavoidable: ec2:DescribeNetworkInterfaces
  # and ec2:DescribeSubnets support no resource-level permissions at all, and Lambda calls
  # Create/Delete/AssignPrivateIp/UnassignPrivateIp on network interfaces whose IDs do not exist
  # when the policy is written (Lambda creates and recycles them on the function's behalf).
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
    sid = "RunHistory"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:Query",
      "dynamodb:BatchWriteItem",
    ]
    resources = [var.table_arn]

    # Through the stack's VPC endpoints only: stolen credentials do not work from elsewhere.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceVpc"
      values   = [var.vpc_id]
    }
  }

  statement {
    sid       = "DatasetsModelsCheckpoints"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${var.bucket_arn}/*"]

    # Through the stack's VPC endpoints only: stolen credentials do not work from elsewhere.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceVpc"
      values   = [var.vpc_id]
    }
  }

  # The trainer's finish writes the model before the run reads SUCCEEDED, and takes it back out
  # when a cancel won the race (trainer/effects.py): deletes of models only, by the trainer only,
  # never of datasets or checkpoints.
  dynamic "statement" {
    for_each = each.key == "trainer" ? ["models"] : []

    content {
      sid       = "ModelsOfRefusedFinishes"
      actions   = ["s3:DeleteObject"]
      resources = ["${var.bucket_arn}/${statement.value}/*"]

      # Through the stack's VPC endpoints only: stolen credentials do not work from elsewhere.
      condition {
        test     = "StringEquals"
        variable = "aws:SourceVpc"
        values   = [var.vpc_id]
      }
    }
  }

  statement {
    sid       = "ListBucket"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]

    # Through the stack's VPC endpoints only: stolen credentials do not work from elsewhere.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceVpc"
      values   = [var.vpc_id]
    }
  }

  statement {
    sid       = "PublishRunNotifications"
    actions   = ["sns:Publish"]
    resources = [var.sns_topic_arn]

    # Through the stack's VPC endpoints only: stolen credentials do not work from elsewhere.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceVpc"
      values   = [var.vpc_id]
    }
  }

  # Both functions invoke the trainer (launch starts it, the trainer hands on the next step).
  statement {
    sid       = "InvokeTrainer"
    actions   = ["lambda:InvokeFunction"]
    resources = [local.function_arns["trainer"]]

    # Through the stack's VPC endpoints only: stolen credentials do not work from elsewhere.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceVpc"
      values   = [var.vpc_id]
    }
  }

  # ElastiCache IAM authentication: the token a function signs lets it connect to the stack's cache
  # as the stack's user, nothing else. No aws:SourceVpc here: ElastiCache authorizes the token when
  # it arrives over the Redis protocol, not through a VPC endpoint, so that key is absent from the
  # request and the condition would refuse every connection; the cache's security group already
  # admits the functions' network only.
  statement {
    sid       = "ConnectToCache"
    actions   = ["elasticache:Connect"]
    resources = [var.redis_replication_group_arn, var.redis_user_arn]
  }

  # The asynchronous-invocation on-failure destination is sent to with the function's role.
  statement {
    sid       = "SendFailedEvents"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.this.arn]
  }

  # Everything above is encrypted with the stack's key.
  statement {
    sid       = "UseStackKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]

    # Only through the services that hold the encrypted data (and Lambda, for the environment):
    # the functions never call KMS themselves.
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = formatlist("%s.${data.aws_region.current.name}.amazonaws.com", ["dynamodb", "s3", "sns", "sqs", "lambda"])
    }
  }

  # No other ElastiCache statement: the code never calls the ElastiCache API; it speaks the Redis
  # protocol to REDIS_HOST:REDIS_PORT, authenticated by the token (ConnectToCache) and reached
  # through the security groups.
}

resource "aws_iam_role_policy" "this" {
  for_each = local.functions

  name   = "${each.value.name}-least-privilege"
  role   = aws_iam_role.this[each.key].id
  policy = data.aws_iam_policy_document.this[each.key].json
}
