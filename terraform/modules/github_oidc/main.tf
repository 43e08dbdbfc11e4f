# GitHub Actions -> AWS without stored keys: the GitHub OIDC identity provider and three roles that
# only workflows of ONE repository can assume, each from one kind of job:
#
#   plan role    sub = repo:<owner/name>:environment:<plan env>   read-only: describe the stack,
#                                                                   read the state (see below)
#   deploy role  sub = repo:<owner/name>:ref:refs/heads/main        push to this ECR repository,
#                                                                   update the code of these functions
#   release      sub = repo:<owner/name>:ref:refs/tags/v*           (optional, allow_tag_pushes) push
#                                                                   to this ECR repository only
#   apply role   sub = repo:<owner/name>:environment:<apply env>  terraform apply of this stack
#   terratest    sub = repo:<owner/name>:environment:<tt env>     (optional) the end-to-end test's
#                                                                   stacks only (<terratest_name_prefix>-*)
#
# A plan reads the state and runs the pull request's own scripts and providers with the plan role.
# The stack holds no secret (the cache authenticates its clients with IAM), but the state describes
# every resource. A pull request from a branch of the same repository runs the workflow file of that
# branch, so the role is not tied to pull_request events but to an environment: GitHub hands out
# the environment's token only after one of its required reviewers approves the job.

locals {
  oidc_host         = "token.actions.githubusercontent.com"
  oidc_provider_arn = var.create_oidc_provider ? aws_iam_openid_connect_provider.this[0].arn : data.aws_iam_openid_connect_provider.this[0].arn

  plan_subjects  = ["repo:${var.github_repository}:environment:${var.plan_environment}"]
  apply_subjects = ["repo:${var.github_repository}:environment:${var.apply_environment}"]
  # The end-to-end test deploys whole stacks too, from its own environment, with a role of its own
  # (terratest) that reaches only the test's stacks (<terratest_name_prefix>-*).
  terratest_subjects = var.terratest_environment == null ? [] : ["repo:${var.github_repository}:environment:${var.terratest_environment}"]
  deploy_subjects    = ["repo:${var.github_repository}:ref:refs/heads/main"]
  # A release tag can be pushed on any commit, reviewed or not: its role pushes images and nothing
  # else (no UpdateFunctionCode), so a tag never changes what the functions run.
  release_subjects = ["repo:${var.github_repository}:ref:refs/tags/v*"]

  partition = data.aws_partition.current.partition
}

data "aws_partition" "current" {}

# ---- identity provider ----------------------------------------------------------------------------

resource "aws_iam_openid_connect_provider" "this" {
  count = var.create_oidc_provider ? 1 : 0

  url            = "https://${local.oidc_host}"
  client_id_list = ["sts.amazonaws.com"]
  # AWS validates GitHub's certificate against its own trusted CAs; the thumbprints are kept for
  # providers created before that change (GitHub's two published intermediate thumbprints).
  thumbprint_list = [
    "6938fd4d98bab03faadb97b34396831e3780aea1",
    "1c58a3a8518e8759bf075b76b750d4f2df264fcd",
  ]

  tags = var.tags
}

data "aws_iam_openid_connect_provider" "this" {
  count = var.create_oidc_provider ? 0 : 1

  url = "https://${local.oidc_host}"
}
