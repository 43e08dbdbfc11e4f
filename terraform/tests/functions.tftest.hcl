# The functions module: the environment contract with the Python code, the container image, the
# VPC placement, the 7-day log groups, asynchronous invocation, the recursion setting and
# least-privilege IAM (original notes, General Notes items 1, 2, 3, 5, 6 and 7).

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name_prefix        = "lnn"
  image_uri          = "123456789012.dkr.ecr.us-east-1.amazonaws.com/lnn:v1"
  subnet_ids         = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
  security_group_ids = ["sg-0lambda"]
  table_name         = "lnn-runs"
  table_arn          = "arn:aws:dynamodb:us-east-1:123456789012:table/lnn-runs"
  bucket_name        = "lnn-bucket"
  bucket_arn         = "arn:aws:s3:::lnn-bucket"
  sns_topic_arn      = "arn:aws:sns:us-east-1:123456789012:lnn-runs"
  redis_host         = "master.lnn.abcdef.use1.cache.amazonaws.com"
  redis_port         = 6379
  cache_capacity_mib = 1052
  kms_key_arn        = "arn:aws:kms:us-east-1:123456789012:key/11111111-1111-1111-1111-111111111111"
  vpc_id             = "vpc-0123456789abcdef0"

  redis_replication_group_id  = "lnn"
  redis_replication_group_arn = "arn:aws:elasticache:us-east-1:123456789012:replicationgroup:lnn"
  redis_user_id               = "lnn-functions"
  redis_user_arn              = "arn:aws:elasticache:us-east-1:123456789012:user:lnn-functions"
}

run "note7_log_groups_keep_7_days_and_exist_before_the_functions" {
  module {
    source = "./modules/functions"
  }

  assert {
    condition     = alltrue([for g in aws_cloudwatch_log_group.this : g.retention_in_days == 7])
    error_message = "every function log group must keep logs for 7 days"
  }

  assert {
    condition     = toset([for g in aws_cloudwatch_log_group.this : g.name]) == toset(["/aws/lambda/lnn-launch", "/aws/lambda/lnn-trainer"])
    error_message = "each function must have its own log group named /aws/lambda/<function name>"
  }
}

run "notes1_6_environment_has_the_arns_topic_and_redis_settings" {
  module {
    source = "./modules/functions"
  }

  assert {
    condition = alltrue([for f in aws_lambda_function.this : toset(keys(f.environment[0].variables)) == toset([
      "SNS_TOPIC_ARN", "TRAINER_FUNCTION_ARN", "LAUNCH_FUNCTION_ARN", "TABLE_NAME", "MODEL_BUCKET",
      "REDIS_HOST", "REDIS_PORT", "REDIS_USER_ID", "REDIS_REPLICATION_GROUP_ID", "REDIS_TLS", "TRAINER_MEMORY_MB",
      "CACHE_CAPACITY_MIB", "TRAINER_TIMEOUT_S", "OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", "DATASET_PREFIX",
      "TRAINER_RESERVED_CONCURRENCY", "MAX_RUN_STEPS", "MAX_RUN_INVOCATIONS",
    ])])
    error_message = "both functions must carry exactly the environment the Python code and its BLAS read"
  }

  assert {
    condition     = alltrue([for f in aws_lambda_function.this : f.environment[0].variables["OPENBLAS_CORETYPE"] == "Haswell"])
    error_message = "on x86_64 both functions must pin OpenBLAS's Haswell kernel (the same bits on every host)"
  }

  assert {
    condition     = aws_lambda_function.this["trainer"].environment[0].variables["TRAINER_FUNCTION_ARN"] == "arn:aws:lambda:us-east-1:123456789012:function:lnn-trainer"
    error_message = "TRAINER_FUNCTION_ARN must be the trainer's ARN, built from its name"
  }

  assert {
    condition     = aws_lambda_function.this["launch"].environment[0].variables["LAUNCH_FUNCTION_ARN"] == "arn:aws:lambda:us-east-1:123456789012:function:lnn-launch"
    error_message = "LAUNCH_FUNCTION_ARN must be the launcher's ARN, built from its name"
  }

  assert {
    condition     = aws_lambda_function.this["launch"].environment[0].variables["SNS_TOPIC_ARN"] == var.sns_topic_arn
    error_message = "SNS_TOPIC_ARN must be the topic's ARN"
  }

  assert {
    condition = (
      aws_lambda_function.this["trainer"].environment[0].variables["TABLE_NAME"] == "lnn-runs" &&
      aws_lambda_function.this["trainer"].environment[0].variables["MODEL_BUCKET"] == "lnn-bucket" &&
      aws_lambda_function.this["trainer"].environment[0].variables["REDIS_HOST"] == var.redis_host &&
      aws_lambda_function.this["trainer"].environment[0].variables["REDIS_PORT"] == "6379" &&
      aws_lambda_function.this["trainer"].environment[0].variables["REDIS_TLS"] == "true" &&
      aws_lambda_function.this["trainer"].environment[0].variables["REDIS_USER_ID"] == "lnn-functions" &&
      aws_lambda_function.this["trainer"].environment[0].variables["REDIS_REPLICATION_GROUP_ID"] == "lnn" &&
      aws_lambda_function.this["launch"].environment[0].variables["DATASET_PREFIX"] == "datasets/"
    )
    error_message = "table, bucket and cache settings (the IAM user and the group its tokens name) must reach the functions unchanged"
  }
}

run "image_package_and_handler_commands" {
  command = plan

  module {
    source = "./modules/functions"
  }

  assert {
    condition     = alltrue([for f in aws_lambda_function.this : f.package_type == "Image" && f.image_uri == var.image_uri])
    error_message = "both functions must run the container image"
  }

  assert {
    condition     = aws_lambda_function.this["launch"].image_config[0].command == tolist(["trainer.handlers.launch.handler"])
    error_message = "LaunchLambda must run trainer.handlers.launch.handler"
  }

  assert {
    condition     = aws_lambda_function.this["trainer"].image_config[0].command == tolist(["trainer.handlers.trainer.handler"])
    error_message = "TrainerLambda must run trainer.handlers.trainer.handler"
  }

  assert {
    condition     = aws_lambda_function.this["trainer"].memory_size == 2048 && aws_lambda_function.this["trainer"].timeout == 900
    error_message = "trainer memory and timeout defaults changed"
  }
}

run "note5_functions_run_in_the_vpc" {
  command = plan

  module {
    source = "./modules/functions"
  }

  assert {
    condition = alltrue([for f in aws_lambda_function.this :
      toset(f.vpc_config[0].subnet_ids) == toset(var.subnet_ids) &&
      toset(f.vpc_config[0].security_group_ids) == toset(var.security_group_ids)
    ])
    error_message = "both functions must run in the private subnets with the Lambdas' security group"
  }
}

run "trainer_recursion_allowed" {
  module {
    source = "./modules/functions"
  }

  assert {
    condition     = aws_lambda_function_recursion_config.this.recursive_loop == "Allow"
    error_message = "the trainer must be allowed to invoke itself beyond Lambda's ~16-hop loop detection"
  }

  assert {
    condition     = aws_lambda_function_recursion_config.this.function_name == aws_lambda_function.this["trainer"].function_name
    error_message = "the recursion setting must apply to the trainer"
  }
}

run "async_invoke_config_with_on_failure_destination" {
  module {
    source = "./modules/functions"
  }

  assert {
    condition = alltrue([for c in aws_lambda_function_event_invoke_config.this :
      c.maximum_retry_attempts == 2 &&
      c.maximum_event_age_in_seconds == 3600 &&
      c.destination_config[0].on_failure[0].destination == aws_sqs_queue.this.arn
    ])
    error_message = "asynchronous invocations must retry, expire and land in the failure queue"
  }

  assert {
    condition     = aws_sqs_queue.this.kms_master_key_id == var.kms_key_arn
    error_message = "the failure queue must be encrypted with the stack's key"
  }
}

# Bounded spend: the trainer, which fans out, has reserved concurrency (its share and its ceiling),
# and LaunchLambda is told the ceilings it refuses requests by.
run "trainer_has_reserved_concurrency" {
  command = plan

  module {
    source = "./modules/functions"
  }

  variables {
    trainer_reserved_concurrency = 7
  }

  assert {
    condition     = aws_lambda_function.this["trainer"].reserved_concurrent_executions == 7 && aws_lambda_function.this["launch"].reserved_concurrent_executions == -1
    error_message = "the trainer must reserve trainer_reserved_concurrency; the launch stays unreserved"
  }

  assert {
    condition     = aws_lambda_function.this["launch"].environment[0].variables["TRAINER_RESERVED_CONCURRENCY"] == "7" && aws_lambda_function.this["launch"].environment[0].variables["MAX_RUN_STEPS"] == "10000000" && aws_lambda_function.this["launch"].environment[0].variables["MAX_RUN_INVOCATIONS"] == "200000"
    error_message = "the launch must know the ceilings it refuses requests by"
  }
}

run "trainer_reserves_twenty_by_default" {
  command = plan

  module {
    source = "./modules/functions"
  }

  assert {
    condition     = aws_lambda_function.this["trainer"].reserved_concurrent_executions == 20
    error_message = "the trainer reserves 20 by default"
  }
}

# Stolen function credentials are useless outside the VPC: every statement whose calls the function
# makes itself (through the VPC endpoints) carries aws:SourceVpc; the three the Lambda service makes
# with the role (logs, network interfaces, the on-failure destination) cannot, the key is only
# usable through the services (kms:ViaService), and elasticache:Connect is authorized when the token
# arrives over the Redis protocol, not through an endpoint (the key would be absent: every
# connection refused).
run "function_statements_carry_the_vpc_condition" {
  command = plan

  module {
    source = "./modules/functions"
  }

  assert {
    condition = alltrue([for d in data.aws_iam_policy_document.this : alltrue([
      for s in d.statement : anytrue([for c in s.condition : c.test == "StringEquals" && c.variable == "aws:SourceVpc" && toset(c.values) == toset(["vpc-0123456789abcdef0"])])
      if !contains(["WriteOwnLogGroup", "VpcNetworkInterfaces", "SendFailedEvents", "UseStackKey", "ConnectToCache"], s.sid)
    ])])
    error_message = "every statement the function's own calls use must carry aws:SourceVpc"
  }

  assert {
    condition = alltrue([for k, d in data.aws_iam_policy_document.this : length([
      for s in d.statement : s if !contains(["WriteOwnLogGroup", "VpcNetworkInterfaces", "SendFailedEvents", "UseStackKey", "ConnectToCache"], s.sid)
    ]) == (k == "trainer" ? 6 : 5)])
    error_message = "five statements are the functions' own calls through the endpoints (table, objects, bucket, topic, trainer), and the trainer's sixth deletes models"
  }

  assert {
    condition = alltrue([for d in data.aws_iam_policy_document.this : alltrue([
      for s in d.statement : anytrue([for c in s.condition : c.variable == "kms:ViaService" && contains(c.values, "s3.us-east-1.amazonaws.com")])
      if contains(s.actions, "kms:Decrypt")
    ])])
    error_message = "every decrypt grant must carry kms:ViaService"
  }
}

run "iam_least_privilege" {
  command = plan

  module {
    source = "./modules/functions"
  }

  # Notes item 2: publish permission on the topic only.
  assert {
    condition = alltrue([for d in data.aws_iam_policy_document.this : alltrue([
      for s in d.statement : s.resources == toset([var.sns_topic_arn]) if contains(s.actions, "sns:Publish")
    ])])
    error_message = "sns:Publish must be granted on the topic only"
  }

  assert {
    condition = alltrue([for d in data.aws_iam_policy_document.this : length([
      for s in d.statement : s if contains(s.actions, "sns:Publish")
    ]) == 1])
    error_message = "exactly one statement grants sns:Publish"
  }

  # Notes item 3: the code never calls the ElastiCache API, so no control-plane action is granted;
  # elasticache:Connect (IAM authentication of its Redis connections) is the only ElastiCache action.
  assert {
    condition = alltrue([for d in data.aws_iam_policy_document.this : alltrue([
      for s in d.statement : alltrue([for a in s.actions : !startswith(lower(a), "elasticache:") || a == "elasticache:Connect"])
    ])])
    error_message = "no ElastiCache control-plane permission may be granted"
  }

  assert {
    condition = alltrue([for d in data.aws_iam_policy_document.this : alltrue([
      for s in d.statement : s.resources == toset(["arn:aws:lambda:us-east-1:123456789012:function:lnn-trainer"]) if contains(s.actions, "lambda:InvokeFunction")
    ])])
    error_message = "lambda:InvokeFunction must be granted on the trainer only"
  }

  assert {
    condition = alltrue([for d in data.aws_iam_policy_document.this : alltrue([
      for s in d.statement : s.resources == toset([var.table_arn]) if anytrue([for a in s.actions : startswith(a, "dynamodb:")])
    ])])
    error_message = "DynamoDB actions must be granted on the table only"
  }

  assert {
    condition = alltrue([for d in data.aws_iam_policy_document.this : alltrue([
      for s in d.statement : alltrue([for r in s.resources : r == var.bucket_arn || r == "${var.bucket_arn}/*"]) if anytrue([for a in s.actions : startswith(a, "s3:")]) && !contains(s.actions, "s3:DeleteObject")
    ])])
    error_message = "S3 actions must be granted on the bucket only"
  }

  assert {
    condition = alltrue(flatten([for k, d in data.aws_iam_policy_document.this : [
      for s in d.statement : k == "trainer" && s.resources == toset(["${var.bucket_arn}/models/*"]) if contains(s.actions, "s3:DeleteObject")
    ]]))
    error_message = "only the trainer deletes objects, and only models (a finish a cancel refused takes its model back)"
  }

  assert {
    condition = length(flatten([for d in data.aws_iam_policy_document.this : [
      for s in d.statement : s.sid if contains(s.actions, "s3:DeleteObject")
    ]])) == 1
    error_message = "one statement, the trainer's, deletes objects"
  }

  assert {
    condition = alltrue([for d in data.aws_iam_policy_document.this : length([
      for s in d.statement : s if s.sid == "ConnectToCache" && s.actions == toset(["elasticache:Connect"]) && s.resources == toset([var.redis_replication_group_arn, var.redis_user_arn])
    ]) == 1])
    error_message = "elasticache:Connect must be granted on the stack's replication group and user only"
  }

  assert {
    condition = alltrue([for d in data.aws_iam_policy_document.this : alltrue([
      for s in d.statement : alltrue([for a in s.actions : a == "elasticache:Connect"]) if anytrue([for a in s.actions : startswith(a, "elasticache:") || startswith(a, "secretsmanager:")])
    ])])
    error_message = "the functions hold no other ElastiCache action and nothing of Secrets Manager (no secret exists)"
  }

  assert {
    condition = alltrue([for d in data.aws_iam_policy_document.this : alltrue([
      for s in d.statement : alltrue([for a in s.actions : startswith(a, "ec2:")]) if contains(s.resources, "*")
    ])])
    error_message = "only the VPC network-interface actions may use the * resource"
  }

  assert {
    condition = alltrue([for d in data.aws_iam_policy_document.this : alltrue([
      for a in ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface"] :
      anytrue([for s in d.statement : contains(s.actions, a)])
    ])])
    error_message = "the roles must allow Lambda to manage its VPC network interfaces"
  }
}

# ---- every validation rejects a bad value ----

# Every validated variable whose rule reads it alone, each given a bad value, in one plan: the run
# passes only if every one of them reports its own failure (a listed variable that does not, or any
# other error, fails it). A rule that reads another variable, and the variable it reads, have runs of
# their own.
run "rejects_bad_values" {
  command = plan

  module {
    source = "./modules/functions"
  }

  variables {
    subnet_ids                  = []
    security_group_ids          = []
    kms_key_arn                 = "alias/lnn"
    redis_replication_group_arn = "lnn"
    redis_user_arn              = "arn:aws:elasticache:us-east-1:123456789012:replicationgroup:lnn"
  }

  expect_failures = [
    var.subnet_ids,
    var.security_group_ids,
    var.kms_key_arn,
    var.redis_replication_group_arn,
    var.redis_user_arn,
  ]
}
