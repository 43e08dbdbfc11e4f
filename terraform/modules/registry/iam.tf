# Lambda pulls a container image with the repository's policy, not the function's role. Lambda
# adds this statement itself on CreateFunction -- but only when the applying identity may set
# repository policies, and then outside Terraform. Managed here instead, limited to the stack's
# functions; their ARNs are built from names, so the policy can exist before the functions do.

data "aws_iam_policy_document" "lambda_pull" {
  count = length(var.function_arns) == 0 ? 0 : 1

  statement {
    sid     = "LambdaPullsForTheseFunctions"
    actions = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringLike"
      variable = "aws:sourceArn"
      values   = var.function_arns
    }
  }
}

resource "aws_ecr_repository_policy" "this" {
  count = length(var.function_arns) == 0 ? 0 : 1

  repository = aws_ecr_repository.this.name
  policy     = data.aws_iam_policy_document.lambda_pull[0].json
}
