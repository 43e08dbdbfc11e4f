#!/usr/bin/env bash
# The platform to build the Lambda image for: the architecture the function runs on, or, before
# the function exists, LAMBDA_ARCHITECTURE (the root module's lambda_architecture; x86_64 default).
# Lambda refuses an image built for the other one.
#
# usage: image_platform.sh FUNCTION        prints linux/amd64 or linux/arm64
set -euo pipefail

fn="${1:?usage: image_platform.sh FUNCTION}"
arch="$(aws lambda get-function-configuration --function-name "$fn" \
  --query 'Architectures[0]' --output text 2>/dev/null || true)"
case "${arch:-}" in
  x86_64 | arm64) ;;
  *) arch="${LAMBDA_ARCHITECTURE:-x86_64}" ;;
esac
case "$arch" in
  x86_64) echo "linux/amd64" ;;
  arm64) echo "linux/arm64" ;;
  *) echo "image_platform.sh: unknown architecture $arch (x86_64 or arm64)" >&2; exit 2 ;;
esac
