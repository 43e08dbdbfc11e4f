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

# Every validated variable whose rule reads it alone, each given a bad value, in one plan: the run
# passes only if every one of them reports its own failure (a listed variable that does not, or any
# other error, fails it). A rule that reads another variable, and the variable it reads, have runs of
# their own.
run "rejects_bad_values" {
  command = plan

  variables {
    profile                            = "staging"
    aws_region                         = "US East"
    name                               = "Lnn"
    vpc_cidr                           = "10.42.0.0/28"
    private_subnet_cidrs               = ["10.42.1.0/24", "10.42.2.0/33"]
    availability_zones                 = ["us-east-1a"]
    image_tag                          = "-bad"
    image_digest                       = "sha256:xyz"
    lambda_architecture                = "arm"
    dataset_prefix                     = "models/uploads/"
    launch_memory_size                 = 100
    trainer_memory_size                = 20480
    launch_timeout                     = 1000
    trainer_timeout                    = 0
    log_retention_in_days              = 2
    async_maximum_retry_attempts       = 5
    async_maximum_event_age_in_seconds = 21601
    redis_engine_version               = "5.0.6"
    redis_num_cache_clusters           = 0
    redis_snapshot_retention_limit     = -1
    bucket_name                        = "My_Bucket"
    notification_email                 = "nobody"
    kms_deletion_window_in_days        = 6
    github_repository                  = "lnn"
    terraform_state_bucket_arn         = "my-state-bucket"
    trainer_reserved_concurrency       = 0
    max_run_steps                      = 0
    max_run_invocations                = 1.5
    monthly_budget_usd                 = 0
    permissions_boundary_arn           = "arn:aws:iam::123456789012:role/not-a-policy"
    github_plan_environment            = "plan env"
  }

  expect_failures = [
    var.profile,
    var.aws_region,
    var.name,
    var.vpc_cidr,
    var.private_subnet_cidrs,
    var.availability_zones,
    var.image_tag,
    var.image_digest,
    var.lambda_architecture,
    var.dataset_prefix,
    var.launch_memory_size,
    var.trainer_memory_size,
    var.launch_timeout,
    var.trainer_timeout,
    var.log_retention_in_days,
    var.async_maximum_retry_attempts,
    var.async_maximum_event_age_in_seconds,
    var.redis_engine_version,
    var.redis_num_cache_clusters,
    var.redis_snapshot_retention_limit,
    var.bucket_name,
    var.notification_email,
    var.kms_deletion_window_in_days,
    var.github_repository,
    var.terraform_state_bucket_arn,
    var.trainer_reserved_concurrency,
    var.max_run_steps,
    var.max_run_invocations,
    var.monthly_budget_usd,
    var.permissions_boundary_arn,
    var.github_plan_environment,
  ]
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

run "rejects_a_dataset_prefix_with_dot_segments" {
  command = plan

  variables {
    dataset_prefix = "datasets/../models/"
  }

  expect_failures = [var.dataset_prefix]
}

run "rejects_bad_redis_node_type" {
  command = plan

  variables {
    redis_node_type         = "m5.large"
    redis_usable_memory_mib = 1000
  }

  expect_failures = [var.redis_node_type]
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
