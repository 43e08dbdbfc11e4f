# LNN: the whole AWS stack. Deploy order (see README.md): the state bucket, the registry, an image,
# then everything else -- a container-image function cannot be created before its image exists.

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = local.tags
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  tags = merge({ Project = "lnn", ManagedBy = "terraform", Deployment = var.name }, var.tags)

  bucket_name = coalesce(var.bucket_name, "${var.name}-${data.aws_caller_identity.current.account_id}-${var.aws_region}")
  image_uri   = var.image_digest == null ? "${module.registry.repository_url}:${var.image_tag}" : "${module.registry.repository_url}@${var.image_digest}"

  # The one place the Redis port is chosen: the security groups, the cache and the functions'
  # environment all take it from here.
  redis_port = 6379

  # What each profile changes; everything else is the same. dev trades availability and cache
  # memory for about a quarter of the idle cost (README.md, "What an idle stack costs").
  profiles = {
    dev  = { redis_num_cache_clusters = 1, interface_endpoint_zones = 1, redis_node_type = "cache.t4g.micro" }
    prod = { redis_num_cache_clusters = 2, interface_endpoint_zones = 2, redis_node_type = "cache.t4g.small" }
  }
  redis_num_cache_clusters = coalesce(var.redis_num_cache_clusters, local.profiles[var.profile].redis_num_cache_clusters)
  redis_node_type          = coalesce(var.redis_node_type, local.profiles[var.profile].redis_node_type)

  # Memory Redis may fill on each node type (maxmemory, after ElastiCache's default 25 % reserved
  # memory), so LaunchLambda can refuse a dataset that would not fit instead of failing mid-run.
  redis_node_memory_mib = {
    "cache.t4g.micro"  = 512
    "cache.t4g.small"  = 1403
    "cache.t4g.medium" = 3164
    "cache.t3.micro"   = 512
    "cache.t3.small"   = 1403
    "cache.t3.medium"  = 3164
    "cache.m7g.large"  = 6533
    "cache.r7g.large"  = 13384
  }
  redis_usable_memory_mib = coalesce(var.redis_usable_memory_mib, floor(lookup(local.redis_node_memory_mib, local.redis_node_type, 0) * 0.75))

  # Built from the names (the functions module uses the same rule), so the registry's pull policy
  # and the CI roles do not depend on the functions: they can exist before the first image.
  function_names = { launch = "${var.name}-launch", trainer = "${var.name}-trainer" }
  function_arns  = { for k, n in local.function_names : k => "arn:${data.aws_partition.current.partition}:lambda:${var.aws_region}:${data.aws_caller_identity.current.account_id}:function:${n}" }
}

# ---- the stack's customer-managed key (logs, table, bucket, topic, queue, secret, cache, images) --

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" means this key only; the account statement lets IAM policies (which name the key ARN) grant use.
  #checkov:skip=CKV_AWS_111:Same: key policies are attached to the key, "*" cannot address anything else.
  #checkov:skip=CKV_AWS_356:Same: in a key policy "*" is the key itself.

  statement {
    sid       = "AccountAdministersAndDelegatesToIam"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsThisStacksLogGroups"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${var.aws_region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${var.aws_region}:${data.aws_caller_identity.current.account_id}:log-group:*"]
    }
  }

  # The budget alarm (budget.tf) publishes to the encrypted topic: Budgets needs the key for that,
  # for this account's budget only.
  dynamic "statement" {
    for_each = var.monthly_budget_usd == null ? [] : [local.budget_arn]
    content {
      sid       = "BudgetsEncryptsItsAlarmsToTheTopic"
      actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["budgets.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [data.aws_caller_identity.current.account_id]
      }

      condition {
        test     = "ArnLike"
        variable = "aws:SourceArn"
        values   = [statement.value]
      }
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "LNN ${var.name}: encrypts logs, table, bucket, topic, queue, secret, cache and images"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_in_days
  policy                  = data.aws_iam_policy_document.kms.json

  tags = local.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

# ---- modules --------------------------------------------------------------------------------------

module "network" {
  source = "./modules/network"

  name                 = var.name
  vpc_cidr             = var.vpc_cidr
  private_subnet_cidrs = var.private_subnet_cidrs
  availability_zones   = var.availability_zones
  redis_port           = local.redis_port
  endpoint_zone_count  = local.profiles[var.profile].interface_endpoint_zones
  endpoint_resources = {
    s3       = ["arn:${data.aws_partition.current.partition}:s3:::${local.bucket_name}", "arn:${data.aws_partition.current.partition}:s3:::${local.bucket_name}/*"]
    dynamodb = ["arn:${data.aws_partition.current.partition}:dynamodb:${var.aws_region}:${data.aws_caller_identity.current.account_id}:table/${var.name}-runs"]
    lambda   = [local.function_arns["trainer"]]
    sns      = ["arn:${data.aws_partition.current.partition}:sns:${var.aws_region}:${data.aws_caller_identity.current.account_id}:${var.name}-runs"]
  }
  enable_flow_logs         = var.enable_flow_logs
  log_retention_in_days    = var.log_retention_in_days
  kms_key_arn              = aws_kms_key.this.arn
  role_path                = local.role_path
  permissions_boundary_arn = local.boundary_arn
  tags                     = local.tags
}

module "cache" {
  source = "./modules/cache"

  name                     = var.name
  subnet_ids               = module.network.private_subnet_ids
  security_group_ids       = [module.network.redis_security_group_id]
  node_type                = local.redis_node_type
  engine_version           = var.redis_engine_version
  port                     = local.redis_port
  num_cache_clusters       = local.redis_num_cache_clusters
  snapshot_retention_limit = var.redis_snapshot_retention_limit
  kms_key_arn              = aws_kms_key.this.arn
  tags                     = local.tags
}

module "storage" {
  source = "./modules/storage"

  table_name          = "${var.name}-runs"
  bucket_name         = local.bucket_name
  deletion_protection = var.dynamodb_deletion_protection
  force_destroy       = var.force_destroy
  kms_key_arn         = aws_kms_key.this.arn
  tags                = local.tags
}

module "notifications" {
  source = "./modules/notifications"

  name        = "${var.name}-runs"
  email       = var.notification_email
  kms_key_arn = aws_kms_key.this.arn
  tags        = local.tags
}

module "registry" {
  source = "./modules/registry"

  name          = var.name
  force_delete  = var.force_destroy
  function_arns = values(local.function_arns)
  kms_key_arn   = aws_kms_key.this.arn
  tags          = local.tags
}

module "functions" {
  source = "./modules/functions"

  name_prefix                  = var.name
  image_uri                    = local.image_uri
  architecture                 = var.lambda_architecture
  launch_memory_size           = var.launch_memory_size
  trainer_memory_size          = var.trainer_memory_size
  launch_timeout               = var.launch_timeout
  trainer_timeout              = var.trainer_timeout
  log_retention_in_days        = var.log_retention_in_days
  maximum_retry_attempts       = var.async_maximum_retry_attempts
  maximum_event_age_in_seconds = var.async_maximum_event_age_in_seconds
  trainer_reserved_concurrency = var.trainer_reserved_concurrency
  max_run_steps                = var.max_run_steps
  max_run_invocations          = var.max_run_invocations

  subnet_ids         = module.network.private_subnet_ids
  security_group_ids = [module.network.lambda_security_group_id]
  vpc_id             = module.network.vpc_id

  table_name                  = module.storage.table_name
  table_arn                   = module.storage.table_arn
  bucket_name                 = module.storage.bucket_name
  bucket_arn                  = module.storage.bucket_arn
  dataset_prefix              = var.dataset_prefix
  sns_topic_arn               = module.notifications.topic_arn
  redis_host                  = module.cache.primary_endpoint_address
  redis_port                  = module.cache.port
  redis_replication_group_id  = module.cache.replication_group_id
  redis_replication_group_arn = module.cache.replication_group_arn
  redis_user_id               = module.cache.user_id
  redis_user_arn              = module.cache.user_arn
  cache_capacity_mib          = local.redis_usable_memory_mib
  kms_key_arn                 = aws_kms_key.this.arn
  role_path                   = local.role_path
  permissions_boundary_arn    = local.boundary_arn
  tags                        = local.tags
}

# Optional: OIDC roles for GitHub Actions (plan on pull requests, image rollout and apply on main).
module "github_oidc" {
  source = "./modules/github_oidc"
  count  = var.github_repository == null ? 0 : 1

  name_prefix              = var.name
  github_repository        = var.github_repository
  create_oidc_provider     = var.create_github_oidc_provider
  ecr_repository_arn       = module.registry.repository_arn
  function_arns            = values(local.function_arns)
  state_bucket_arn         = var.terraform_state_bucket_arn
  stack_bucket_arn         = "arn:${data.aws_partition.current.partition}:s3:::${local.bucket_name}"
  plan_environment         = var.github_plan_environment
  apply_environment        = var.github_apply_environment
  terratest_environment    = var.github_terratest_environment
  allow_tag_pushes         = var.github_allow_tag_pushes
  permissions_boundary_arn = local.boundary_arn
  tags                     = local.tags
}
