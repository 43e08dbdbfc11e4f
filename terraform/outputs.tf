output "launch_function_name" {
  description = "Name of LaunchLambda."
  value       = module.functions.function_names["launch"]
}

output "launch_function_arn" {
  description = "ARN of LaunchLambda."
  value       = module.functions.function_arns["launch"]
}

output "trainer_function_name" {
  description = "Name of TrainerLambda."
  value       = module.functions.function_names["trainer"]
}

output "trainer_function_arn" {
  description = "ARN of TrainerLambda."
  value       = module.functions.function_arns["trainer"]
}

output "ecr_repository_url" {
  description = "URL of the ECR repository the image is pushed to."
  value       = module.registry.repository_url
}

output "table_name" {
  description = "Name of the DynamoDB table of runs and epochs."
  value       = module.storage.table_name
}

output "sns_topic_arn" {
  description = "ARN of the SNS topic of run notifications."
  value       = module.notifications.topic_arn
}

output "bucket_name" {
  description = "Name of the S3 bucket for datasets and models."
  value       = module.storage.bucket_name
}

output "redis_endpoint" {
  description = "Primary endpoint of the cache (host:port; TLS and IAM authentication required)."
  value       = "${module.cache.primary_endpoint_address}:${module.cache.port}"
}

output "redis_user_id" {
  description = "ElastiCache user the functions connect as with IAM authentication (REDIS_USER_ID); no password exists."
  value       = module.cache.user_id
}

output "failure_queue_url" {
  description = "SQS queue that receives failed asynchronous invocations."
  value       = module.functions.failure_queue_url
}

output "launch_command" {
  description = "Ready-to-paste command that starts a run (request.json as in the README)."
  value       = "aws lambda invoke --region ${var.aws_region} --function-name ${module.functions.function_names["launch"]} --cli-binary-format raw-in-base64-out --payload file://request.json response.json && cat response.json"
}

output "github_plan_role_arn" {
  description = "Role GitHub Actions assumes to plan (null without github_repository)."
  value       = one(module.github_oidc[*].plan_role_arn)
}

output "github_deploy_role_arn" {
  description = "Role GitHub Actions assumes to deploy (null without github_repository)."
  value       = one(module.github_oidc[*].deploy_role_arn)
}

output "github_apply_role_arn" {
  description = "Role GitHub Actions assumes to apply the stack (null without github_repository)."
  value       = one(module.github_oidc[*].apply_role_arn)
}

output "lambda_architecture" {
  description = "Instruction set of the functions, which the image must be built for."
  value       = var.lambda_architecture
}

output "github_release_role_arn" {
  description = "Push-only role release-tag workflows assume (AWS_RELEASE_ROLE_ARN); null without github_allow_tag_pushes."
  value       = one(module.github_oidc[*].release_role_arn)
}

output "github_terratest_role_arn" {
  description = "Role the end-to-end test workflow assumes (AWS_TERRATEST_ROLE_ARN); null without github_repository or github_terratest_environment."
  value       = one(module.github_oidc[*].terratest_role_arn)
}

output "permissions_boundary_arn" {
  description = "The permissions boundary of every role the stack creates (LNN_PERMISSIONS_BOUNDARY_ARN for the end-to-end test's stacks)."
  value       = local.boundary_arn
}
