#!/usr/bin/env bash
# terraform init against the S3 state backend, then apply. The backend's lock file (use_lockfile)
# keeps two applies from writing the state at once. Run by the terraform workflow's apply job.
#
# usage: apply.sh [terraform apply arguments...]     env: TF_STATE_BUCKET, AWS_REGION
set -euo pipefail

: "${TF_STATE_BUCKET:?set TF_STATE_BUCKET (the bucket made by make bootstrap)}"
: "${AWS_REGION:?set AWS_REGION}"
terraform init -input=false -no-color \
  -backend-config="bucket=${TF_STATE_BUCKET}" -backend-config="region=${AWS_REGION}"
terraform apply -input=false -no-color -auto-approve "$@"
