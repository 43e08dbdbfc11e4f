# The CI roles (modules/github_oidc): the apply and terratest roles cannot escalate. Evaluated on the
# policy documents Terraform builds (mocked provider, resolved names), not on the source text.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name_prefix              = "lnn"
  github_repository        = "example-org/lnn"
  ecr_repository_arn       = "arn:aws:ecr:us-east-1:123456789012:repository/lnn"
  function_arns            = ["arn:aws:lambda:us-east-1:123456789012:function:lnn-launch", "arn:aws:lambda:us-east-1:123456789012:function:lnn-trainer"]
  stack_bucket_arn         = "arn:aws:s3:::lnn-123456789012-us-east-1"
  state_bucket_arn         = "arn:aws:s3:::lnn-tfstate-123456789012"
  permissions_boundary_arn = "arn:aws:iam::123456789012:policy/lnn/lnn/lnn-boundary"
  terratest_environment    = "terratest"
}

# Each role gets its real ARN (the mock would give every role the same one).
override_resource {
  target = aws_iam_role.plan
  values = { arn = "arn:aws:iam::123456789012:role/lnn-github-plan" }
}

override_resource {
  target = aws_iam_role.deploy
  values = { arn = "arn:aws:iam::123456789012:role/lnn-github-deploy" }
}

override_resource {
  target = aws_iam_role.apply
  values = { arn = "arn:aws:iam::123456789012:role/lnn-github-apply" }
}

override_resource {
  target = aws_iam_role.terratest
  values = { arn = "arn:aws:iam::123456789012:role/lnn-github-terratest" }
}

override_data {
  target = data.aws_iam_openid_connect_provider.this
  values = { arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com" }
}

override_resource {
  target = aws_iam_openid_connect_provider.this
  values = { arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com" }
}

run "ci_roles_cannot_escalate" {
  module {
    source = "./modules/github_oidc"
  }

  # No Allow of the apply or terratest role lets it write a CI role, the OIDC provider or the
  # boundary: a statement whose resources match one of their ARNs (an IAM resource pattern is a
  # glob: * and ? become regular-expression wildcards) grants IAM reads only (iam:Get*, iam:List*).
  assert {
    condition = alltrue(flatten([
      for document in [data.aws_iam_policy_document.apply, data.aws_iam_policy_document.terratest[0]] : [
        for s in document.statement : alltrue([
          for a in(s.actions == null ? [] : tolist(s.actions)) : !(a == "*" || startswith(a, "iam:")) || startswith(a, "iam:Get") || startswith(a, "iam:List")
        ])
        if coalesce(s.effect, "Allow") == "Allow" && anytrue(flatten([
          for pattern in s.resources : [
            for target in local.ci_arns : can(regex("^${replace(replace(replace(pattern, ".", "\\."), "*", ".*"), "?", ".")}$", target))
          ]
        ]))
      ]
    ]))
    error_message = "the apply or terratest role may write a CI role (its own ARN), the OIDC provider or the boundary"
  }

  assert {
    condition = alltrue([
      for document in [data.aws_iam_policy_document.apply, data.aws_iam_policy_document.terratest[0]] :
      length([
        for s in document.statement : s
        if s.effect == "Deny" && s.not_actions == toset(["iam:Get*", "iam:List*"]) && toset(s.resources) == toset([
          "arn:aws:iam::123456789012:role/lnn-github-plan",
          "arn:aws:iam::123456789012:role/lnn-github-deploy",
          "arn:aws:iam::123456789012:role/lnn-github-apply",
          "arn:aws:iam::123456789012:role/lnn-github-terratest",
          "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com",
          "arn:aws:iam::123456789012:policy/lnn/lnn/lnn-boundary",
        ])
      ]) == 1
    ])
    error_message = "both roles must deny every write on the CI roles (their own ARNs), the OIDC provider and the boundary"
  }

  # Every IAM write AWS evaluates iam:PermissionsBoundary for carries the boundary condition; the
  # role writes it does not evaluate it for are confined to the stack's tagged roles.
  assert {
    condition = alltrue(flatten([
      for document in [data.aws_iam_policy_document.apply, data.aws_iam_policy_document.terratest[0]] : [
        for s in document.statement : (
          length(setintersection(s.actions == null ? [] : tolist(s.actions), ["iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary"])) == 0 ||
          anytrue([for c in s.condition : c.test == "StringEquals" && c.variable == "iam:PermissionsBoundary" && toset(c.values) == toset(["arn:aws:iam::123456789012:policy/lnn/lnn/lnn-boundary"])])
        ) if coalesce(s.effect, "Allow") == "Allow"
      ]
    ]))
    error_message = "an IAM write that supports iam:PermissionsBoundary is allowed without the stack's boundary"
  }

  assert {
    condition = alltrue(flatten([
      for document in [data.aws_iam_policy_document.apply, data.aws_iam_policy_document.terratest[0]] : [
        for s in document.statement : (
          alltrue([for a in(s.actions == null ? [] : tolist(s.actions)) : contains(["iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:PutRolePermissionsBoundary", "iam:DeleteRole", "iam:UpdateRole", "iam:UpdateRoleDescription", "iam:UpdateAssumeRolePolicy", "iam:TagRole", "iam:UntagRole", "iam:PassRole", "iam:CreateServiceLinkedRole", "iam:Get*", "iam:List*"], a) if startswith(a, "iam:")]) &&
          (length([for a in(s.actions == null ? [] : tolist(s.actions)) : a if contains(["iam:DeleteRole", "iam:UpdateRole", "iam:UpdateRoleDescription", "iam:UpdateAssumeRolePolicy", "iam:TagRole", "iam:UntagRole"], a)]) == 0 ||
          anytrue([for c in s.condition : c.variable == "aws:ResourceTag/Deployment"]))
        ) if coalesce(s.effect, "Allow") == "Allow"
      ]
    ]))
    error_message = "an IAM write outside the known role writes, or a role write without the Deployment tag condition"
  }

  assert {
    condition = alltrue(flatten([
      for document in [data.aws_iam_policy_document.apply, data.aws_iam_policy_document.terratest[0]] : [
        for s in document.statement : anytrue([for c in s.condition : c.variable == "iam:PassedToService" && toset(c.values) == toset(["lambda.amazonaws.com", "vpc-flow-logs.amazonaws.com"])])
        if coalesce(s.effect, "Allow") == "Allow" && contains(s.actions == null ? [] : tolist(s.actions), "iam:PassRole")
      ]
    ]))
    error_message = "iam:PassRole must be conditioned on iam:PassedToService (Lambda, VPC Flow Logs)"
  }

  assert {
    condition = alltrue(flatten([
      for s in data.aws_iam_policy_document.apply.statement : [
        for r in s.resources : r == "*" || startswith(r, "arn:aws:iam::123456789012:role/lnn/lnn/") || startswith(r, "arn:aws:iam::123456789012:role/aws-service-role/") || startswith(r, "arn:aws:s3:::lnn-") || can(regex(":(lnn|lnn-\\*)$|[:/](lnn|lnn-\\*)(/\\*|:\\*)?$|/aws/(lambda|vpc)/(lnn|lnn-\\*)", r))
      ] if coalesce(s.effect, "Allow") == "Allow" && anytrue([for a in(s.actions == null ? [] : tolist(s.actions)) : startswith(a, "iam:") && !startswith(a, "iam:Get") && !startswith(a, "iam:List")])
    ]))
    error_message = "the apply role's role writes must be on the stack's role path (/lnn/<name>/)"
  }

  # KMS, S3, Secrets Manager and Lambda: every write names the stack's resources or its tag (and
  # no Secrets Manager action is left at all: the stack holds no secret).
  assert {
    condition = alltrue(flatten([
      for document in [data.aws_iam_policy_document.apply, data.aws_iam_policy_document.terratest[0]] : [
        for s in document.statement : alltrue([
          for a in(s.actions == null ? [] : tolist(s.actions)) : (
            !contains(["kms", "s3", "secretsmanager", "lambda"], split(":", a)[0]) ||
            can(regex("^[a-z]+:(Describe|List|Get)", a)) ||
            anytrue([for c in s.condition : c.variable == "aws:RequestTag/Deployment"])
          )
        ]) if coalesce(s.effect, "Allow") == "Allow" && contains(s.resources, "*")
      ]
    ]))
    error_message = "a KMS, S3, Secrets Manager or Lambda write on Resource \"*\""
  }

  # Every decrypt grant of the CI roles goes through a service (kms:ViaService): never a direct decrypt.
  assert {
    condition = alltrue(flatten([
      for document in [data.aws_iam_policy_document.plan, data.aws_iam_policy_document.apply, data.aws_iam_policy_document.terratest[0]] : [
        for s in document.statement : anytrue([for c in s.condition : c.variable == "kms:ViaService"])
        if coalesce(s.effect, "Allow") == "Allow" && anytrue([for a in(s.actions == null ? [] : tolist(s.actions)) : contains(["kms:Decrypt", "kms:*", "*"], a)])
      ]
    ]))
    error_message = "a decrypt grant without kms:ViaService"
  }

  # The terratest role reaches the test's stacks (lnn-tt-*) only.
  assert {
    condition = alltrue(flatten([
      for s in data.aws_iam_policy_document.terratest[0].statement : [
        for r in s.resources : r == "*" || strcontains(r, "lnn-tt-") || startswith(r, "arn:aws:iam::123456789012:role/aws-service-role/") ||
        (endswith(r, ":key/*") && anytrue([for c in s.condition : c.variable == "aws:ResourceTag/Deployment" && toset(c.values) == toset(["lnn-tt-*"])]))
      ] if coalesce(s.effect, "Allow") == "Allow"
    ]))
    error_message = "the terratest role must reach lnn-tt-* resources only"
  }
}

run "terratest_has_its_own_role" {
  command = plan

  module {
    source = "./modules/github_oidc"
  }

  assert {
    condition     = toset(one([for c in one(data.aws_iam_policy_document.apply_trust.statement).condition : c.values if endswith(c.variable, ":sub")])) == toset(["repo:example-org/lnn:environment:production"])
    error_message = "the terratest environment's subject must not be on the apply role"
  }

  assert {
    condition     = toset(one([for c in one(data.aws_iam_policy_document.terratest_trust[0].statement).condition : c.values if endswith(c.variable, ":sub")])) == toset(["repo:example-org/lnn:environment:terratest"])
    error_message = "the terratest role trusts the terratest environment only"
  }
}

# A release tag can sit on any commit: its role pushes images and cannot touch the functions, and the
# deploy role (UpdateFunctionCode) trusts main only.
run "tags_get_a_push_only_role" {
  command = plan

  module {
    source = "./modules/github_oidc"
  }

  variables {
    allow_tag_pushes = true
  }

  assert {
    condition     = toset(one([for c in one(data.aws_iam_policy_document.deploy_trust.statement).condition : c.values if endswith(c.variable, ":sub")])) == toset(["repo:example-org/lnn:ref:refs/heads/main"])
    error_message = "the deploy role must trust main only, never a tag"
  }

  assert {
    condition     = toset(one([for c in one(data.aws_iam_policy_document.release_trust[0].statement).condition : c.values if endswith(c.variable, ":sub")])) == toset(["repo:example-org/lnn:ref:refs/tags/v*"])
    error_message = "the release role trusts release tags"
  }

  assert {
    condition = alltrue(flatten([
      for s in data.aws_iam_policy_document.release.statement : [
        for a in s.actions : startswith(a, "ecr:") || a == "lambda:GetFunctionConfiguration"
      ]
    ]))
    error_message = "the release role may push images and read the functions' configuration only (no UpdateFunctionCode)"
  }
}

run "no_release_role_without_tag_pushes" {
  command = plan

  module {
    source = "./modules/github_oidc"
  }

  assert {
    condition     = length(aws_iam_role.release) == 0 && output.release_role_arn == null
    error_message = "no release role unless allow_tag_pushes"
  }
}
