# The topic the trainer publishes run summaries and failures to (SNS_TOPIC_ARN). Publishing is
# granted to the Lambdas' roles, scoped to this topic's ARN (functions module).

resource "aws_sns_topic" "this" {
  name              = var.name
  kms_master_key_id = var.kms_key_arn

  tags = var.tags
}

resource "aws_sns_topic_subscription" "this" {
  count = var.email == null ? 0 : 1

  topic_arn = aws_sns_topic.this.arn
  protocol  = "email"
  endpoint  = var.email
}
