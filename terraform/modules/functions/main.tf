# LaunchLambda and TrainerLambda: one container image, two handlers, in the private subnets.
#
# Original notes, General Notes, and where each is met:
#   1/6. ARNs and the topic in the environment: TRAINER_FUNCTION_ARN and LAUNCH_FUNCTION_ARN are
#        built from the function names (local.function_arns), so neither function depends on the
#        other and there is no cycle.
#   2.   sns:Publish on the topic's ARN only (statement "PublishRunNotifications").
#   3.   ElastiCache permissions: none. The code never calls the ElastiCache control-plane API; it
#        speaks the Redis protocol to REDIS_HOST:REDIS_PORT, which IAM does not govern (the auth
#        token and the security groups do). So the roles carry no elasticache:* action at all.
#   4/5. Subnet group and security groups: cache and network modules; the functions run in the
#        private subnets with the Lambdas' security group (vpc_config below).
#   7.   CloudWatch log groups with 7-day retention, created before the functions.

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  functions = {
    launch = {
      name        = "${var.name_prefix}-launch"
      command     = ["trainer.handlers.launch.handler"]
      memory_size = var.launch_memory_size
      timeout     = var.launch_timeout
    }
    trainer = {
      name        = "${var.name_prefix}-trainer"
      command     = ["trainer.handlers.trainer.handler"]
      memory_size = var.trainer_memory_size
      timeout     = var.trainer_timeout
    }
  }

  function_arns = {
    for key, fn in local.functions :
    key => "arn:${data.aws_partition.current.partition}:lambda:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:function:${fn.name}"
  }

  environment = {
    SNS_TOPIC_ARN         = var.sns_topic_arn
    TRAINER_FUNCTION_ARN  = local.function_arns["trainer"]
    LAUNCH_FUNCTION_ARN   = local.function_arns["launch"]
    TABLE_NAME            = var.table_name
    MODEL_BUCKET          = var.bucket_name
    REDIS_HOST            = var.redis_host
    REDIS_PORT            = tostring(var.redis_port)
    REDIS_AUTH_SECRET_ARN = var.redis_auth_secret_arn
    REDIS_TLS             = "true"
    # LaunchLambda refuses a network too large for the trainer's memory, not for its own.
    TRAINER_MEMORY_MB = tostring(var.trainer_memory_size)
  }
}

# Created before the functions, so Lambda never creates its own log group without retention.
resource "aws_cloudwatch_log_group" "this" {
  for_each = local.functions

  name              = "/aws/lambda/${each.value.name}"
  retention_in_days = var.log_retention_in_days
  kms_key_id        = var.kms_key_arn

  #checkov:skip=CKV_AWS_338:The original notes ask for a maximum of 7 days of logs; retention is a variable for who needs more.

  tags = var.tags
}

# ---- IAM: one role per function, least privilege --------------------------------------------------

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

  name               = each.value.name
  description        = "Execution role of ${each.value.name}"
  assume_role_policy = data.aws_iam_policy_document.assume.json

  tags = var.tags
}

data "aws_iam_policy_document" "this" {
  for_each = local.functions

  #checkov:skip=CKV_AWS_111:The only unscoped write actions are the VPC network-interface ones (statement VpcNetworkInterfaces); Lambda creates the ENI before its ID exists, see the comment there.
  #checkov:skip=CKV_AWS_356:Same statement: ec2:Describe* support no resource-level permissions and the ENI does not exist yet when Lambda creates it; every other statement names its resource ARN.

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
  }

  statement {
    sid       = "DatasetsModelsCheckpoints"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${var.bucket_arn}/*"]
  }

  statement {
    sid       = "ListBucket"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
  }

  # Notes item 2: publish permission on the topic only.
  statement {
    sid       = "PublishRunNotifications"
    actions   = ["sns:Publish"]
    resources = [var.sns_topic_arn]
  }

  # Both functions invoke the trainer (launch starts it, the trainer hands on the next step).
  statement {
    sid       = "InvokeTrainer"
    actions   = ["lambda:InvokeFunction"]
    resources = [local.function_arns["trainer"]]
  }

  statement {
    sid       = "ReadRedisAuthToken"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.redis_auth_secret_arn]
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
  }

  # Notes item 3: no ElastiCache statement -- see the header of this file.
}

resource "aws_iam_role_policy" "this" {
  for_each = local.functions

  name   = "${each.value.name}-least-privilege"
  role   = aws_iam_role.this[each.key].id
  policy = data.aws_iam_policy_document.this[each.key].json
}

# ---- asynchronous invocation: failures land in an encrypted queue ---------------------------------
# An SQS queue rather than an SNS topic: the failed event (run_id, state, epoch, layer) is kept for
# 14 days, can be inspected and replayed to resume the run, and the trainer already announces
# failures it can see on the SNS topic itself.

resource "aws_sqs_queue" "this" {
  name                              = "${var.name_prefix}-failed-invocations"
  message_retention_seconds         = 1209600
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 300

  tags = var.tags
}

# ---- the functions -------------------------------------------------------------------------------

resource "aws_lambda_function" "this" {
  for_each = local.functions

  function_name = each.value.name
  description   = "LNN ${each.key} (${each.value.command[0]})"
  role          = aws_iam_role.this[each.key].arn
  package_type  = "Image"
  image_uri     = var.image_uri
  architectures = [var.architecture]
  memory_size   = each.value.memory_size
  timeout       = each.value.timeout
  kms_key_arn   = var.kms_key_arn

  image_config {
    command = each.value.command
  }

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = var.security_group_ids
  }

  environment {
    variables = local.environment
  }

  tracing_config {
    mode = "PassThrough"
  }

  #checkov:skip=CKV_AWS_116:Failed asynchronous events go to the on-failure destination (aws_lambda_function_event_invoke_config), which supersedes a dead-letter queue and keeps the error context.
  #checkov:skip=CKV_AWS_115:Reserved concurrency is left to the account: new accounts have too little unreserved concurrency to reserve any, and the trainer bounds its own chain (never more steps than the run's plan).
  #checkov:skip=CKV_AWS_272:Code signing applies to .zip packages only; these functions are container images (package_type Image) from an immutable-tag ECR repository.

  tags = var.tags

  # The role must be able to create the VPC network interfaces and write the logs before the
  # function exists, and the log groups must exist before Lambda would create its own.
  depends_on = [aws_iam_role_policy.this, aws_cloudwatch_log_group.this]
}

resource "aws_lambda_function_event_invoke_config" "this" {
  for_each = local.functions

  function_name                = aws_lambda_function.this[each.key].function_name
  maximum_retry_attempts       = var.maximum_retry_attempts
  maximum_event_age_in_seconds = var.maximum_event_age_in_seconds

  destination_config {
    on_failure {
      destination = aws_sqs_queue.this.arn
    }
  }
}

# Lambda stops a chain of self-invocations after about 16 hops unless told otherwise; a training
# run is such a chain (every step invokes the next), so the trainer must be allowed to recurse.
resource "aws_lambda_function_recursion_config" "this" {
  function_name  = aws_lambda_function.this["trainer"].function_name
  recursive_loop = "Allow"
}
