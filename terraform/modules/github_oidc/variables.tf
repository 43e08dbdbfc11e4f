variable "name_prefix" {
  description = "Prefix of the role names (<name_prefix>-github-plan, <name_prefix>-github-deploy); the stack's name."
  type        = string
}

variable "github_repository" {
  description = "The one GitHub repository (owner/name) whose workflows may assume the roles."
  type        = string
}

variable "create_oidc_provider" {
  description = "Create the account's GitHub OIDC identity provider (token.actions.githubusercontent.com); false when the account already has one, which is then looked up."
  type        = bool
  default     = true
}

variable "ecr_repository_arn" {
  description = "ARN of the ECR repository the deploy role may push the Lambda image to."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:ecr:[a-z0-9-]+:[0-9]{12}:repository/.+$", var.ecr_repository_arn))
    error_message = "ecr_repository_arn must be an ECR repository ARN."
  }
}

variable "function_arns" {
  description = "ARNs of the Lambda functions the deploy role may roll onto a new image (LaunchLambda and TrainerLambda)."
  type        = list(string)
}

variable "stack_bucket_arn" {
  description = "ARN of the stack's dataset and model bucket (the plan role may check it exists)."
  type        = string
}

variable "plan_environment" {
  description = "GitHub environment whose jobs may assume the plan role (give it required reviewers)."
  type        = string
  default     = "terraform-plan"
}

variable "apply_environment" {
  description = "GitHub environment whose jobs may assume the apply role."
  type        = string
  default     = "production"
}

variable "terratest_environment" {
  description = "GitHub environment of the end-to-end test (terratest.yml), whose jobs may assume the terratest role; null for none (no terratest role)."
  type        = string
  default     = null
}

variable "state_bucket_arn" {
  description = "ARN of the S3 bucket holding the Terraform state, which the plan role may read; null for none."
  type        = string
  default     = null
}

variable "allow_tag_pushes" {
  description = "Create a release role that workflows running for a release tag (refs/tags/v*) assume to push release images (image.yml): it can push to the repository only, never update the functions."
  type        = bool
  default     = false
}

variable "max_session_duration" {
  description = "Maximum session length of the roles, in seconds (1-12 hours)."
  type        = number
  default     = 3600

  validation {
    condition     = var.max_session_duration >= 3600 && var.max_session_duration <= 43200
    error_message = "max_session_duration must be between 3600 and 43200 seconds."
  }
}

variable "tags" {
  description = "Tags applied to every resource of this module."
  type        = map(string)
  default     = {}
}

variable "permissions_boundary_arn" {
  description = "ARN of the stack's permissions boundary policy: the apply and terratest roles may create and change roles only with it on them, and may not change it."
  type        = string
}

variable "terratest_name_prefix" {
  description = "Name prefix of the end-to-end test's stacks (tests/infra/terratest names them lnn-tt-<id>): the terratest role reaches <terratest_name_prefix>-* only."
  type        = string
  default     = "lnn-tt"
}
