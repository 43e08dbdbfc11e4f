#!/usr/bin/env bash
# After the end-to-end test, whatever happened to it (a Go timeout skips its deferred Destroy):
# destroy every stack whose working copy is left under WORKDIR, then list what is still tagged
# Test=terratest in the region and fail if anything is.
#
# usage: terratest_cleanup.sh WORKDIR          env: AWS_REGION
set -uo pipefail

workdir="${1:?usage: terratest_cleanup.sh WORKDIR}"
: "${AWS_REGION:?set AWS_REGION}"
status=0

for dir in "$workdir"/*/; do
  [ -f "$dir/terraform.tfstate" ] || continue
  name="$(basename "$dir")"
  if [ -z "$(terraform -chdir="$dir" state list 2>/dev/null)" ]; then
    continue
  fi
  echo "destroying what the test left of $name"
  terraform -chdir="$dir" init -input=false -no-color >/dev/null || status=1
  terraform -chdir="$dir" destroy -auto-approve -input=false -no-color \
    -var "name=$name" -var "aws_region=$AWS_REGION" -var force_destroy=true \
    -var dynamodb_deletion_protection=false || status=1
done

# KMS keys pending deletion keep their tags; they are scheduled for deletion, not leaked.
left="$(aws resourcegroupstaggingapi get-resources --region "$AWS_REGION" \
  --tag-filters Key=Test,Values=terratest \
  --query 'ResourceTagMappingList[].ResourceARN' --output text | tr '\t' '\n' | grep -v ':kms:' || true)"
if [ -n "$left" ]; then
  echo "::error::resources tagged Test=terratest are still there:"
  echo "$left"
  status=1
fi
exit "$status"
