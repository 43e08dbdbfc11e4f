variable "aws_region" {
  description = "AWS region of the stack."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be a region name such as us-east-1."
  }
}

variable "name" {
  description = "Name of the deployment; every resource name starts with it (lowercase letters, digits, hyphens; 3-24 characters)."
  type        = string
  default     = "lnn"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name)) && !strcontains(var.name, "--")
    error_message = "name must be 3-24 lowercase letters, digits or single hyphens, starting with a letter and ending with a letter or digit."
  }
}

variable "profile" {
  description = "dev: one Redis node and the interface endpoints in one zone (about half the idle cost, no failover); prod: two Redis nodes with Multi-AZ failover and endpoints in both zones."
  type        = string
  default     = "prod"

  validation {
    condition     = contains(["dev", "prod"], var.profile)
    error_message = "profile must be dev or prod."
  }
}

variable "tags" {
  description = "Tags applied to every resource (in addition to Project and ManagedBy)."
  type        = map(string)
  default     = {}
}

# ---- network --------------------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC (/16 to /24)."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 24
    error_message = "vpc_cidr must be a valid IPv4 CIDR block with a prefix length between /16 and /24."
  }
}

variable "private_subnet_cidrs" {
  description = "Exactly two CIDR blocks inside vpc_cidr for the private subnets."
  type        = list(string)
  default     = ["10.42.1.0/24", "10.42.2.0/24"]

  validation {
    condition     = length(var.private_subnet_cidrs) == 2 && alltrue([for c in var.private_subnet_cidrs : can(cidrhost(c, 0))])
    error_message = "private_subnet_cidrs must hold exactly two valid IPv4 CIDR blocks."
  }
}

variable "availability_zones" {
  description = "Two availability zones for the private subnets; empty picks the region's first two standard zones (never Local or Wavelength Zones)."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || (length(var.availability_zones) == 2 && length(distinct(var.availability_zones)) == 2)
    error_message = "availability_zones must be empty or two distinct zone names."
  }
}

variable "enable_flow_logs" {
  description = "Record the VPC's traffic to a CloudWatch log group."
  type        = bool
  default     = true
}

# ---- functions ------------------------------------------------------------------------------------

variable "image_tag" {
  description = "Tag of the Lambda image in the ECR repository (ignored when image_digest is set)."
  type        = string
  default     = "latest"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a valid image tag (letters, digits, '_', '.', '-'; at most 128 characters)."
  }
}

variable "image_digest" {
  description = "Digest of the Lambda image (sha256:<64 hex>); takes precedence over image_tag. null to use the tag."
  type        = string
  default     = null

  validation {
    condition     = var.image_digest == null || can(regex("^sha256:[a-f0-9]{64}$", var.image_digest))
    error_message = "image_digest must be null or sha256: followed by 64 lowercase hex digits."
  }
}

variable "lambda_architecture" {
  description = "Instruction set of the functions and the image: x86_64 or arm64."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "dataset_prefix" {
  description = "Prefix of the bucket's keys that hold datasets: LaunchLambda reads s3:// datasets from there only, so that an uploader needs no access to models/ or checkpoints/."
  type        = string
  default     = "datasets/"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-][A-Za-z0-9_./-]*/$", var.dataset_prefix)) && !can(regex("(^|/)\\.\\.?/", var.dataset_prefix)) && !can(regex("^(models|checkpoints|sweeps)/", var.dataset_prefix))
    error_message = "dataset_prefix must be a key prefix ending in /, without . or .. segments, and not in models/, checkpoints/ or sweeps/."
  }
}

variable "launch_memory_size" {
  description = "Memory of LaunchLambda in MB (128-10240)."
  type        = number
  default     = 1024

  validation {
    condition     = var.launch_memory_size >= 128 && var.launch_memory_size <= 10240 && floor(var.launch_memory_size) == var.launch_memory_size
    error_message = "launch_memory_size must be an integer between 128 and 10240."
  }
}

variable "trainer_memory_size" {
  description = "Memory of TrainerLambda in MB (128-10240)."
  type        = number
  default     = 2048

  validation {
    condition     = var.trainer_memory_size >= 128 && var.trainer_memory_size <= 10240 && floor(var.trainer_memory_size) == var.trainer_memory_size
    error_message = "trainer_memory_size must be an integer between 128 and 10240."
  }
}

variable "launch_timeout" {
  description = "Timeout of LaunchLambda in seconds (1-900)."
  type        = number
  default     = 300

  validation {
    condition     = var.launch_timeout >= 1 && var.launch_timeout <= 900 && floor(var.launch_timeout) == var.launch_timeout
    error_message = "launch_timeout must be an integer between 1 and 900."
  }
}

variable "trainer_timeout" {
  description = "Timeout of TrainerLambda in seconds (1-900)."
  type        = number
  default     = 900

  validation {
    condition     = var.trainer_timeout >= 1 && var.trainer_timeout <= 900 && floor(var.trainer_timeout) == var.trainer_timeout
    error_message = "trainer_timeout must be an integer between 1 and 900."
  }
}

variable "log_retention_in_days" {
  description = "Retention of every log group in days (7 by default)."
  type        = number
  default     = 7

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_in_days)
    error_message = "log_retention_in_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "async_maximum_retry_attempts" {
  description = "Retries of a failed asynchronous invocation (0-2)."
  type        = number
  default     = 2

  validation {
    condition     = var.async_maximum_retry_attempts >= 0 && var.async_maximum_retry_attempts <= 2 && floor(var.async_maximum_retry_attempts) == var.async_maximum_retry_attempts
    error_message = "async_maximum_retry_attempts must be 0, 1 or 2."
  }
}

variable "async_maximum_event_age_in_seconds" {
  description = "Maximum age of an asynchronous event in seconds (60-21600)."
  type        = number
  default     = 3600

  validation {
    condition     = var.async_maximum_event_age_in_seconds >= 60 && var.async_maximum_event_age_in_seconds <= 21600 && floor(var.async_maximum_event_age_in_seconds) == var.async_maximum_event_age_in_seconds
    error_message = "async_maximum_event_age_in_seconds must be an integer between 60 and 21600."
  }
}

variable "trainer_reserved_concurrency" {
  description = "Reserved concurrency of TrainerLambda (1-1000): its share of the account's concurrency and the ceiling of chains at once that LaunchLambda admits. AWS keeps 100 unreserved, so an account at the new-account limit (10) must raise its quota first or set null (no reservation; the ceiling is then the code's default of 100)."
  type        = number
  default     = 20

  validation {
    condition     = var.trainer_reserved_concurrency == null || try(var.trainer_reserved_concurrency >= 1 && var.trainer_reserved_concurrency <= 1000 && floor(var.trainer_reserved_concurrency) == var.trainer_reserved_concurrency, false)
    error_message = "trainer_reserved_concurrency must be null or an integer between 1 and 1000."
  }
}

variable "max_run_steps" {
  description = "Most steps one run may plan (epochs x batches x steps per batch); LaunchLambda refuses a larger run with a named problem."
  type        = number
  default     = 10000000

  validation {
    condition     = var.max_run_steps >= 1 && floor(var.max_run_steps) == var.max_run_steps
    error_message = "max_run_steps must be a positive integer."
  }
}

variable "max_run_invocations" {
  description = "Most Lambda invocations one run may need (one per step with chain per_step); LaunchLambda refuses a run that needs more."
  type        = number
  default     = 200000

  validation {
    condition     = var.max_run_invocations >= 1 && floor(var.max_run_invocations) == var.max_run_invocations
    error_message = "max_run_invocations must be a positive integer."
  }
}

variable "monthly_budget_usd" {
  description = "A monthly AWS Budgets cost alarm for the stack's resources (Deployment tag), in USD: notices at 80% of actual and 100% of forecast spend go to the stack's SNS topic. null for none."
  type        = number
  default     = null

  validation {
    condition     = var.monthly_budget_usd == null || try(var.monthly_budget_usd > 0, false)
    error_message = "monthly_budget_usd must be null or a positive amount of USD."
  }
}

# ---- cache ----------------------------------------------------------------------------------------

variable "redis_node_type" {
  description = "ElastiCache node type of the cache. null: the profile's (dev cache.t4g.micro, prod cache.t4g.small)."
  type        = string
  default     = null

  validation {
    condition     = var.redis_node_type == null || can(regex("^cache\\.[a-z0-9]+\\.[a-z0-9]+$", var.redis_node_type))
    error_message = "redis_node_type must look like cache.<family>.<size>, e.g. cache.t4g.small."
  }
}

variable "redis_engine_version" {
  description = "Valkey engine version of the cache, pinned: 7.2 or 8.0 (IAM authentication needs Valkey 7.2 or later; the cache module derives the parameter group family valkey7 or valkey8)."
  type        = string
  default     = "8.0"

  validation {
    condition     = contains(["7.2", "8.0"], var.redis_engine_version)
    error_message = "redis_engine_version must be 7.2 or 8.0 (Valkey)."
  }
}

variable "redis_num_cache_clusters" {
  description = "Redis nodes (primary + replicas, 1-6); 2 or more enables Multi-AZ automatic failover. null: the profile's (dev 1, prod 2)."
  type        = number
  default     = null

  validation {
    condition     = var.redis_num_cache_clusters == null || try(var.redis_num_cache_clusters >= 1 && var.redis_num_cache_clusters <= 6 && floor(var.redis_num_cache_clusters) == var.redis_num_cache_clusters, false)
    error_message = "redis_num_cache_clusters must be null or an integer between 1 and 6."
  }
}

variable "redis_usable_memory_mib" {
  description = "Memory Redis may fill, in MiB, which LaunchLambda checks a dataset against. null: derived from redis_node_type (known types only)."
  type        = number
  default     = null

  validation {
    condition     = var.redis_usable_memory_mib == null ? contains(keys(local.redis_node_memory_mib), local.redis_node_type) : try(var.redis_usable_memory_mib >= 64, false)
    error_message = "redis_usable_memory_mib must be at least 64, and must be set when redis_node_type is not one of the node types the root module knows (locals.redis_node_memory_mib)."
  }
}

variable "redis_snapshot_retention_limit" {
  description = "Days of automatic Redis snapshots to keep (0-35)."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_snapshot_retention_limit >= 0 && var.redis_snapshot_retention_limit <= 35 && floor(var.redis_snapshot_retention_limit) == var.redis_snapshot_retention_limit
    error_message = "redis_snapshot_retention_limit must be an integer between 0 and 35."
  }
}

# ---- storage, notifications, registry -------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the S3 bucket for datasets and models; null derives <name>-<account id>-<region>."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || (can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)) && !strcontains(coalesce(var.bucket_name, "x"), ".."))
    error_message = "bucket_name must be null or 3-63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit."
  }
}

variable "dynamodb_deletion_protection" {
  description = "Protect the DynamoDB table against deletion."
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Let terraform destroy delete a non-empty bucket and ECR repository (throwaway stacks only)."
  type        = bool
  default     = false
}

variable "notification_email" {
  description = "E-mail address subscribed to the run notifications (confirm the e-mail AWS sends); null for none."
  type        = string
  default     = null

  validation {
    condition     = var.notification_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.notification_email))
    error_message = "notification_email must be null or an e-mail address."
  }
}

variable "kms_deletion_window_in_days" {
  description = "Waiting period before the stack's KMS key is deleted (7-30 days)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_in_days >= 7 && var.kms_deletion_window_in_days <= 30 && floor(var.kms_deletion_window_in_days) == var.kms_deletion_window_in_days
    error_message = "kms_deletion_window_in_days must be an integer between 7 and 30."
  }
}

# ---- CI -------------------------------------------------------------------------------------------

variable "github_repository" {
  description = "GitHub repository (owner/name) allowed to plan and deploy through OIDC roles; null creates no CI roles."
  type        = string
  default     = null

  validation {
    condition     = var.github_repository == null || can(regex("^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$", var.github_repository))
    error_message = "github_repository must be null or of the form owner/name."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub OIDC identity provider (false when the account already has one)."
  type        = bool
  default     = true
}

variable "github_allow_tag_pushes" {
  description = "Create a push-only release role for release-tag workflows (refs/tags/v*, AWS_RELEASE_ROLE_ARN): it pushes images to the repository and cannot update the functions."
  type        = bool
  default     = false
}

variable "github_plan_environment" {
  description = "GitHub environment the plan job runs in; only jobs of that environment can assume the plan role. Give it required reviewers: the job runs the pull request's own scripts and providers with the plan role, which can read the state."
  type        = string
  default     = "terraform-plan"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{1,255}$", var.github_plan_environment))
    error_message = "github_plan_environment must be a GitHub environment name (letters, digits, '_', '.', '-')."
  }
}

variable "github_apply_environment" {
  description = "GitHub environment the apply job runs in; only jobs of that environment can assume the apply role."
  type        = string
  default     = "production"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{1,255}$", var.github_apply_environment))
    error_message = "github_apply_environment must be a GitHub environment name (letters, digits, '_', '.', '-')."
  }

  # The plan environment is approved for pull-request branches; the environment that hands out the
  # apply role must be another one, limited to main (terraform/README.md, Security).
  validation {
    condition     = var.github_apply_environment != var.github_plan_environment
    error_message = "github_apply_environment must not be the plan environment: pull-request branches are approved into that one."
  }
}

variable "github_terratest_environment" {
  description = "GitHub environment of the end-to-end test workflow, whose jobs may assume the terratest role (AWS_TERRATEST_ROLE_ARN = github_terratest_role_arn), which reaches the test's stacks (lnn-tt-*) only; null for none."
  type        = string
  default     = null

  validation {
    condition     = var.github_terratest_environment == null || can(regex("^[A-Za-z0-9_.-]{1,255}$", coalesce(var.github_terratest_environment, "x")))
    error_message = "github_terratest_environment must be null or a GitHub environment name."
  }

  validation {
    condition     = var.github_terratest_environment == null || !contains([var.github_plan_environment, var.github_apply_environment], coalesce(var.github_terratest_environment, "-"))
    error_message = "github_terratest_environment must be an environment of its own, neither the plan nor the apply environment."
  }
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary of the stack's roles: null creates <name>-boundary (iam.tf); the end-to-end test's stacks pass the deployment's (github_oidc's terratest role may create roles with that boundary only)."
  type        = string
  default     = null

  validation {
    condition     = var.permissions_boundary_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:policy/.+$", coalesce(var.permissions_boundary_arn, "x")))
    error_message = "permissions_boundary_arn must be null or an IAM policy ARN."
  }
}

variable "terraform_state_bucket_arn" {
  description = "ARN of the S3 bucket holding the Terraform state (made by make bootstrap): the plan role reads it, the apply role reads and writes it; null for none."
  type        = string
  default     = null

  validation {
    condition     = var.terraform_state_bucket_arn == null || can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.terraform_state_bucket_arn))
    error_message = "terraform_state_bucket_arn must be null or an S3 bucket ARN."
  }
}
