#!/usr/bin/env bash
# Builds etcd, kube-apiserver and the node's Kubernetes binaries (kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy; skipped with KUBETRAIL_NODE=0) from the Go
# module proxy into the harness cache.
# Both upstream modules carry `replace` directives, so `go install mod@v` refuses
# them; we build from a throwaway module that requires the upstream module and
# pins every module it replaces to the matching published version.
# Rebuilt only when the pinned versions change (the stamp file records them).
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.33.13}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE="${KUBETRAIL_CACHE:-$HOME/.cache/kubetrail}"
BIN="$CACHE/bin"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
mkdir -p "$BIN"

log() { printf '[build-go %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Prints "mod version" for every replace directive of an upstream go.mod,
# with the version the published staging module carries for this release.
staging_pins() { # $1 go.mod path, $2 version for local replaces
  awk -v v="$2" '
    /^replace \(/ { inblock=1; next }
    inblock && /^\)/ { inblock=0; next }
    inblock && /=>/ { if ($3 ~ /^\.\.?\// && $3 !~ /FORBIDDEN/) print $1, v }
    /^replace [^(]/ { if ($4 ~ /^\.\.?\// && $4 !~ /FORBIDDEN/) print $2, v }
  ' "$1"
}

build() { # $1 name, $2 module, $3 version, $4 package, $5 staging version
  local name=$1 mod=$2 ver=$3 pkg=$4 sver=$5
  local stamp="$BIN/$name.version" want="$mod@$ver go=$(go env GOVERSION)"
  if [[ -x "$BIN/$name" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "$name $ver is cached at $BIN/$name"
    return
  fi
  local work="$CACHE/build/$name"
  rm -rf "$work"; mkdir -p "$work"
  log "$name: resolving $mod@$ver"
  local gomod
  gomod=$(cd "$work" && go mod download -json "$mod@$ver" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module kubetrail.local/build/$name"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')"
    echo
    echo "require $mod $ver"
    echo
    staging_pins "$gomod" "$sver" | while read -r m v; do echo "replace $m => $m $v"; done
  } >"$work/go.mod"
  log "$name: downloading modules (first run only; takes a few minutes)"
  (cd "$work" && go get "$pkg@$ver" >/dev/null 2>&1 || go get "$pkg@$ver")
  (cd "$work" && go mod download)
  log "$name: compiling $pkg (first run only; kube-apiserver about 5 minutes on 2 cores, kube-controller-manager 3, kubelet 1.5, kube-proxy 1, kube-scheduler less with the cache warm)"
  local started=$SECONDS
  (cd "$work" && go build -trimpath -ldflags "-s -w" -o "$BIN/$name.tmp" "$pkg")
  mv "$BIN/$name.tmp" "$BIN/$name"
  echo "$want" >"$stamp"
  log "$name: built in $((SECONDS - started))s"
}

build etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
build kube-apiserver k8s.io/kubernetes "$KUBE_VERSION" k8s.io/kubernetes/cmd/kube-apiserver "v0${KUBE_VERSION#v1}"
built="$BIN/etcd $BIN/kube-apiserver"
if [[ "${KUBETRAIL_NODE:-1}" != 0 ]]; then
  # Same module, same pins: with the module cache warm these need only compiling.
  for name in kube-controller-manager kube-scheduler kubelet kube-proxy; do
    build "$name" k8s.io/kubernetes "$KUBE_VERSION" "k8s.io/kubernetes/cmd/$name" "v0${KUBE_VERSION#v1}"
    built="$built $BIN/$name"
  done
fi
log "ready: $built"
