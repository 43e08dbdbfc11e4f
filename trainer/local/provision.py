"""Creates the AWS resources the handlers need in an emulator (moto server): the same shapes the
Terraform stack creates for real."""

from __future__ import annotations

from trainer.aws import client
from trainer.local.fleet import PINNED_X86_64

ACCOUNT = "123456789012"
# The commands the functions send, and nothing that could flush, list or reconfigure the cache
# (the Terraform cache module gives its IAM user the same access string).
FUNCTIONS_ACCESS_STRING = "on ~* -@all +@read +@write +@scripting +@transaction +@connection -@dangerous"
# ElastiCache's mandatory `default` user of a user group, disabled: nobody authenticates as it.
DISABLED_DEFAULT_ACCESS_STRING = "off -@all"
VALKEY_PARAMETER_FAMILY = "valkey8"


def provision(prefix: str, region: str = "us-east-1", create_functions: bool = False) -> dict[str, str]:
    """Table, bucket and topic named after `prefix`; returns their environment."""
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
        "TRAINER_FUNCTION_ARN": trainer_arn,
        "LAUNCH_FUNCTION_ARN": launch_arn,
    }


HANDLERS = {"launch": "trainer.handlers.launch.handler", "trainer": "trainer.handlers.trainer.handler"}


def provision_stack(
    prefix: str,
    region: str = "us-east-1",
    trainer_timeout_s: int = 900,
    trainer_memory_mb: int = 10240,
    allow_recursion: bool = True,
    max_retry_attempts: int = 2,
) -> dict[str, str]:
    """The stack as the Terraform root module shapes it, created through the AWS APIs of the endpoint
    the environment points at (the local cloud): the Redis token in Secrets Manager and a TLS
    replication group with that token and a parameter group that never evicts (noeviction), whose
    primary endpoint goes into the functions' environment;
    the two functions (image, handler as the command) with their environment (the BLAS kernel
    pinned: trainer.local.fleet), timeout and memory;
    the trainer's async invoke config (retries, on-failure SQS queue) and recursion config.
    Returns the names a user exports (functions, table, bucket, topic, queue)."""
    env = provision(prefix, region=region)
    cache = client("elasticache")
    # The stack's own parameter group: ElastiCache's default one would evict keys with a TTL.
    cache.create_cache_parameter_group(
        CacheParameterGroupName=f"{prefix}-cache",
        CacheParameterGroupFamily=VALKEY_PARAMETER_FAMILY,
        Description="never evict",
    )
    cache.modify_cache_parameter_group(
        CacheParameterGroupName=f"{prefix}-cache",
        ParameterNameValues=[{"ParameterName": "maxmemory-policy", "ParameterValue": "noeviction"}],
    )
    user_id = f"{prefix}-functions"
    cache.create_user(
        UserId=user_id,
        UserName=user_id,  # IAM authentication: the user's name is its id
        Engine="valkey",
        AccessString=FUNCTIONS_ACCESS_STRING,
        AuthenticationMode={"Type": "iam"},
    )
    cache.create_user(
        UserId=f"{prefix}-default",
        UserName="default",
        Engine="valkey",
        AccessString=DISABLED_DEFAULT_ACCESS_STRING,
        NoPasswordRequired=True,
    )
    cache.create_user_group(UserGroupId=f"{prefix}-cache", Engine="valkey", UserIds=[user_id, f"{prefix}-default"])
    group = cache.create_replication_group(
        ReplicationGroupId=f"{prefix}-cache",
        ReplicationGroupDescription="LNN tensors",
        Engine="valkey",
        CacheNodeType="cache.t4g.micro",
        CacheParameterGroupName=f"{prefix}-cache",
        NumCacheClusters=1,
        TransitEncryptionEnabled=True,
        AtRestEncryptionEnabled=True,
        UserGroupIds=[f"{prefix}-cache"],
    )["ReplicationGroup"]
    primary = group["NodeGroups"][0]["PrimaryEndpoint"]
    dlq = client("sqs").create_queue(QueueName=f"{prefix}-trainer-failures")["QueueUrl"]
    dlq_arn = client("sqs").get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    role = client("iam").create_role(
        RoleName=f"{prefix}-role",
        AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
        '"Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}',
    )["Role"]["Arn"]
    function_env = {
        **{k: env[k] for k in ("TABLE_NAME", "MODEL_BUCKET", "SNS_TOPIC_ARN")},
        "TRAINER_FUNCTION_ARN": env["TRAINER_FUNCTION_ARN"],
        "LAUNCH_FUNCTION_ARN": env["LAUNCH_FUNCTION_ARN"],
        "REDIS_HOST": primary["Address"],
        "REDIS_PORT": str(primary["Port"]),
        "REDIS_TLS": "true",
        "REDIS_USER_ID": user_id,
        "REDIS_REPLICATION_GROUP_ID": f"{prefix}-cache",
        "TRAINER_MEMORY_MB": str(trainer_memory_mb),
        "TRAINER_TIMEOUT_S": str(trainer_timeout_s),
        # One BLAS kernel and numpy's instruction sets on every host: the same bits wherever a
        # hop lands (as the Terraform functions module sets them).
        **PINNED_X86_64,
    }
    lam = client("lambda")
    for kind, timeout, memory in (("launch", 300, 2048), ("trainer", trainer_timeout_s, trainer_memory_mb)):
        lam.create_function(
            FunctionName=f"{prefix}-{kind}",
            Role=role,
            PackageType="Image",
            Code={"ImageUri": f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{prefix}:latest"},
            ImageConfig={"Command": [HANDLERS[kind]]},
            Timeout=timeout,
            MemorySize=memory,
            Environment={"Variables": function_env},
        )
    lam.put_function_event_invoke_config(
        FunctionName=f"{prefix}-trainer",
        MaximumRetryAttempts=max_retry_attempts,
        MaximumEventAgeInSeconds=3600,
        DestinationConfig={"OnFailure": {"Destination": dlq_arn}},
    )
    lam.put_function_recursion_config(
        FunctionName=f"{prefix}-trainer", RecursiveLoop="Allow" if allow_recursion else "Terminate"
    )
    return {
        **env,
        "LAUNCH_FUNCTION_NAME": f"{prefix}-launch",
        "TRAINER_FUNCTION_NAME": f"{prefix}-trainer",
        "REPLICATION_GROUP_ID": f"{prefix}-cache",
        "REDIS_USER_ID": user_id,
        "FAILURE_QUEUE_URL": dlq,
    }
