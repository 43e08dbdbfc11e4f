"""Creates the AWS resources the handlers need in an emulator (moto server): the same shapes the
Terraform stack creates for real."""

from __future__ import annotations

from trainer.aws import client

ACCOUNT = "123456789012"


def provision(
    prefix: str, redis_password: str, region: str = "us-east-1", create_functions: bool = False
) -> dict[str, str]:
    """Table, bucket, topic and Redis-token secret named after `prefix`; returns their environment."""
    table, bucket = f"{prefix}-runs", f"{prefix}-data"
    client("dynamodb").create_table(
        TableName=table,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client("s3").create_bucket(Bucket=bucket)
    topic_arn = client("sns").create_topic(Name=f"{prefix}-events")["TopicArn"]
    secret_arn = client("secretsmanager").create_secret(Name=f"{prefix}-redis-auth", SecretString=redis_password)["ARN"]
    trainer_arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{prefix}-trainer"
    launch_arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{prefix}-launch"
    if create_functions:
        iam = client("iam")
        role = iam.create_role(
            RoleName=f"{prefix}-role",
            AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
            '"Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}',
        )["Role"]["Arn"]
        lam = client("lambda")
        for name, handler in (
            (f"{prefix}-trainer", "trainer.handlers.trainer.handler"),
            (f"{prefix}-launch", "trainer.handlers.launch.handler"),
        ):
            lam.create_function(
                FunctionName=name,
                Role=role,
                PackageType="Image",
                Code={"ImageUri": f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{prefix}:latest"},
                ImageConfig={"Command": [handler]},
            )
    return {
        "TABLE_NAME": table,
        "MODEL_BUCKET": bucket,
        "SNS_TOPIC_ARN": topic_arn,
        "REDIS_AUTH_SECRET_ARN": secret_arn,
        "TRAINER_FUNCTION_ARN": trainer_arn,
        "LAUNCH_FUNCTION_ARN": launch_arn,
    }
