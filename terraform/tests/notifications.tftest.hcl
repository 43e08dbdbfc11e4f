# The notifications module: the encrypted topic and the optional e-mail subscription.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name        = "lnn-runs"
  kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-1111-1111-1111-111111111111"
}

run "encrypted_topic_without_subscription" {
  module {
    source = "./modules/notifications"
  }

  assert {
    condition     = aws_sns_topic.this.kms_master_key_id == var.kms_key_arn
    error_message = "the topic must be encrypted with the stack's key"
  }

  assert {
    condition     = length(aws_sns_topic_subscription.this) == 0
    error_message = "no subscription without an e-mail address"
  }
}

run "optional_email_subscription" {
  module {
    source = "./modules/notifications"
  }

  variables {
    email = "someone@example.com"
  }

  assert {
    condition     = length(aws_sns_topic_subscription.this) == 1 && aws_sns_topic_subscription.this[0].protocol == "email" && aws_sns_topic_subscription.this[0].endpoint == "someone@example.com"
    error_message = "an e-mail address adds an e-mail subscription"
  }
}

# ---- every validation rejects a bad value ----

run "rejects_bad_kms_key_arn" {
  command = plan

  module {
    source = "./modules/notifications"
  }

  variables {
    kms_key_arn = "alias/lnn"
  }

  expect_failures = [var.kms_key_arn]
}
