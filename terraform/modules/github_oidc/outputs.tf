output "oidc_provider_arn" {
  description = "ARN of the GitHub OIDC identity provider the roles trust (created or looked up)."
  value       = local.oidc_provider_arn
}

output "plan_role_arn" {
  description = "Role that pull-request workflows assume to run terraform plan (read-only)."
  value       = aws_iam_role.plan.arn
}

output "plan_role_name" {
  description = "Name of the plan role."
  value       = aws_iam_role.plan.name
}

output "deploy_role_arn" {
  description = "Role that workflows on main assume to push the image and update the two functions."
  value       = aws_iam_role.deploy.arn
}

output "deploy_role_name" {
  description = "Name of the deploy role."
  value       = aws_iam_role.deploy.name
}

output "apply_role_arn" {
  description = "ARN of the role the terraform apply job assumes (AWS_APPLY_ROLE_ARN)."
  value       = aws_iam_role.apply.arn
}

output "terratest_role_arn" {
  description = "ARN of the role the end-to-end test assumes (AWS_TERRATEST_ROLE_ARN); null without terratest_environment."
  value       = one(aws_iam_role.terratest[*].arn)
}

output "writable_role_paths" {
  description = "The role ARN patterns the apply role may create and change roles under (with the boundary)."
  value       = local.writers.apply.role_paths
}

output "release_role_arn" {
  description = "ARN of the push-only role of release-tag workflows (AWS_RELEASE_ROLE_ARN); null without allow_tag_pushes."
  value       = one(aws_iam_role.release[*].arn)
}
