#!/usr/bin/env bash
# terraform init (S3 backend) and plan, leaving in OUTDIR: tfplan, plan.txt (the text plan, or the
# error), plan.json (`terraform show -json`, when the plan succeeded) and exitcode (0 no changes,
# 1 failed, 2 changes). Run in the configuration's directory by the terraform workflow and the tests.
#
# usage: plan.sh OUTDIR [terraform plan arguments...]
# env:   TF_STATE_BUCKET, AWS_REGION (the S3 backend: a plan against an empty local state would
#        show the whole stack as new)
set -uo pipefail

out="${1:?usage: plan.sh OUTDIR [plan arguments...]}"
shift
mkdir -p "$out"

if [ -z "${TF_STATE_BUCKET:-}" ] || [ -z "${AWS_REGION:-}" ]; then
  echo "plan.sh: set TF_STATE_BUCKET (the bucket made by make bootstrap) and AWS_REGION" | tee "$out/plan.txt" >&2
  echo 1 >"$out/exitcode"
  exit 1
fi
if ! terraform init -input=false -no-color \
  -backend-config="bucket=${TF_STATE_BUCKET}" -backend-config="region=${AWS_REGION}" >"$out/init.log" 2>&1; then
  cp "$out/init.log" "$out/plan.txt"
  echo 1 >"$out/exitcode"
  cat "$out/init.log" >&2
  exit 1
fi

# A plan changes nothing, so it takes no state lock (the read-only plan role could not write one).
terraform plan -input=false -no-color -lock=false -detailed-exitcode -out="$out/tfplan" "$@" >"$out/plan.log" 2>&1
code=$?
echo "$code" >"$out/exitcode"
if [ "$code" -eq 1 ]; then
  cp "$out/plan.log" "$out/plan.txt"
  tail -n 40 "$out/plan.log" >&2
  exit 1
fi
terraform show -no-color "$out/tfplan" >"$out/plan.txt"
terraform show -json "$out/tfplan" >"$out/plan.json"
tail -n 3 "$out/plan.log"
exit 0
