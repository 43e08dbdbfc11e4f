variable "table_name" {
  description = "Name of the DynamoDB table for runs and epochs."
  type        = string
}

variable "bucket_name" {
  description = "Name of the S3 bucket for datasets, models and checkpoints (globally unique)."
  type        = string
}

variable "deletion_protection" {
  description = "Protect the DynamoDB table against deletion."
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Let terraform destroy delete the bucket even when it still holds objects (for throwaway stacks only)."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which overwritten (noncurrent) object versions are deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a positive integer."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the table and the bucket."
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
