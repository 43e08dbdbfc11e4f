# The tensors' cache: a Valkey replication group with encryption in transit and at rest and IAM
# authentication. No password exists: the functions connect as the IAM-authenticated user below,
# signing a short-lived token with their own role (elasticache:Connect on this group and user).

# The replication group lives in the private subnets.
resource "aws_elasticache_subnet_group" "this" {
  name        = var.name
  description = "LNN Redis: private subnets"
  subnet_ids  = var.subnet_ids

  tags = var.tags
}

# ElastiCache IAM authentication: the user's name must be its id. Its access string allows what the
# functions send (reads, writes, the commit scripts, transactions, connection commands) and nothing
# that flushes, lists every key or reconfigures the cache (-@dangerous). trainer/local/provision.py
# gives the local cloud's user the same string.
resource "aws_elasticache_user" "functions" {
  user_id       = "${var.name}-functions"
  user_name     = "${var.name}-functions"
  engine        = "valkey"
  access_string = "on ~* -@all +@read +@write +@scripting +@transaction +@connection -@dangerous"

  authentication_mode {
    type = "iam"
  }

  tags = var.tags
}

# Every user group must hold a user named "default", which a client without AUTH would be: it is
# off and may run nothing, so an unauthenticated connection can do nothing at all.
resource "aws_elasticache_user" "default" {
  user_id       = "${var.name}-default"
  user_name     = "default"
  engine        = "valkey"
  access_string = "off -@all"

  authentication_mode {
    type = "no-password-required"
  }

  tags = var.tags
}

resource "aws_elasticache_user_group" "this" {
  user_group_id = var.name
  engine        = "valkey"
  user_ids      = [aws_elasticache_user.default.user_id, aws_elasticache_user.functions.user_id]

  tags = var.tags
}

# The stack's own parameter group, because the default one (volatile-lru) evicts keys that have a
# TTL -- and every LNN key has one: a full cache would silently drop a running run's tensors. With
# noeviction a write that does not fit fails loudly, and LaunchLambda refuses a dataset that would
# not fit in the first place (CACHE_CAPACITY_MIB).
resource "aws_elasticache_parameter_group" "this" {
  name        = var.name
  family      = local.parameter_group_family
  description = "LNN ${var.name}: never evict run state"

  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  # ElastiCache names Valkey's families by major version: valkey7 (7.2), valkey8 (8.x).
  parameter_group_family = "valkey${split(".", var.engine_version)[0]}"
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = var.name
  description          = "LNN tensors (Valkey)"

  engine               = "valkey"
  engine_version       = var.engine_version
  node_type            = var.node_type
  port                 = var.port
  num_cache_clusters   = var.num_cache_clusters
  parameter_group_name = aws_elasticache_parameter_group.this.name

  # On whenever there is a replica to fail over to (num_cache_clusters >= 2, the default).
  automatic_failover_enabled = var.num_cache_clusters > 1
  multi_az_enabled           = var.num_cache_clusters > 1

  #checkov:skip=CKV2_AWS_50:Multi-AZ automatic failover is enabled by the expression above for every group with a replica (the default of 2 nodes); checkov cannot evaluate it, and a deliberately single-node dev group has nothing to fail over to.

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = var.security_group_ids

  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn
  transit_encryption_enabled = true
  # IAM authentication through the user group (ElastiCache needs TLS for it): no auth token.
  user_group_ids = [aws_elasticache_user_group.this.user_group_id]

  snapshot_retention_limit   = var.snapshot_retention_limit
  snapshot_window            = var.snapshot_window
  maintenance_window         = var.maintenance_window
  auto_minor_version_upgrade = true
  apply_immediately          = true

  tags = var.tags
}
