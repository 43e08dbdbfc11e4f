#!/usr/bin/env bash
# Rolls LaunchLambda and TrainerLambda onto one image, by digest, and waits until both run it.
# After a function's creation its image belongs to this script alone (Terraform ignores image_uri),
# so a later `terraform apply` cannot roll it back. Run by the image workflow and `make rollout`.
#
# usage: rollout.sh REGISTRY/REPOSITORY@sha256:DIGEST FUNCTION...
set -euo pipefail

image="${1:?usage: rollout.sh IMAGE_URI@sha256:DIGEST FUNCTION...}"
shift
[ "$#" -gt 0 ] || { echo "rollout.sh: name at least one function" >&2; exit 2; }
case "$image" in
  *@sha256:*) ;;
  *) echo "rollout.sh: $image is not pinned by digest (REPOSITORY@sha256:...)" >&2; exit 2 ;;
esac
digest="${image##*@}"

# Before the first `terraform apply` the functions do not exist: the push is all there is to do,
# and that apply creates them on this digest (README, "Deploy").
for fn in "$@"; do
  if ! aws lambda get-function --function-name "$fn" >/dev/null 2>&1; then
    echo "::notice::$fn does not exist yet; nothing rolled out. Create the stack with: terraform apply -var image_digest=$digest"
    exit 0
  fi
done

for fn in "$@"; do
  echo "updating $fn -> $image"
  aws lambda update-function-code --function-name "$fn" --image-uri "$image" \
    --query '{name:FunctionName,status:LastUpdateStatus}' --output text
done
for fn in "$@"; do
  aws lambda wait function-updated-v2 --function-name "$fn"
  deployed="$(aws lambda get-function --function-name "$fn" --query 'Code.ResolvedImageUri' --output text)"
  echo "$fn runs $deployed"
  if [ "${deployed##*@}" != "$digest" ]; then
    echo "rollout.sh: $fn runs ${deployed##*@}, not $digest" >&2
    exit 1
  fi
done

if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  printf '### Deployed\n\n`%s` on %s\n' "$image" "$*" >>"$GITHUB_STEP_SUMMARY"
fi
