# The root configuration: the modules wired together, the outputs, the optional CI roles, and the
# validation of every root variable.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  availability_zones = ["us-east-1a", "us-east-1b"]
  image_tag          = "v1"
}

run "whole_stack_applies_and_exposes_its_outputs" {
  assert {
    condition     = output.launch_function_name == "lnn-launch" && output.trainer_function_name == "lnn-trainer"
    error_message = "function names follow the deployment name"
  }

  assert {
    condition     = module.functions.image_uri == "123456789012.dkr.ecr.us-east-1.amazonaws.com/lnn:v1"
    error_message = "the image is the ECR repository at the given tag"
  }

  assert {
    condition     = endswith(output.redis_endpoint, ":6379")
    error_message = "Redis listens on 6379"
  }

  assert {
    condition     = output.table_name == "lnn-runs" && output.bucket_name == "lnn-123456789012-us-east-1"
    error_message = "table and bucket names derive from the deployment name, account and region"
  }

  assert {
    condition     = startswith(output.launch_command, "aws lambda invoke --region us-east-1 --function-name lnn-launch ")
    error_message = "the launch command must be ready to paste"
  }

  assert {
    condition     = output.github_plan_role_arn == null && output.github_deploy_role_arn == null
    error_message = "no CI roles without github_repository"
  }
}

# The image is Terraform's only when the functions are created: afterwards the rollout script owns
# it, so neither a new digest nor a plain apply rolls the running functions to another image.
run "image_digest_only_matters_when_the_functions_are_created" {
  command = plan

  variables {
    image_digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  }

  assert {
    condition     = local.image_uri == "123456789012.dkr.ecr.us-east-1.amazonaws.com/lnn@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    error_message = "a digest pins the image the functions are created with"
  }

  assert {
    condition     = module.functions.image_uri == "123456789012.dkr.ecr.us-east-1.amazonaws.com/lnn:v1"
    error_message = "the functions created by the first run keep their image (ignore_changes)"
  }
}

run "github_repository_adds_the_ci_roles" {
  variables {
    github_repository = "example-org/lnn"
  }

  assert {
    condition     = output.github_plan_role_arn != null && output.github_deploy_role_arn != null && output.github_apply_role_arn != null
    error_message = "github_repository creates the plan, deploy and apply roles (AWS_APPLY_ROLE_ARN exists)"
  }

  # The deploy role and the registry's pull policy name the functions by ARNs built from their
  # names, so `terraform apply -target=module.github_oidc` needs no image; the two rules must agree.
  assert {
    condition     = [for arn in values(local.function_arns) : element(split(":", arn), 6)] == values(module.functions.function_names)
    error_message = "the function ARNs built from names must be the functions' ARNs"
  }
}

run "profiles_set_the_idle_cost" {
  command = plan

  variables {
    profile = "dev"
  }

  assert {
    condition     = local.redis_num_cache_clusters == 1 && local.profiles["dev"].interface_endpoint_zones == 1 && local.redis_node_type == "cache.t4g.micro"
    error_message = "dev: one cache.t4g.micro node, endpoints in one zone"
  }

  assert {
    condition     = local.redis_usable_memory_mib == 384
    error_message = "dev: cache.t4g.micro's 512 MiB less the 25 % reserved"
  }

  assert {
    condition     = length(module.network.interface_endpoint_ids) == 2
    error_message = "dev: two interface endpoints (Lambda, SNS), no Secrets Manager endpoint"
  }
}

run "prod_profile_is_the_default" {
  command = plan

  assert {
    condition     = var.profile == "prod" && local.redis_num_cache_clusters == 2 && local.profiles["prod"].interface_endpoint_zones == 2 && local.redis_node_type == "cache.t4g.small"
    error_message = "prod: two cache.t4g.small nodes, endpoints in both zones"
  }
}

run "explicit_node_count_wins_over_the_profile" {
  command = plan

  variables {
    profile                  = "dev"
    redis_num_cache_clusters = 3
  }

  assert {
    condition     = local.redis_num_cache_clusters == 3
    error_message = "redis_num_cache_clusters overrides the profile"
  }
}

run "cache_capacity_reaches_launch" {
  command = plan

  assert {
    condition     = local.redis_usable_memory_mib == 1052
    error_message = "cache.t4g.small: 1403 MiB maxmemory less the 25 % reserved"
  }
}

run "rejects_bad_profile" {
  command = plan

  variables {
    profile = "staging"
  }

  expect_failures = [var.profile]
}

run "rejects_a_redis_oss_version_iam_authentication_on_valkey_cannot_use" {
  command = plan

  variables {
    redis_engine_version = "7.1"
  }

  expect_failures = [var.redis_engine_version]
}

run "rejects_bad_redis_usable_memory_mib" {
  command = plan

  variables {
    redis_node_type = "cache.x2gd.large"
  }

  expect_failures = [var.redis_usable_memory_mib]
}

# ---- every validation rejects a bad value ----

run "rejects_bad_aws_region" {
  command = plan

  variables {
    aws_region = "US East"
  }

  expect_failures = [var.aws_region]
}

run "rejects_bad_name" {
  command = plan

  variables {
    name = "Lnn"
  }

  expect_failures = [var.name]
}

run "rejects_bad_vpc_cidr" {
  command = plan

  variables {
    vpc_cidr = "10.42.0.0/28"
  }

  expect_failures = [var.vpc_cidr]
}

run "rejects_bad_private_subnet_cidrs" {
  command = plan

  variables {
    private_subnet_cidrs = ["10.42.1.0/24", "10.42.2.0/33"]
  }

  expect_failures = [var.private_subnet_cidrs]
}

run "rejects_bad_availability_zones" {
  command = plan

  variables {
    availability_zones = ["us-east-1a"]
  }

  expect_failures = [var.availability_zones]
}

run "rejects_bad_image_tag" {
  command = plan

  variables {
    image_tag = "-bad"
  }

  expect_failures = [var.image_tag]
}

run "rejects_bad_image_digest" {
  command = plan

  variables {
    image_digest = "sha256:xyz"
  }

  expect_failures = [var.image_digest]
}

run "rejects_bad_lambda_architecture" {
  command = plan

  variables {
    lambda_architecture = "arm"
  }

  expect_failures = [var.lambda_architecture]
}

run "rejects_bad_dataset_prefix" {
  command = plan

  variables {
    dataset_prefix = "models/uploads/"
  }

  expect_failures = [var.dataset_prefix]
}

run "rejects_a_dataset_prefix_with_dot_segments" {
  command = plan

  variables {
    dataset_prefix = "datasets/../models/"
  }

  expect_failures = [var.dataset_prefix]
}

run "rejects_bad_launch_memory_size" {
  command = plan

  variables {
    launch_memory_size = 100
  }

  expect_failures = [var.launch_memory_size]
}

run "rejects_bad_trainer_memory_size" {
  command = plan

  variables {
    trainer_memory_size = 20480
  }

  expect_failures = [var.trainer_memory_size]
}

run "rejects_bad_launch_timeout" {
  command = plan

  variables {
    launch_timeout = 1000
  }

  expect_failures = [var.launch_timeout]
}

run "rejects_bad_trainer_timeout" {
  command = plan

  variables {
    trainer_timeout = 0
  }

  expect_failures = [var.trainer_timeout]
}

run "rejects_bad_log_retention_in_days" {
  command = plan

  variables {
    log_retention_in_days = 2
  }

  expect_failures = [var.log_retention_in_days]
}

run "rejects_bad_async_maximum_retry_attempts" {
  command = plan

  variables {
    async_maximum_retry_attempts = 5
  }

  expect_failures = [var.async_maximum_retry_attempts]
}

run "rejects_bad_async_maximum_event_age_in_seconds" {
  command = plan

  variables {
    async_maximum_event_age_in_seconds = 21601
  }

  expect_failures = [var.async_maximum_event_age_in_seconds]
}

run "rejects_bad_redis_node_type" {
  command = plan

  variables {
    redis_node_type         = "m5.large"
    redis_usable_memory_mib = 1000
  }

  expect_failures = [var.redis_node_type]
}

run "rejects_bad_redis_engine_version" {
  command = plan

  variables {
    redis_engine_version = "5.0.6"
  }

  expect_failures = [var.redis_engine_version]
}

run "rejects_bad_redis_num_cache_clusters" {
  command = plan

  variables {
    redis_num_cache_clusters = 0
  }

  expect_failures = [var.redis_num_cache_clusters]
}

run "rejects_bad_redis_snapshot_retention_limit" {
  command = plan

  variables {
    redis_snapshot_retention_limit = -1
  }

  expect_failures = [var.redis_snapshot_retention_limit]
}

run "rejects_bad_bucket_name" {
  command = plan

  variables {
    bucket_name = "My_Bucket"
  }

  expect_failures = [var.bucket_name]
}

run "rejects_bad_notification_email" {
  command = plan

  variables {
    notification_email = "nobody"
  }

  expect_failures = [var.notification_email]
}

run "rejects_bad_kms_deletion_window_in_days" {
  command = plan

  variables {
    kms_deletion_window_in_days = 6
  }

  expect_failures = [var.kms_deletion_window_in_days]
}

run "rejects_bad_github_repository" {
  command = plan

  variables {
    github_repository = "lnn"
  }

  expect_failures = [var.github_repository]
}

run "rejects_bad_terraform_state_bucket_arn" {
  command = plan

  variables {
    terraform_state_bucket_arn = "my-state-bucket"
  }

  expect_failures = [var.terraform_state_bucket_arn]
}

run "apply_environment_is_not_the_plan_environment" {
  command = plan

  variables {
    github_repository        = "example-org/lnn"
    github_plan_environment  = "review"
    github_apply_environment = "review"
  }

  expect_failures = [var.github_apply_environment]
}

run "terratest_environment_is_its_own" {
  command = plan

  variables {
    github_repository            = "example-org/lnn"
    github_terratest_environment = "production"
  }

  expect_failures = [var.github_terratest_environment]
}

run "rejects_bad_trainer_reserved_concurrency" {
  command = plan

  variables {
    trainer_reserved_concurrency = 0
  }

  expect_failures = [var.trainer_reserved_concurrency]
}

run "rejects_bad_max_run_steps" {
  command = plan

  variables {
    max_run_steps = 0
  }

  expect_failures = [var.max_run_steps]
}

run "rejects_bad_max_run_invocations" {
  command = plan

  variables {
    max_run_invocations = 1.5
  }

  expect_failures = [var.max_run_invocations]
}

run "no_reservation_on_request" {
  command = plan

  variables {
    trainer_reserved_concurrency = null
  }

  assert {
    condition     = module.functions.reserved_concurrency["trainer"] == -1
    error_message = "null reserves nothing (accounts at the new-account limit)"
  }
}

run "rejects_bad_monthly_budget_usd" {
  command = plan

  variables {
    monthly_budget_usd = 0
  }

  expect_failures = [var.monthly_budget_usd]
}

run "budget_alarm_goes_to_the_stacks_topic" {
  command = plan

  variables {
    monthly_budget_usd = 25
  }

  assert {
    condition     = aws_budgets_budget.this[0].limit_amount == "25.00" && alltrue([for n in aws_budgets_budget.this[0].notification : n.subscriber_sns_topic_arns == toset([module.notifications.topic_arn])])
    error_message = "the budget alarms must go to the stack's topic"
  }

  assert {
    condition     = tolist(one(aws_budgets_budget.this[0].cost_filter).values) == tolist(["user:Deployment$lnn"])
    error_message = "the budget counts the stack's resources (Deployment tag) only"
  }

  assert {
    condition     = one(one(data.aws_iam_policy_document.topic[0].statement).principals).identifiers == toset(["budgets.amazonaws.com"]) && anytrue([for c in one(data.aws_iam_policy_document.topic[0].statement).condition : c.variable == "aws:SourceAccount"])
    error_message = "only Budgets of this account may publish to the topic"
  }
}

run "no_budget_by_default" {
  command = plan

  assert {
    condition     = length(aws_budgets_budget.this) == 0 && length(aws_sns_topic_policy.this) == 0
    error_message = "the budget alarm is optional"
  }
}

run "rejects_bad_permissions_boundary_arn" {
  command = plan

  variables {
    permissions_boundary_arn = "arn:aws:iam::123456789012:role/not-a-policy"
  }

  expect_failures = [var.permissions_boundary_arn]
}

# The stack's roles live under its own path, with its boundary; the CI roles may write only there.
run "stack_roles_carry_the_boundary_under_the_stacks_path" {
  command = plan

  variables {
    github_repository = "example-org/lnn"
  }

  assert {
    condition     = alltrue([for r in module.functions.role_paths : r == "/lnn/lnn/"]) && module.network.role_path == "/lnn/lnn/"
    error_message = "the functions' and the flow-log roles live under /lnn/<name>/"
  }

  assert {
    condition     = local.role_path == "/lnn/${var.name}/" && module.github_oidc[0].writable_role_paths == ["arn:aws:iam::123456789012:role/lnn/lnn/*"]
    error_message = "the apply role writes exactly the stack's role path"
  }
}

run "explicit_usable_memory_for_an_unknown_node_type" {
  command = plan

  variables {
    redis_node_type         = "cache.x2gd.large"
    redis_usable_memory_mib = 20000
  }

  assert {
    condition     = local.redis_usable_memory_mib == 20000
    error_message = "redis_usable_memory_mib is used as given"
  }
}

run "rejects_bad_github_plan_environment" {
  command = plan

  variables {
    github_plan_environment = "plan env"
  }

  expect_failures = [var.github_plan_environment]
}

run "rejects_bad_github_apply_environment" {
  command = plan

  variables {
    github_apply_environment = ""
  }

  expect_failures = [var.github_apply_environment]
}

run "rejects_bad_github_terratest_environment" {
  command = plan

  variables {
    github_terratest_environment = "tt/env"
  }

  expect_failures = [var.github_terratest_environment]
}
