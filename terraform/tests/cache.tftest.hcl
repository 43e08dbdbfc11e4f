# The cache module: the ElastiCache subnet group (notes: "may need to create a Subnet Group") and a
# Valkey replication group with encryption in transit and at rest and IAM authentication through a
# user group (no auth token, no secret).

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

run "valkey_encrypted_with_iam_authentication_and_no_secret" {
  module {
    source = "./modules/cache"
  }

  assert {
    condition = (
      aws_elasticache_replication_group.this.at_rest_encryption_enabled == "true" &&
      aws_elasticache_replication_group.this.transit_encryption_enabled &&
      aws_elasticache_replication_group.this.kms_key_id == var.kms_key_arn
    )
    error_message = "the cache must be encrypted in transit (IAM authentication needs it) and at rest"
  }

  assert {
    condition     = aws_elasticache_replication_group.this.auth_token == null
    error_message = "no auth token: clients authenticate with IAM"
  }

  assert {
    condition     = toset(aws_elasticache_replication_group.this.user_group_ids) == toset([aws_elasticache_user_group.this.user_group_id])
    error_message = "the replication group must authenticate through the stack's user group"
  }

  assert {
    condition = (
      aws_elasticache_user.functions.authentication_mode[0].type == "iam" &&
      aws_elasticache_user.functions.user_name == aws_elasticache_user.functions.user_id &&
      aws_elasticache_user.functions.user_id == "lnn-functions"
    )
    error_message = "the functions' user authenticates with IAM, and its name is its id (as AWS requires)"
  }

  assert {
    condition     = aws_elasticache_user.functions.access_string == "on ~* -@all +@read +@write +@scripting +@transaction +@connection -@dangerous"
    error_message = "the functions' user may send what the functions send, and nothing that flushes, lists or reconfigures"
  }

  assert {
    condition = (
      aws_elasticache_user.default.user_name == "default" &&
      startswith(aws_elasticache_user.default.access_string, "off ") &&
      toset(aws_elasticache_user_group.this.user_ids) == toset([aws_elasticache_user.default.user_id, aws_elasticache_user.functions.user_id])
    )
    error_message = "the user group holds the functions' user and the mandatory default user, disabled"
  }

  assert {
    condition = (
      aws_elasticache_replication_group.this.engine == "valkey" &&
      aws_elasticache_replication_group.this.engine_version == "8.0" &&
      aws_elasticache_replication_group.this.port == 6379 &&
      aws_elasticache_replication_group.this.snapshot_retention_limit == 1
    )
    error_message = "Valkey pinned, port 6379, snapshots kept"
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
    condition     = output.user_id == "lnn-functions" && output.user_arn == aws_elasticache_user.functions.arn
    error_message = "the module must expose the user the functions connect as (REDIS_USER_ID) and its ARN"
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

# Every validated variable whose rule reads it alone, each given a bad value, in one plan: the run
# passes only if every one of them reports its own failure (a listed variable that does not, or any
# other error, fails it). A rule that reads another variable, and the variable it reads, have runs of
# their own.
run "rejects_bad_values" {
  command = plan

  module {
    source = "./modules/cache"
  }

  variables {
    subnet_ids         = ["subnet-0aaaaaaaaaaaaaaaa"]
    security_group_ids = []
    port               = 65536
    snapshot_window    = "3am-4am"
    maintenance_window = "sunday:05:00-sunday:06:00"
    kms_key_arn        = "alias/lnn"
  }

  expect_failures = [
    var.subnet_ids,
    var.security_group_ids,
    var.port,
    var.snapshot_window,
    var.maintenance_window,
    var.kms_key_arn,
  ]
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
    condition     = aws_elasticache_parameter_group.this.family == "valkey8"
    error_message = "Valkey 8.x takes the valkey8 family"
  }
}

run "valkey7_engine_takes_the_valkey7_family" {
  command = plan

  module {
    source = "./modules/cache"
  }

  variables {
    engine_version = "7.2"
  }

  assert {
    condition     = aws_elasticache_parameter_group.this.family == "valkey7"
    error_message = "Valkey 7.2 takes the valkey7 family"
  }
}
