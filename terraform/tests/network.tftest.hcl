# The network module: private subnets only, endpoints instead of a NAT gateway, Redis reachable on
# 6379 only from the Lambdas' security group (original notes, General Notes items 4 and 5).

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name               = "lnn"
  availability_zones = ["us-east-1a", "us-east-1b"]
  redis_port         = 6379
  kms_key_arn        = "arn:aws:kms:us-east-1:123456789012:key/11111111-1111-1111-1111-111111111111"
  endpoint_resources = {
    s3       = ["arn:aws:s3:::lnn-bucket", "arn:aws:s3:::lnn-bucket/*"]
    dynamodb = ["arn:aws:dynamodb:us-east-1:123456789012:table/lnn-runs"]
    lambda   = ["arn:aws:lambda:us-east-1:123456789012:function:lnn-trainer"]
    sns      = ["arn:aws:sns:us-east-1:123456789012:lnn-runs"]
  }
}

# Least-privilege network: every endpoint has a policy naming the stack's resources only, for this
# account's principals; the flow-log role's trust names this account's flow logs.
run "every_endpoint_has_a_policy_naming_the_stacks_resources" {
  command = plan

  module {
    source = "./modules/network"
  }

  assert {
    condition     = alltrue([for e in merge(aws_vpc_endpoint.gateway, aws_vpc_endpoint.interface) : e.policy != null]) && length(merge(aws_vpc_endpoint.gateway, aws_vpc_endpoint.interface)) == 4
    error_message = "every VPC endpoint must have a policy"
  }

  assert {
    condition = alltrue([for service, document in data.aws_iam_policy_document.endpoint : alltrue([
      for s in document.statement : toset(s.resources) == toset(var.endpoint_resources[service]) && anytrue([for c in s.condition : c.variable == "aws:PrincipalAccount" && toset(c.values) == toset(["123456789012"])])
    ])])
    error_message = "each endpoint's policy must name the stack's resources, for this account's principals"
  }

  assert {
    condition     = toset(one(data.aws_iam_policy_document.endpoint["s3"].statement).actions) == toset(["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"])
    error_message = "the S3 gateway endpoint admits the functions' object calls only"
  }

  assert {
    condition     = toset([for c in one(data.aws_iam_policy_document.flow_logs_assume.statement).condition : c.variable]) == toset(["aws:SourceAccount", "aws:SourceArn"])
    error_message = "the flow-log role's trust must carry the confused-deputy conditions"
  }
}

run "note4_6379_admitted_only_from_the_lambdas_group" {
  module {
    source = "./modules/network"
  }

  assert {
    condition = (
      aws_vpc_security_group_ingress_rule.redis_from_lambda.security_group_id == aws_security_group.redis.id &&
      aws_vpc_security_group_ingress_rule.redis_from_lambda.ip_protocol == "tcp" &&
      aws_vpc_security_group_ingress_rule.redis_from_lambda.from_port == 6379 &&
      aws_vpc_security_group_ingress_rule.redis_from_lambda.to_port == 6379
    )
    error_message = "the Redis group must admit TCP 6379 and nothing else"
  }

  assert {
    condition = (
      aws_vpc_security_group_ingress_rule.redis_from_lambda.referenced_security_group_id == aws_security_group.lambda.id &&
      aws_vpc_security_group_ingress_rule.redis_from_lambda.cidr_ipv4 == null &&
      aws_vpc_security_group_ingress_rule.redis_from_lambda.cidr_ipv6 == null &&
      aws_vpc_security_group_ingress_rule.redis_from_lambda.prefix_list_id == null
    )
    error_message = "6379 must be admitted from the Lambdas' security group only, never from a CIDR"
  }

  assert {
    condition     = aws_security_group.redis.vpc_id == aws_vpc.this.id && aws_security_group.lambda.vpc_id == aws_vpc.this.id
    error_message = "both groups must live in the stack's VPC (port 6379 open within the VPC only)"
  }

  assert {
    condition     = aws_vpc_security_group_egress_rule.lambda_to_redis.referenced_security_group_id == aws_security_group.redis.id && aws_vpc_security_group_egress_rule.lambda_to_redis.from_port == 6379
    error_message = "the Lambdas' group must be allowed out to Redis on 6379"
  }
}

run "default_security_group_closed" {
  module {
    source = "./modules/network"
  }

  assert {
    condition     = length(aws_default_security_group.this.ingress) == 0 && length(aws_default_security_group.this.egress) == 0
    error_message = "the VPC's default security group must admit and emit nothing"
  }
}

run "private_subnets_in_two_zones_and_endpoints_instead_of_nat" {
  module {
    source = "./modules/network"
  }

  assert {
    condition     = length(aws_subnet.this) == 2 && length(distinct([for s in aws_subnet.this : s.availability_zone])) == 2
    error_message = "two private subnets in two availability zones"
  }

  assert {
    condition     = alltrue([for s in aws_subnet.this : !s.map_public_ip_on_launch])
    error_message = "subnets must not hand out public IPs"
  }

  assert {
    condition     = toset(keys(aws_vpc_endpoint.gateway)) == toset(["s3", "dynamodb"]) && alltrue([for e in aws_vpc_endpoint.gateway : e.vpc_endpoint_type == "Gateway"])
    error_message = "S3 and DynamoDB must be reached through gateway endpoints"
  }

  assert {
    condition     = toset(keys(aws_vpc_endpoint.interface)) == toset(["lambda", "sns"]) && alltrue([for e in aws_vpc_endpoint.interface : e.vpc_endpoint_type == "Interface" && e.private_dns_enabled])
    error_message = "Lambda and SNS must be reached through interface endpoints with private DNS; no Secrets Manager endpoint (the stack holds no secret)"
  }

  assert {
    condition     = alltrue([for e in aws_vpc_endpoint.interface : e.service_name == "com.amazonaws.us-east-1.${e.tags["Name"] == "lnn-lambda" ? "lambda" : "sns"}"])
    error_message = "interface endpoints must name the region's services"
  }

  assert {
    condition     = length(aws_route_table.this.route) == 0
    error_message = "the private route table must have no default route (no NAT, no internet gateway)"
  }
}

run "flow_logs_keep_7_days" {
  module {
    source = "./modules/network"
  }

  assert {
    condition     = aws_cloudwatch_log_group.this[0].retention_in_days == 7 && aws_flow_log.this[0].traffic_type == "ALL"
    error_message = "VPC flow logs must go to a log group with 7-day retention"
  }
}

run "availability_zones_default_to_the_regions_first_two" {
  command = plan

  module {
    source = "./modules/network"
  }

  variables {
    availability_zones = []
  }

  assert {
    condition     = [for s in aws_subnet.this : s.availability_zone] == ["us-east-1a", "us-east-1b"]
    error_message = "without availability_zones the first two zones of the region are used"
  }

  assert {
    condition     = one(data.aws_availability_zones.available[0].filter).name == "zone-type" && one(data.aws_availability_zones.available[0].filter).values == toset(["availability-zone"])
    error_message = "only standard zones: an opted-in Local Zone (us-east-1-bos-1a sorts first) must never be picked"
  }
}

run "endpoints_in_one_zone_when_asked" {
  command = plan

  module {
    source = "./modules/network"
  }

  variables {
    endpoint_zone_count = 1
  }

  assert {
    condition     = alltrue([for e in aws_vpc_endpoint.interface : length(e.subnet_ids) == 1])
    error_message = "endpoint_zone_count = 1 puts each interface endpoint in one subnet"
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
    source = "./modules/network"
  }

  variables {
    redis_port  = 80
    kms_key_arn = "not-an-arn"
  }

  expect_failures = [
    var.redis_port,
    var.kms_key_arn,
  ]
}
