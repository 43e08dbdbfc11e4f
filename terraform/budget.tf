# Optional: a monthly AWS Budgets cost alarm to the stack's topic (monthly_budget_usd). The ceilings
# at launch bound one request; the budget tells the team when everything together costs too much.
# Budgets publishes to an encrypted topic only if the topic policy and the key policy (main.tf) let
# budgets.amazonaws.com do so, for this account's budgets only (aws:SourceAccount, aws:SourceArn).

locals {
  budget_name = "${var.name}-monthly"
  budget_arn  = "arn:${local.partition}:budgets::${local.account_id}:budget/${local.budget_name}"
}

resource "aws_budgets_budget" "this" {
  count = var.monthly_budget_usd == null ? 0 : 1

  name         = local.budget_name
  budget_type  = "COST"
  limit_amount = format("%.2f", var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  # The stack's resources only: everything carries the Deployment tag (default_tags). Cost
  # allocation tags must be activated once in the Billing console for the filter to see them.
  cost_filter {
    name   = "TagKeyValue"
    values = [join("$", ["user:Deployment", var.name])]
  }

  dynamic "notification" {
    for_each = { ACTUAL = 80, FORECASTED = 100 }
    content {
      comparison_operator       = "GREATER_THAN"
      notification_type         = notification.key
      threshold                 = notification.value
      threshold_type            = "PERCENTAGE"
      subscriber_sns_topic_arns = [module.notifications.topic_arn]
    }
  }

  tags = local.tags
}

data "aws_iam_policy_document" "topic" {
  count = var.monthly_budget_usd == null ? 0 : 1

  statement {
    sid       = "BudgetsPublishesThisAccountsBudget"
    actions   = ["sns:Publish"]
    resources = [module.notifications.topic_arn]

    principals {
      type        = "Service"
      identifiers = ["budgets.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.budget_arn]
    }
  }
}

resource "aws_sns_topic_policy" "this" {
  count = var.monthly_budget_usd == null ? 0 : 1

  arn    = module.notifications.topic_arn
  policy = data.aws_iam_policy_document.topic[0].json
}
