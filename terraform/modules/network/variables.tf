variable "name" {
  description = "Name prefix for every resource of the network (lowercase letters, digits and hyphens)."
  type        = string
}

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC (a /16 to /24 private range)."
  type        = string
  default     = "10.42.0.0/16"
}

variable "private_subnet_cidrs" {
  description = "Exactly two IPv4 CIDR blocks, inside vpc_cidr, for the private subnets (one per availability zone)."
  type        = list(string)
  default     = ["10.42.1.0/24", "10.42.2.0/24"]
}

variable "availability_zones" {
  description = "Two availability zones for the private subnets; empty picks the first two available zones of the region."
  type        = list(string)
  default     = []
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

variable "role_path" {
  description = "IAM path of the module's roles (the stack's path, /lnn/<name>/: the CI roles may write roles under it only)."
  type        = string
  default     = "/"
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary of the module's roles (the stack's boundary policy); null for none."
  type        = string
  default     = null
}

variable "endpoint_resources" {
  description = "What each VPC endpoint admits calls to: the stack's resource ARNs (or ARN patterns) by service (s3, dynamodb, lambda, sns). Every endpoint gets a policy naming them."
  type        = map(list(string))
}
