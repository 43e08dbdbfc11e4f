#!/usr/bin/env bash
# The image reference to push: the repository's tags are immutable, so main pushes the commit SHA
# and a release its git tag. Prints "image=..." and "repository=..." lines (for $GITHUB_OUTPUT).
#
# usage: image_ref.sh REGISTRY REPOSITORY REF_TYPE REF_NAME COMMIT_SHA
set -euo pipefail

registry="${1:?usage: image_ref.sh REGISTRY REPOSITORY REF_TYPE REF_NAME COMMIT_SHA}"
repository="${2:?repository}"
ref_type="${3:?ref type}"
ref_name="${4:?ref name}"
sha="${5:?commit sha}"
if [ "$ref_type" = "tag" ]; then tag="$ref_name"; else tag="$sha"; fi
echo "image=${registry}/${repository}:${tag}"
echo "repository=${registry}/${repository}"
