# The storage module: the runs/epochs table and the datasets/models bucket.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  table_name  = "lnn-runs"
  bucket_name = "lnn-123456789012-us-east-1"
  kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-1111-1111-1111-111111111111"
}

run "table_keys_billing_recovery_and_encryption" {
  module {
    source = "./modules/storage"
  }

  assert {
    condition = (
      aws_dynamodb_table.this.hash_key == "pk" && aws_dynamodb_table.this.range_key == "sk" &&
      toset([for a in aws_dynamodb_table.this.attribute : "${a.name}:${a.type}"]) == toset(["pk:S", "sk:S"])
    )
    error_message = "the table's keys must be pk (S) and sk (S), as the code expects"
  }

  assert {
    condition = (
      aws_dynamodb_table.this.billing_mode == "PAY_PER_REQUEST" &&
      aws_dynamodb_table.this.point_in_time_recovery[0].enabled &&
      aws_dynamodb_table.this.server_side_encryption[0].enabled &&
      aws_dynamodb_table.this.server_side_encryption[0].kms_key_arn == var.kms_key_arn &&
      aws_dynamodb_table.this.deletion_protection_enabled
    )
    error_message = "on-demand billing, point-in-time recovery, encryption and deletion protection"
  }
}

run "deletion_protection_is_a_variable" {
  command = plan

  module {
    source = "./modules/storage"
  }

  variables {
    deletion_protection = false
  }

  assert {
    condition     = !aws_dynamodb_table.this.deletion_protection_enabled
    error_message = "deletion protection must follow the variable"
  }
}

run "bucket_versioned_encrypted_private" {
  module {
    source = "./modules/storage"
  }

  assert {
    condition     = aws_s3_bucket_versioning.this.versioning_configuration[0].status == "Enabled"
    error_message = "the bucket must be versioned"
  }

  assert {
    condition = alltrue([for r in aws_s3_bucket_server_side_encryption_configuration.this.rule :
      alltrue([for d in r.apply_server_side_encryption_by_default : d.sse_algorithm == "aws:kms" && d.kms_master_key_id == var.kms_key_arn])
    ])
    error_message = "the bucket must be encrypted with the stack's key"
  }

  assert {
    condition = (
      aws_s3_bucket_public_access_block.this.block_public_acls && aws_s3_bucket_public_access_block.this.block_public_policy &&
      aws_s3_bucket_public_access_block.this.ignore_public_acls && aws_s3_bucket_public_access_block.this.restrict_public_buckets
    )
    error_message = "all public access must be blocked"
  }

  assert {
    condition     = output.bucket_name == var.bucket_name && output.table_name == var.table_name
    error_message = "the names reach the outputs (MODEL_BUCKET, TABLE_NAME)"
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
    source = "./modules/storage"
  }

  variables {
    noncurrent_version_expiration_days = 0
    kms_key_arn                        = "11111111-1111-1111-1111-111111111111"
  }

  expect_failures = [
    var.noncurrent_version_expiration_days,
    var.kms_key_arn,
  ]
}
