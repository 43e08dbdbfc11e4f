variable "name" {
  description = "Replication group ID and name prefix (lowercase letters, digits and hyphens, at most 40 characters)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnet IDs for the ElastiCache subnet group (at least two, in different availability zones)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids must hold at least two subnets."
  }
}

variable "security_group_ids" {
  description = "Security groups of the replication group (the cache group that admits 6379 from the Lambdas only)."
  type        = list(string)

  validation {
    condition     = length(var.security_group_ids) >= 1
    error_message = "security_group_ids must hold at least one security group."
  }
}

variable "node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "engine_version" {
  description = "Valkey engine version, pinned (7.2 or 8.0: IAM authentication needs Valkey 7.2 or later; the root module validates it)."
  type        = string
  default     = "8.0"
}

variable "port" {
  description = "TCP port Redis listens on (the root module chooses it, for the security groups too)."
  type        = number

  validation {
    condition     = var.port >= 1024 && var.port <= 65535 && floor(var.port) == var.port
    error_message = "port must be an integer between 1024 and 65535."
  }
}

variable "num_cache_clusters" {
  description = "Number of nodes (one primary and its replicas); two or more enables automatic failover across availability zones."
  type        = number
  default     = 2
}

variable "snapshot_retention_limit" {
  description = "Days of automatic snapshots to keep (0 disables them)."
  type        = number
  default     = 1
}

variable "snapshot_window" {
  description = "Daily UTC window for automatic snapshots (hh24:mi-hh24:mi)."
  type        = string
  default     = "03:00-04:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$", var.snapshot_window))
    error_message = "snapshot_window must be of the form hh24:mi-hh24:mi, e.g. 03:00-04:00."
  }
}

variable "maintenance_window" {
  description = "Weekly UTC maintenance window (ddd:hh24:mi-ddd:hh24:mi)."
  type        = string
  default     = "sun:05:00-sun:06:00"

  validation {
    condition     = can(regex("^(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):[0-5][0-9]-(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):[0-5][0-9]$", var.maintenance_window))
    error_message = "maintenance_window must be of the form ddd:hh24:mi-ddd:hh24:mi, e.g. sun:05:00-sun:06:00."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the data at rest."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "tags" {
  description = "Tags applied to every resource of the module."
  type        = map(string)
  default     = {}
}
