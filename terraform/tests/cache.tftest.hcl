# The cache module: the ElastiCache subnet group (notes: "may need to create a Subnet Group") and a
# Redis replication group with encryption in transit and at rest and an auth token in Secrets Manager.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name               = "lnn"
  subnet_ids         = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
  security_group_ids = ["sg-0redis"]
  port               = 6379
  kms_key_arn        = "arn:aws:kms:us-east-1:123456789012:key/11111111-1111-1111-1111-111111111111"
}

run "note4_subnet_group_in_the_private_subnets" {
  module {
    source = "./modules/cache"
  }

  assert {
    condition     = toset(aws_elasticache_subnet_group.this.subnet_ids) == toset(var.subnet_ids)
    error_message = "the subnet group must hold the private subnets"
  }

  assert {
    condition     = aws_elasticache_replication_group.this.subnet_group_name == aws_elasticache_subnet_group.this.name
    error_message = "Redis must live in the stack's subnet group"
  }

  assert {
    condition     = toset(aws_elasticache_replication_group.this.security_group_ids) == toset(var.security_group_ids)
    error_message = "Redis must use the Redis security group (6379 from the Lambdas only)"
  }
}

run "redis_encrypted_with_auth_token_from_secrets_manager" {
  module {
    source = "./modules/cache"
  }

  assert {
    condition = (
      aws_elasticache_replication_group.this.at_rest_encryption_enabled == "true" &&
      aws_elasticache_replication_group.this.transit_encryption_enabled &&
      aws_elasticache_replication_group.this.kms_key_id == var.kms_key_arn
    )
    error_message = "Redis must be encrypted in transit and at rest"
  }

  assert {
    condition     = nonsensitive(aws_elasticache_replication_group.this.auth_token == aws_secretsmanager_secret_version.this.secret_string)
    error_message = "the auth token must be the one kept in Secrets Manager"
  }

  assert {
    condition     = aws_secretsmanager_secret_version.this.secret_id == aws_secretsmanager_secret.this.id && aws_secretsmanager_secret.this.kms_key_id == var.kms_key_arn
    error_message = "the token must be stored in the stack's encrypted secret"
  }

  assert {
    condition = (
      aws_elasticache_replication_group.this.engine == "redis" &&
      aws_elasticache_replication_group.this.engine_version == "7.1" &&
      aws_elasticache_replication_group.this.port == 6379 &&
      aws_elasticache_replication_group.this.snapshot_retention_limit == 1
    )
    error_message = "engine pinned, port 6379, snapshots kept"
  }

  assert {
    condition = (
      aws_elasticache_replication_group.this.num_cache_clusters == 2 &&
      aws_elasticache_replication_group.this.automatic_failover_enabled &&
      aws_elasticache_replication_group.this.multi_az_enabled
    )
    error_message = "two nodes with automatic Multi-AZ failover by default"
  }

  assert {
    condition     = output.auth_token_secret_arn == aws_secretsmanager_secret.this.arn
    error_message = "the module must expose the secret's ARN (REDIS_AUTH_SECRET_ARN)"
  }
}

run "single_node_has_no_failover" {
  command = plan

  module {
    source = "./modules/cache"
  }

  variables {
    num_cache_clusters = 1
  }

  assert {
    condition     = !aws_elasticache_replication_group.this.automatic_failover_enabled && !aws_elasticache_replication_group.this.multi_az_enabled
    error_message = "one node cannot fail over"
  }
}

# ---- every validation rejects a bad value ----

run "rejects_bad_subnet_ids" {
  command = plan

  module {
    source = "./modules/cache"
  }

  variables {
    subnet_ids = ["subnet-0aaaaaaaaaaaaaaaa"]
  }

  expect_failures = [var.subnet_ids]
}

run "rejects_bad_security_group_ids" {
  command = plan

  module {
    source = "./modules/cache"
  }

  variables {
    security_group_ids = []
  }

  expect_failures = [var.security_group_ids]
}

run "rejects_bad_port" {
  command = plan

  module {
    source = "./modules/cache"
  }

  variables {
    port = 65536
  }

  expect_failures = [var.port]
}

run "rejects_bad_snapshot_window" {
  command = plan

  module {
    source = "./modules/cache"
  }

  variables {
    snapshot_window = "3am-4am"
  }

  expect_failures = [var.snapshot_window]
}

run "rejects_bad_maintenance_window" {
  command = plan

  module {
    source = "./modules/cache"
  }

  variables {
    maintenance_window = "sunday:05:00-sunday:06:00"
  }

  expect_failures = [var.maintenance_window]
}

run "rejects_bad_kms_key_arn" {
  command = plan

  module {
    source = "./modules/cache"
  }

  variables {
    kms_key_arn = "alias/lnn"
  }

  expect_failures = [var.kms_key_arn]
}

# The default parameter group's volatile-lru would evict run state (every LNN key has a TTL).
run "own_parameter_group_never_evicts" {
  command = plan

  module {
    source = "./modules/cache"
  }

  assert {
    condition     = aws_elasticache_replication_group.this.parameter_group_name == aws_elasticache_parameter_group.this.name
    error_message = "the replication group uses the stack's own parameter group"
  }

  assert {
    condition     = one([for p in aws_elasticache_parameter_group.this.parameter : p.value if p.name == "maxmemory-policy"]) == "noeviction"
    error_message = "maxmemory-policy must be noeviction"
  }

  assert {
    condition     = aws_elasticache_parameter_group.this.family == "redis7"
    error_message = "a 7.x engine takes the redis7 family"
  }
}

# "default.redis6" does not exist: every 6.x engine is in the redis6.x family.
run "redis6_engine_takes_the_redis6x_family" {
  command = plan

  module {
    source = "./modules/cache"
  }

  variables {
    engine_version = "6.2"
  }

  assert {
    condition     = aws_elasticache_parameter_group.this.family == "redis6.x"
    error_message = "a 6.x engine takes the redis6.x family"
  }
}
