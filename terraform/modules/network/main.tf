# Private-only network: no internet gateway, no NAT gateway. The in-VPC Lambdas reach AWS through
# VPC endpoints (gateway endpoints for S3 and DynamoDB, interface endpoints for Lambda and SNS),
# and Redis admits TCP 6379 only from the Lambdas' security group.

data "aws_region" "current" {}

# Standard zones only: an account that opted in to a Local Zone sees it in the same list, and its
# name can sort first (us-east-1-bos-1a < us-east-1a), but interface endpoints and cache nodes may
# not exist there.
data "aws_availability_zones" "available" {
  count = length(var.availability_zones) == 0 ? 1 : 0
  state = "available"

  filter {
    name   = "zone-type"
    values = ["availability-zone"]
  }

  #checkov:skip=CKV_AWS_394:Only the first two of the provider's name-sorted list are used (slice below), so a zone AWS adds later cannot move the subnets; set availability_zones to pin them explicitly.
}

locals {
  azs = length(var.availability_zones) == 0 ? slice(data.aws_availability_zones.available[0].names, 0, 2) : var.availability_zones

  gateway_services   = toset(["s3", "dynamodb"])
  interface_services = toset(["lambda", "sns"])

  # The calls the functions make through each endpoint (trainer/aws.py's adapters), and nothing else:
  # without a policy, the S3 gateway endpoint reaches any bucket of any account.
  endpoint_actions = {
    s3       = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"]
    dynamodb = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:BatchWriteItem"]
    lambda   = ["lambda:InvokeFunction"]
    sns      = ["sns:Publish"]
  }
}

data "aws_caller_identity" "current" {}

# One policy per endpoint: the stack's resources, by this account's principals only.
data "aws_iam_policy_document" "endpoint" {
  for_each = local.endpoint_actions

  statement {
    sid       = "TheStacksResourcesOnly"
    actions   = each.value
    resources = var.endpoint_resources[each.key]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true # required by the interface endpoints' private DNS names

  tags = merge(var.tags, { Name = var.name })
}

# The default security group admits nothing and lets nothing out; every resource uses its own.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name}-default-closed" })
}

resource "aws_subnet" "this" {
  count = 2

  vpc_id                  = aws_vpc.this.id
  cidr_block              = var.private_subnet_cidrs[count.index]
  availability_zone       = local.azs[count.index]
  map_public_ip_on_launch = false

  tags = merge(var.tags, { Name = "${var.name}-private-${local.azs[count.index]}", Tier = "private" })
}

# One route table without any default route: the only paths out are the gateway endpoints.
resource "aws_route_table" "this" {
  vpc_id = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name}-private" })
}

resource "aws_route_table_association" "this" {
  count = 2

  subnet_id      = aws_subnet.this[count.index].id
  route_table_id = aws_route_table.this.id
}

resource "aws_vpc_endpoint" "gateway" {
  for_each = local.gateway_services

  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.${each.key}"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.this.id]
  policy            = data.aws_iam_policy_document.endpoint[each.key].json

  tags = merge(var.tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.interface_services

  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${data.aws_region.current.name}.${each.key}"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  policy              = data.aws_iam_policy_document.endpoint[each.key].json
  # Each zone an endpoint is in costs an hourly fee; the dev profile keeps one (the other subnet
  # reaches it across zones).
  subnet_ids         = slice(aws_subnet.this[*].id, 0, var.endpoint_zone_count)
  security_group_ids = [aws_security_group.endpoints.id]

  tags = merge(var.tags, { Name = "${var.name}-${each.key}" })
}

# ---- security groups --------------------------------------------------------------------------

resource "aws_security_group" "lambda" {
  name        = "${var.name}-lambda"
  description = "LNN Lambdas: egress to Redis and to the VPC endpoints only"
  vpc_id      = aws_vpc.this.id

  #checkov:skip=CKV2_AWS_5:Attached outside this module: the root passes it to the functions module's vpc_config (tested in tests/functions.tftest.hcl and by the apply cycle).

  tags = merge(var.tags, { Name = "${var.name}-lambda" })
}

resource "aws_security_group" "redis" {
  name        = "${var.name}-redis"
  description = "LNN Redis: TCP ${var.redis_port} from the Lambdas' security group only"
  vpc_id      = aws_vpc.this.id

  #checkov:skip=CKV2_AWS_5:Attached outside this module: the root passes it to the cache module's replication group (tested in tests/cache.tftest.hcl and by the apply cycle).

  tags = merge(var.tags, { Name = "${var.name}-redis" })
}

resource "aws_security_group" "endpoints" {
  name        = "${var.name}-endpoints"
  description = "LNN interface endpoints: HTTPS from the Lambdas' security group only"
  vpc_id      = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name}-endpoints" })
}

# Redis is reachable from the Lambdas' group only, never from a CIDR range.
resource "aws_vpc_security_group_ingress_rule" "redis_from_lambda" {
  security_group_id            = aws_security_group.redis.id
  description                  = "Redis from the LNN Lambdas"
  ip_protocol                  = "tcp"
  from_port                    = var.redis_port
  to_port                      = var.redis_port
  referenced_security_group_id = aws_security_group.lambda.id

  tags = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_lambda" {
  security_group_id            = aws_security_group.endpoints.id
  description                  = "HTTPS to the interface endpoints from the LNN Lambdas"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.lambda.id

  tags = var.tags
}

resource "aws_vpc_security_group_egress_rule" "lambda_to_redis" {
  security_group_id            = aws_security_group.lambda.id
  description                  = "Redis"
  ip_protocol                  = "tcp"
  from_port                    = var.redis_port
  to_port                      = var.redis_port
  referenced_security_group_id = aws_security_group.redis.id

  tags = var.tags
}

resource "aws_vpc_security_group_egress_rule" "lambda_to_endpoints" {
  security_group_id            = aws_security_group.lambda.id
  description                  = "HTTPS to the interface endpoints (Lambda, SNS)"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.endpoints.id

  tags = var.tags
}

resource "aws_vpc_security_group_egress_rule" "lambda_to_gateway_endpoints" {
  for_each = local.gateway_services

  security_group_id = aws_security_group.lambda.id
  description       = "HTTPS to ${each.key} through its gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.gateway[each.key].prefix_list_id

  tags = var.tags
}

# ---- flow logs --------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "this" {
  count = var.enable_flow_logs ? 1 : 0

  name              = "/aws/vpc/${var.name}/flow-logs"
  retention_in_days = var.log_retention_in_days
  kms_key_id        = var.kms_key_arn

  #checkov:skip=CKV_AWS_338:Flow logs are for recent incidents; 7 days by default keeps the cost down, and retention is a variable.

  tags = var.tags
}

resource "aws_flow_log" "this" {
  count = var.enable_flow_logs ? 1 : 0

  vpc_id               = aws_vpc.this.id
  traffic_type         = "ALL"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.this[0].arn
  iam_role_arn         = aws_iam_role.this[0].arn

  tags = merge(var.tags, { Name = "${var.name}-flow-logs" })
}
