variable "name_prefix" {
  description = "Prefix of the function names: <name_prefix>-launch and <name_prefix>-trainer."
  type        = string
}

variable "image_uri" {
  description = "Container image of both functions: <ecr repository url>:<tag> or <ecr repository url>@sha256:<digest>."
  type        = string
}

variable "architecture" {
  description = "Instruction set of the functions and of the image: x86_64 or arm64."
  type        = string
  default     = "x86_64"
}

variable "launch_memory_size" {
  description = "Memory of LaunchLambda in MB (128-10240)."
  type        = number
  default     = 1024
}

variable "trainer_memory_size" {
  description = "Memory of TrainerLambda in MB (128-10240); CPU share grows with it."
  type        = number
  default     = 2048
}

variable "launch_timeout" {
  description = "Timeout of LaunchLambda in seconds (1-900)."
  type        = number
  default     = 300
}

variable "trainer_timeout" {
  description = "Timeout of TrainerLambda in seconds (1-900); one step must fit in it."
  type        = number
  default     = 900
}

variable "log_retention_in_days" {
  description = "Retention of the functions' log groups in days (7 by default)."
  type        = number
  default     = 7
}

variable "maximum_retry_attempts" {
  description = "Retries of a failed asynchronous invocation (0-2); steps are idempotent, so retries are safe."
  type        = number
  default     = 2
}

variable "maximum_event_age_in_seconds" {
  description = "Maximum age of an asynchronous event before it is sent to the on-failure destination (60-21600)."
  type        = number
  default     = 3600
}

variable "subnet_ids" {
  description = "Private subnets the functions run in."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids must hold at least one subnet."
  }
}

variable "security_group_ids" {
  description = "Security groups of the functions (the Lambdas' group that Redis admits)."
  type        = list(string)

  validation {
    condition     = length(var.security_group_ids) >= 1
    error_message = "security_group_ids must hold at least one security group."
  }
}

variable "table_name" {
  description = "Name of the DynamoDB table (TABLE_NAME)."
  type        = string
}

variable "table_arn" {
  description = "ARN of the DynamoDB table; the functions' DynamoDB permissions are scoped to it."
  type        = string
}

variable "bucket_name" {
  description = "Name of the S3 bucket (MODEL_BUCKET)."
  type        = string
}

variable "dataset_prefix" {
  description = "Prefix of the bucket's keys that hold datasets (DATASET_PREFIX); LaunchLambda reads s3:// datasets from there only."
  type        = string
  default     = "datasets/"
}

variable "bucket_arn" {
  description = "ARN of the S3 bucket; the functions' S3 permissions are scoped to it."
  type        = string
}

variable "sns_topic_arn" {
  description = "ARN of the SNS topic (SNS_TOPIC_ARN); sns:Publish is granted on it only."
  type        = string
}

variable "redis_host" {
  description = "Primary endpoint of Redis (REDIS_HOST)."
  type        = string
}

variable "redis_port" {
  description = "Port of Redis (REDIS_PORT)."
  type        = number
}

variable "cache_capacity_mib" {
  description = "Memory Redis may fill, in MiB (CACHE_CAPACITY_MIB): LaunchLambda refuses a dataset that would not fit."
  type        = number
}

variable "redis_replication_group_id" {
  description = "ID of the cache's replication group (REDIS_REPLICATION_GROUP_ID): the host the functions' IAM authentication tokens are signed for."
  type        = string
}

variable "redis_replication_group_arn" {
  description = "ARN of the cache's replication group; elasticache:Connect is granted on it and the user only."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:elasticache:[a-z0-9-]+:[0-9]{12}:replicationgroup:", var.redis_replication_group_arn))
    error_message = "redis_replication_group_arn must be an ElastiCache replication group ARN."
  }
}

variable "redis_user_id" {
  description = "ID of the IAM-authenticated ElastiCache user the functions connect as (REDIS_USER_ID)."
  type        = string
}

variable "redis_user_arn" {
  description = "ARN of that ElastiCache user; elasticache:Connect is granted on it and the replication group only."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:elasticache:[a-z0-9-]+:[0-9]{12}:user:", var.redis_user_arn))
    error_message = "redis_user_arn must be an ElastiCache user ARN."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key of the stack: it encrypts the functions' environment, the logs and the failure queue, and the functions use it for the encrypted table, bucket and topic."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "tags" {
  description = "Tags applied to every resource of the module."
  type        = map(string)
  default     = {}
}

variable "role_path" {
  description = "IAM path of the module's roles (the stack's path, /lnn/<name>/: the CI roles may write roles under it only)."
  type        = string
  default     = "/"
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary of the module's roles (the stack's boundary policy); null for none."
  type        = string
  default     = null
}

variable "trainer_reserved_concurrency" {
  description = "Reserved concurrency of TrainerLambda: its share of the account's concurrency and its ceiling (LaunchLambda refuses a sweep with more chains at once); null reserves none."
  type        = number
  default     = 20
}

variable "max_run_steps" {
  description = "Most steps one run may plan (MAX_RUN_STEPS); LaunchLambda refuses a larger run."
  type        = number
  default     = 10000000
}

variable "max_run_invocations" {
  description = "Most Lambda invocations one run may need (MAX_RUN_INVOCATIONS); LaunchLambda refuses a run that needs more."
  type        = number
  default     = 200000
}

variable "vpc_id" {
  description = "The VPC the functions run in: their calls to DynamoDB, S3, SNS and Lambda are allowed through its endpoints only (aws:SourceVpc)."
  type        = string
}
