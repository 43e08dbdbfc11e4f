variable "name" {
  description = "Name prefix for every resource of the network (lowercase letters, digits and hyphens)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC (a /16 to /24 private range)."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 24
    error_message = "vpc_cidr must be a valid IPv4 CIDR block with a prefix length between /16 and /24."
  }
}

variable "private_subnet_cidrs" {
  description = "Exactly two IPv4 CIDR blocks, inside vpc_cidr, for the private subnets (one per availability zone)."
  type        = list(string)
  default     = ["10.42.1.0/24", "10.42.2.0/24"]

  validation {
    condition     = length(var.private_subnet_cidrs) == 2 && alltrue([for c in var.private_subnet_cidrs : can(cidrhost(c, 0))])
    error_message = "private_subnet_cidrs must hold exactly two valid IPv4 CIDR blocks."
  }
}

variable "availability_zones" {
  description = "Two availability zones for the private subnets; empty picks the first two available zones of the region."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || (length(var.availability_zones) == 2 && length(distinct(var.availability_zones)) == 2)
    error_message = "availability_zones must be empty or two distinct zone names."
  }
}

variable "redis_port" {
  description = "TCP port of the Redis replication group; the Redis security group admits only this port, only from the Lambdas' group."
  type        = number

  validation {
    condition     = var.redis_port >= 1024 && var.redis_port <= 65535 && floor(var.redis_port) == var.redis_port
    error_message = "redis_port must be an integer between 1024 and 65535."
  }
}

variable "endpoint_zone_count" {
  description = "Zones (of the two private subnets) the interface endpoints are placed in: 1 or 2."
  type        = number
  default     = 2

  validation {
    condition     = contains([1, 2], var.endpoint_zone_count)
    error_message = "endpoint_zone_count must be 1 or 2."
  }
}

variable "enable_flow_logs" {
  description = "Record the VPC's rejected and accepted traffic to a CloudWatch log group."
  type        = bool
  default     = true
}

variable "log_retention_in_days" {
  description = "Retention of the flow-log log group, in days (a value CloudWatch Logs accepts)."
  type        = number
  default     = 7

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_in_days)
    error_message = "log_retention_in_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the flow-log log group."
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
