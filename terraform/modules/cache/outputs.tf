output "replication_group_id" {
  description = "ID of the replication group (REDIS_REPLICATION_GROUP_ID: the host its IAM tokens are signed for)."
  value       = aws_elasticache_replication_group.this.id
}

output "replication_group_arn" {
  description = "ARN of the replication group."
  value       = aws_elasticache_replication_group.this.arn
}

output "primary_endpoint_address" {
  description = "Primary endpoint of the cache (REDIS_HOST)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "port" {
  description = "Port of the cache (REDIS_PORT)."
  value       = aws_elasticache_replication_group.this.port
}

output "subnet_group_name" {
  description = "Name of the ElastiCache subnet group."
  value       = aws_elasticache_subnet_group.this.name
}

output "user_id" {
  description = "ID (and name) of the IAM-authenticated ElastiCache user the functions connect as (REDIS_USER_ID)."
  value       = aws_elasticache_user.functions.user_id
}

output "user_arn" {
  description = "ARN of the functions' ElastiCache user (elasticache:Connect is granted on it and the group)."
  value       = aws_elasticache_user.functions.arn
}

output "user_group_id" {
  description = "ID of the user group on the replication group."
  value       = aws_elasticache_user_group.this.user_group_id
}
