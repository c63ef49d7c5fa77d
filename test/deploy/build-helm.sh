#!/usr/bin/env bash
# Builds helm from its Go module (the Go module proxy, as test/harness/build-go.sh builds the
# Kubernetes components) into the cache, for the chart tests (test/deploy/helm.test.ts).
# Rebuilt only when the version or the Go version changes (the stamp records them).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.21.4}"
# The Kubernetes version helm assumes without a cluster (helm template, lint): that of the
# k8s.io modules helm v3.21.4 is built with (v0.36.2), as helm's Makefile sets it.
K8S_MINOR="${K8S_MINOR:-36}"
CACHE="${KUBETRAIL_CACHE:-$HOME/.cache/kubetrail}"
BIN="$CACHE/bin"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
mkdir -p "$BIN"

log() { printf '[build-helm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

stamp="$BIN/helm.version"
want="helm.sh/helm/v3@$HELM_VERSION k8s=1.$K8S_MINOR go=$(go env GOVERSION)"
if [[ -x "$BIN/helm" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  log "helm $HELM_VERSION is cached at $BIN/helm"
  exit 0
fi
work="$CACHE/build/helm"
rm -rf "$work"; mkdir -p "$work"
log "helm: building helm.sh/helm/v3/cmd/helm@$HELM_VERSION (first run only; a few minutes)"
started=$SECONDS
# helm's go.mod has no replace directives, so `go install mod@version` builds it as released.
# -X sets the version `helm version` prints (helm's Makefile does the same).
GOBIN="$work" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$K8S_MINOR \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$K8S_MINOR" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
mv "$work/helm" "$BIN/helm.tmp"
mv "$BIN/helm.tmp" "$BIN/helm"
echo "$want" >"$stamp"
log "helm: built in $((SECONDS - started))s"
