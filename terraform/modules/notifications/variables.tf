variable "name" {
  description = "Name of the SNS topic that announces finished and failed runs."
  type        = string
}

variable "email" {
  description = "Optional e-mail address subscribed to the topic (the recipient must confirm it); null for none."
  type        = string
  default     = null
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the topic's messages."
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
