output "replication_group_id" {
  description = "ID of the Redis replication group."
  value       = aws_elasticache_replication_group.this.id
}

output "replication_group_arn" {
  description = "ARN of the Redis replication group."
  value       = aws_elasticache_replication_group.this.arn
}

output "primary_endpoint_address" {
  description = "Primary endpoint of Redis (REDIS_HOST)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "port" {
  description = "Port of Redis (REDIS_PORT)."
  value       = aws_elasticache_replication_group.this.port
}

output "subnet_group_name" {
  description = "Name of the ElastiCache subnet group."
  value       = aws_elasticache_subnet_group.this.name
}

output "auth_token_secret_arn" {
  description = "ARN of the Secrets Manager secret whose SecretString is the Redis auth token (REDIS_AUTH_SECRET_ARN)."
  value       = aws_secretsmanager_secret.this.arn
}
