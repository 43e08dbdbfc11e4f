#!/usr/bin/env bash
# Creates (or brings into line) the S3 bucket that holds the Terraform state: versioned, so a bad
# apply can be undone from an earlier state version; encrypted; private; TLS only. Terraform's S3
# backend locks with a lock file next to the state (use_lockfile), so no lock table is needed.
#
# usage: bootstrap_state.sh BUCKET REGION        (run by `make bootstrap`; idempotent)
set -euo pipefail

bucket="${1:?usage: bootstrap_state.sh BUCKET REGION}"
region="${2:?usage: bootstrap_state.sh BUCKET REGION}"

if aws s3api head-bucket --bucket "$bucket" --region "$region" >/dev/null 2>&1; then
  echo "state bucket $bucket exists"
elif [ "$region" = "us-east-1" ]; then
  # us-east-1 is the one region that rejects an explicit LocationConstraint.
  aws s3api create-bucket --bucket "$bucket" --region "$region" >/dev/null
  echo "state bucket $bucket created"
else
  aws s3api create-bucket --bucket "$bucket" --region "$region" \
    --create-bucket-configuration "LocationConstraint=$region" >/dev/null
  echo "state bucket $bucket created"
fi

aws s3api put-bucket-versioning --bucket "$bucket" --region "$region" \
  --versioning-configuration Status=Enabled
aws s3api put-bucket-encryption --bucket "$bucket" --region "$region" \
  --server-side-encryption-configuration \
  '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms"},"BucketKeyEnabled":true}]}'
aws s3api put-public-access-block --bucket "$bucket" --region "$region" \
  --public-access-block-configuration \
  BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
aws s3api put-bucket-ownership-controls --bucket "$bucket" --region "$region" \
  --ownership-controls 'Rules=[{ObjectOwnership=BucketOwnerEnforced}]'
partition="$(aws sts get-caller-identity --region "$region" --query Arn --output text | cut -d: -f2)"
aws s3api put-bucket-policy --bucket "$bucket" --region "$region" --policy "$(cat <<JSON
{"Version":"2012-10-17","Statement":[{"Sid":"TlsOnly","Effect":"Deny","Principal":"*","Action":"s3:*",
"Resource":["arn:${partition}:s3:::${bucket}","arn:${partition}:s3:::${bucket}/*"],
"Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}
JSON
)"
echo "state bucket $bucket: versioned, KMS-encrypted, private, TLS only"
