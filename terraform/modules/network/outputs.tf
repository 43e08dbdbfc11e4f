output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr_block" {
  description = "CIDR block of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "private_subnet_ids" {
  description = "IDs of the two private subnets (Lambdas and Redis live here)."
  value       = aws_subnet.this[*].id
}

output "lambda_security_group_id" {
  description = "Security group of the Lambdas."
  value       = aws_security_group.lambda.id
}

output "redis_security_group_id" {
  description = "Security group of Redis (TCP redis_port from the Lambdas' group only)."
  value       = aws_security_group.redis.id
}

output "endpoints_security_group_id" {
  description = "Security group of the interface endpoints."
  value       = aws_security_group.endpoints.id
}

output "gateway_endpoint_ids" {
  description = "IDs of the S3 and DynamoDB gateway endpoints, by service."
  value       = { for k, v in aws_vpc_endpoint.gateway : k => v.id }
}

output "interface_endpoint_ids" {
  description = "IDs of the Lambda and SNS interface endpoints, by service."
  value       = { for k, v in aws_vpc_endpoint.interface : k => v.id }
}

output "role_path" {
  description = "IAM path of the flow-log role (null without flow logs)."
  value       = one(aws_iam_role.this[*].path)
}
