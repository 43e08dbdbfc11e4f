output "function_names" {
  description = "Names of the functions, by role (launch, trainer)."
  value       = { for k, v in aws_lambda_function.this : k => v.function_name }
}

output "function_arns" {
  description = "ARNs of the functions, by role (launch, trainer)."
  value       = { for k, v in aws_lambda_function.this : k => v.arn }
}

output "role_arns" {
  description = "ARNs of the functions' execution roles, by role."
  value       = { for k, v in aws_iam_role.this : k => v.arn }
}

output "log_group_names" {
  description = "Names of the functions' CloudWatch log groups, by role."
  value       = { for k, v in aws_cloudwatch_log_group.this : k => v.name }
}

output "failure_queue_url" {
  description = "URL of the SQS queue that receives failed asynchronous invocations."
  value       = aws_sqs_queue.this.url
}

output "failure_queue_arn" {
  description = "ARN of the SQS queue that receives failed asynchronous invocations."
  value       = aws_sqs_queue.this.arn
}

output "image_uri" {
  description = "Image the functions run: the one they were created with, or the last one rolled out."
  value       = aws_lambda_function.this["trainer"].image_uri
}

output "role_paths" {
  description = "IAM paths of the functions' execution roles, by role."
  value       = { for k, v in aws_iam_role.this : k => v.path }
}

output "reserved_concurrency" {
  description = "Reserved concurrency of the functions, by role (-1: unreserved)."
  value       = { for k, v in aws_lambda_function.this : k => v.reserved_concurrent_executions }
}
