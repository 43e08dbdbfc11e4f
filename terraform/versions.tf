terraform {
  # 1.10: the S3 backend's own lock file (use_lockfile), no DynamoDB lock table to bootstrap.
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 6.0"
    }
  }

  # Partial configuration: the bucket (made by `make bootstrap`) and its region are given to
  # `terraform init -backend-config=...`, so one configuration serves every account. Without this
  # block every CI runner would start from an empty local state and create a second stack.
  backend "s3" {
    key          = "lnn/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}
