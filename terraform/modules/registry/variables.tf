variable "name" {
  description = "Name of the ECR repository for the Lambda container image."
  type        = string
}

variable "keep_tagged_images" {
  description = "How many tagged images the lifecycle policy keeps (older ones expire)."
  type        = number
  default     = 30

  validation {
    condition     = var.keep_tagged_images >= 1 && floor(var.keep_tagged_images) == var.keep_tagged_images
    error_message = "keep_tagged_images must be a positive integer."
  }
}

variable "untagged_expiry_days" {
  description = "Days after which untagged images expire."
  type        = number
  default     = 7

  validation {
    condition     = var.untagged_expiry_days >= 1 && floor(var.untagged_expiry_days) == var.untagged_expiry_days
    error_message = "untagged_expiry_days must be a positive integer."
  }
}

variable "force_delete" {
  description = "Let terraform destroy delete the repository even when it still holds images (for throwaway stacks only)."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the images."
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

variable "function_arns" {
  description = "ARNs of the Lambda functions that may pull images from the repository (empty: no repository policy)."
  type        = list(string)
  default     = []
}
