#!/usr/bin/env bash
# skaffold's custom build for the `node` profile (skaffold.yaml; docs/testing.md, "skaffold on the
# harness node"): builds the image with buildah (build-image.sh: cached by a hash of its inputs,
# so an unchanged tree is not rebuilt) and imports it into the harness node's containerd under the
# names the rendered manifests can carry:
#   - $IMAGE, the tag skaffold asks for;
#   - <name>:<image ID>, the config digest: with `push: false` skaffold deploys that reference
#     (its TagWithImageID), after asking a Docker API for the ID of $IMAGE.
# That Docker API is skaffold's requirement, not kubetrail's: when podman is installed the image
# is also loaded into podman's storage, which `podman system service` serves as that API.
# skaffold sets IMAGE (and PUSH_IMAGE, BUILD_CONTEXT); run by hand: IMAGE=kubetrail:dev bash test/deploy/skaffold-build.sh
# The harness is found through KUBETRAIL_HARNESS_ENV (default test/.harness/env, written by
# `npm run harness -- up`).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
: "${IMAGE:?skaffold sets IMAGE, the reference to build}"
if [[ "${PUSH_IMAGE:-false}" == true ]]; then
  echo "skaffold-build.sh: there is no registry to push to here; use build.local.push: false (the node profile does)" >&2
  exit 1
fi
ENV_FILE="${KUBETRAIL_HARNESS_ENV:-$REPO/test/.harness/env}"
[[ -f "$ENV_FILE" ]] || { echo "skaffold-build.sh: no harness env at $ENV_FILE: start it with npm run harness -- up" >&2; exit 1; }
# shellcheck disable=SC1090
source "$ENV_FILE"
SOCK="$HARNESS_DIR/node/containerd/containerd.sock"
[[ -S "$SOCK" ]] || { echo "skaffold-build.sh: the harness runs no node (no $SOCK)" >&2; exit 1; }

# containerd stores references in full, as the kubelet asks for them: kubetrail:x is docker.io/library/kubetrail:x.
full() {
  local ref="$1" first="${1%%/*}"
  if [[ "$ref" != */* ]]; then echo "docker.io/library/$ref"
  elif [[ "$first" != *.* && "$first" != *:* && "$first" != localhost ]]; then echo "docker.io/$ref"
  else echo "$ref"; fi
}

built=$(bash "$REPO/test/deploy/build-image.sh")
src=$(sed -n 's/^IMAGE=//p' <<<"$built")
archive=$(sed -n 's/^ARCHIVE=//p' <<<"$built")
ctr --address "$SOCK" -n k8s.io images import "$archive" >/dev/null
# The image ID skaffold will read back: the config digest, from the archive's index and manifest.
manifest=$(tar -xOf "$archive" index.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["digest"].split(":")[1])')
config=$(tar -xOf "$archive" "blobs/sha256/$manifest" | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"].split(":")[1])')
# The repository part of $IMAGE (a registry's port is not a tag).
ref="${IMAGE%@*}"
last="${ref##*/}"
if [[ "$last" == *:* ]]; then name="${ref%:*}"; else name="$ref"; fi
for ref in "$IMAGE" "$name:$config"; do
  ctr --address "$SOCK" -n k8s.io images tag --force "$src" "$(full "$ref")" >/dev/null
done
if command -v podman >/dev/null 2>&1; then
  podman load -q -i "$archive" >/dev/null
  # podman's Docker API resolves short names as Docker does (docker.io/library/...), not as podman's CLI.
  podman tag "$src" "$(full "$IMAGE")"
fi
printf 'skaffold-build.sh: %s (image ID %s) is in the node'"'"'s containerd as %s and %s\n' "$src" "${config:0:12}" "$(full "$IMAGE")" "$(full "$name:$config")" >&2
