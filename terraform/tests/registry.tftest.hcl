# The registry module: the ECR repository for the Lambda image.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name        = "lnn"
  kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-1111-1111-1111-111111111111"
}

run "immutable_scanned_encrypted_with_lifecycle" {
  module {
    source = "./modules/registry"
  }

  assert {
    condition     = aws_ecr_repository.this.image_tag_mutability == "IMMUTABLE" && aws_ecr_repository.this.image_scanning_configuration[0].scan_on_push
    error_message = "tags must be immutable and images scanned on push"
  }

  assert {
    condition     = aws_ecr_repository.this.encryption_configuration[0].encryption_type == "KMS" && aws_ecr_repository.this.encryption_configuration[0].kms_key == var.kms_key_arn
    error_message = "images must be encrypted with the stack's key"
  }

  assert {
    condition     = length(jsondecode(aws_ecr_lifecycle_policy.this.policy).rules) == 2
    error_message = "the lifecycle policy must expire untagged and old images"
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
    source = "./modules/registry"
  }

  variables {
    keep_tagged_images   = 0
    untagged_expiry_days = 0
    kms_key_arn          = "alias/lnn"
  }

  expect_failures = [
    var.keep_tagged_images,
    var.untagged_expiry_days,
    var.kms_key_arn,
  ]
}

# Lambda pulls with the repository policy; without it CreateFunction has to add it as a side
# effect, which only works when the applying role may set repository policies.
run "repository_policy_lets_only_these_functions_pull" {
  command = plan

  module {
    source = "./modules/registry"
  }

  variables {
    function_arns = ["arn:aws:lambda:us-east-1:123456789012:function:lnn-launch", "arn:aws:lambda:us-east-1:123456789012:function:lnn-trainer"]
  }

  assert {
    condition     = length(aws_ecr_repository_policy.this) == 1
    error_message = "a repository policy exists when there are functions"
  }

  assert {
    condition = (
      one(data.aws_iam_policy_document.lambda_pull[0].statement).actions == toset(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]) &&
      toset(one(one(data.aws_iam_policy_document.lambda_pull[0].statement).condition).values) == toset(["arn:aws:lambda:us-east-1:123456789012:function:lnn-launch", "arn:aws:lambda:us-east-1:123456789012:function:lnn-trainer"])
    )
    error_message = "only the two functions' pulls are allowed"
  }
}
