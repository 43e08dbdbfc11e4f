# LaunchLambda and TrainerLambda: one container image, two handlers, in the private subnets.
# TRAINER_FUNCTION_ARN and LAUNCH_FUNCTION_ARN are built from the function names
# (local.function_arns), so neither function depends on the other and there is no cycle. The roles
# are in iam.tf.

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

  # One BLAS kernel and one set of numpy's instructions on every host Lambda places a function on:
  # OpenBLAS and numpy otherwise pick theirs per CPU, and a chain's hops or a resume on another
  # kind of host would not give the same bits. x86_64: Haswell (AVX2 and FMA, which every x86_64
  # host has) and numpy without AVX-512; arm64: Neoverse N1 (Graviton2). trainer/local/fleet.py
  # sets the same values in the local cloud, whose mixed fleet shows the pin at work.
  blas_pin = {
    x86_64 = {
      OPENBLAS_CORETYPE        = "Haswell"
      NPY_DISABLE_CPU_FEATURES = "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"
    }
    arm64 = {
      OPENBLAS_CORETYPE = "NEOVERSEN1"
    }
  }

  environment = {
    SNS_TOPIC_ARN        = var.sns_topic_arn
    TRAINER_FUNCTION_ARN = local.function_arns["trainer"]
    LAUNCH_FUNCTION_ARN  = local.function_arns["launch"]
    TABLE_NAME           = var.table_name
    MODEL_BUCKET         = var.bucket_name
    REDIS_HOST           = var.redis_host
    REDIS_PORT           = tostring(var.redis_port)
    REDIS_TLS            = "true"
    # IAM authentication: each new connection signs a token for this user and group with the role.
    REDIS_USER_ID              = var.redis_user_id
    REDIS_REPLICATION_GROUP_ID = var.redis_replication_group_id
    # LaunchLambda refuses a network too large for the trainer's memory, not for its own.
    TRAINER_MEMORY_MB = tostring(var.trainer_memory_size)
    # ... and a dataset too large for the cache, which never evicts (cache module).
    CACHE_CAPACITY_MIB = tostring(var.cache_capacity_mib)
    # ... and a time margin the trainer's own timeout cannot give.
    TRAINER_TIMEOUT_S = tostring(var.trainer_timeout)
    # The launch reads s3:// datasets from this prefix only, apart from models and checkpoints.
    DATASET_PREFIX = var.dataset_prefix
    # ... and a request over the spending ceilings (trainer/ceilings.py): more chains at once than
    # the trainer may run, more steps or invocations than a run may take. "" = the code's default.
    TRAINER_RESERVED_CONCURRENCY = var.trainer_reserved_concurrency == null ? "" : tostring(var.trainer_reserved_concurrency)
    MAX_RUN_STEPS                = tostring(var.max_run_steps)
    MAX_RUN_INVOCATIONS          = tostring(var.max_run_invocations)
  }
}

# Created before the functions, so Lambda never creates its own log group without retention.
resource "aws_cloudwatch_log_group" "this" {
  for_each = local.functions

  name              = "/aws/lambda/${each.value.name}"
  retention_in_days = var.log_retention_in_days
  kms_key_id        = var.kms_key_arn

  #checkov:skip=CKV_AWS_338:Training logs are only useful for days; 7 days by default keeps the cost down, and retention is a variable for who needs more.

  tags = var.tags
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
  # The trainer fans out (every run a chain, a sweep several at once): its reservation is both its
  # share and its ceiling, so one request cannot take the concurrency every function of the account
  # shares. LaunchLambda is called by people, one request at a time, and stays unreserved (-1).
  reserved_concurrent_executions = each.key == "trainer" ? coalesce(var.trainer_reserved_concurrency, -1) : -1

  image_config {
    command = each.value.command
  }

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = var.security_group_ids
  }

  environment {
    variables = merge(local.environment, local.blas_pin[var.architecture])
  }

  tracing_config {
    mode = "PassThrough"
  }

  #checkov:skip=CKV_AWS_116:Failed asynchronous events go to the on-failure destination (aws_lambda_function_event_invoke_config), which supersedes a dead-letter queue and keeps the error context.
  #checkov:skip=CKV_AWS_272:Code signing applies to .zip packages only; these functions are container images (package_type Image) from an immutable-tag ECR repository.

  tags = var.tags

  # After creation the image belongs to the rollout (.github/scripts/rollout.sh, run by the image
  # workflow and `make rollout`): a later `terraform apply` must not roll the functions back to
  # the image they were created with.
  lifecycle {
    ignore_changes = [image_uri]
  }

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
