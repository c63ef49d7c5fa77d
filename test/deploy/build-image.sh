#!/usr/bin/env bash
# Builds kubetrail's image from the repository's Dockerfile with buildah, here where no registry
# image can be pulled:
#   1. a local STAND-IN for the official node:24 base (named node:24 and node:$NODE_VERSION-slim
#      in buildah's local storage): the files of a few Debian packages of this machine (libc,
#      libstdc++, dash, coreutils, passwd and the libraries they link), the Node 24 binary of the
#      npm package `node` (node_modules/node/bin/node) and this machine's npm. It is not the
#      official image: same names and layout (/usr/local/bin/node, npm), far fewer packages.
#   2. `buildah bud` of the Dockerfile as it is, with the stand-in as its base, `npm ci` working
#      offline from a copy of this machine's npm cache (mounted for the build only).
# The image is kubetrail.local/kubetrail:TAG, TAG a hash of its inputs (this script, the Dockerfile,
# .dockerignore, the files the build context admits, the node binary), kept as an OCI archive in the
# cache: an unchanged tree is never rebuilt, and the archive is what the node's containerd imports.
# Prints IMAGE=, ARCHIVE= and SIZE= (bytes of the OCI archive) as shell assignments.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${KUBETRAIL_CACHE:-$HOME/.cache/kubetrail}"
NODE_VERSION=$(sed -n 's/^ARG NODE_VERSION=//p' "$REPO/Dockerfile")
NODE_BIN="$REPO/node_modules/node/bin/node"
NPM_DIR="${NPM_DIR:-$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")}"
OUT="$CACHE/images"
export STORAGE_DRIVER=vfs
BUILDAH=(buildah --root "$CACHE/buildah-app/root" --runroot "$CACHE/buildah-app/run" --storage-driver vfs)
log() { printf '[build-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
mkdir -p "$OUT"

PKGS="libc6 libstdc++6 libgcc-s1 dash coreutils passwd login libaudit1 libaudit-common libselinux1 libsemanage2 libsemanage-common libsepol2 libcap-ng0 libpcre2-8-0 libbz2-1.0 libacl1 libattr1 libgmp10 libssl3 base-files"
BASE_TAG=$(cat "$0" "$NODE_BIN" | sha256sum | cut -c1-16)
if ! "${BUILDAH[@]}" inspect --type image "localhost/node:24-standin-$BASE_TAG" >/dev/null 2>&1; then
  log "building the node:24 stand-in (Debian packages: $PKGS)"
  ctr=$("${BUILDAH[@]}" from --quiet scratch)
  mnt=$("${BUILDAH[@]}" mount "$ctr")
  # Every path dpkg lists for the packages, as on this machine (usrmerge symlinks included).
  # shellcheck disable=SC2086
  dpkg -L $PKGS | sort -u | while read -r f; do if [[ -e "$f" || -L "$f" ]]; then printf '%s\n' "$f"; fi; done >"$mnt.list"
  # Debian 12 is usrmerged: /bin, /sbin, /lib, /lib64 are links into /usr, made first.
  mkdir -p "$mnt"/usr/{bin,sbin,lib,lib64}
  for d in bin sbin lib lib64; do ln -s "usr/$d" "$mnt/$d"; done
  grep -vxE '/(bin|sbin|lib|lib64)' "$mnt.list" >"$mnt.list2"
  tar -C / --no-recursion -cf - -T "$mnt.list2" | tar -C "$mnt" --keep-directory-symlink -xf -
  rm -f "$mnt.list2"
  rm -f "$mnt.list"
  mkdir -p "$mnt"/{tmp,root,etc,usr/local/bin,usr/local/lib/node_modules,proc,sys,dev}
  chmod 1777 "$mnt/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$mnt/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$mnt/etc/group"
  printf 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n' >"$mnt/etc/shadow"
  printf 'root:*::\nnogroup:*::\n' >"$mnt/etc/gshadow"
  chmod 0640 "$mnt/etc/shadow" "$mnt/etc/gshadow"
  install -m 0755 "$NODE_BIN" "$mnt/usr/local/bin/node"
  cp -a "$NPM_DIR" "$mnt/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
  # No registry is reachable from the build: npm works offline from the cache mounted at /root/.npm
  # (global npmrc of the /usr/local prefix; the runtime stage deletes npm and this with it).
  mkdir -p "$mnt/usr/local/etc"
  printf 'offline=true\nfund=false\naudit=false\nupdate-notifier=false\n' >"$mnt/usr/local/etc/npmrc"
  "${BUILDAH[@]}" umount "$ctr" >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env NODE_VERSION="$NODE_VERSION" --cmd '["node"]' "$ctr"
  "${BUILDAH[@]}" commit --quiet "$ctr" "localhost/node:24-standin-$BASE_TAG" >/dev/null
  "${BUILDAH[@]}" rm "$ctr" >/dev/null
fi
"${BUILDAH[@]}" tag "localhost/node:24-standin-$BASE_TAG" localhost/node:24 "localhost/node:$NODE_VERSION-slim"

# The files .dockerignore admits (its allow-list, restated): the working tree's, so that an edit
# not yet committed (skaffold dev) gives a new tag.
inputs() {
  printf '%s\n' "$0" "$REPO/Dockerfile" "$REPO/.dockerignore" "$NODE_BIN" "$REPO/package.json" "$REPO/package-lock.json"
  (cd "$REPO" && find bin cli core certs webhook exec-proxy policies -type f \
    ! -name '*.test.ts' ! -name '*.pem' ! -name '*.key' ! -name '*.crt' ! -path 'certs/out/*' 2>/dev/null | sort | sed "s|^|$REPO/|")
}
TAG=$(inputs | while read -r f; do printf '%s ' "${f#"$REPO"/}"; sha256sum <"$f"; done | sha256sum | cut -c1-16)
IMAGE="kubetrail.local/kubetrail:$TAG"
ARCHIVE="$OUT/kubetrail-$TAG.tar"
emit() { printf 'IMAGE=%s\nARCHIVE=%s\nSIZE=%s\n' "$IMAGE" "$ARCHIVE" "$(stat -c %s "$ARCHIVE")"; }
if [[ -s "$ARCHIVE" ]]; then
  # Cached. The image test reads the image from buildah's storage: restore it there if pruned.
  if ! "${BUILDAH[@]}" inspect --type image "$IMAGE" >/dev/null 2>&1; then
    id=$("${BUILDAH[@]}" pull --quiet "oci-archive:$ARCHIVE")
    "${BUILDAH[@]}" tag "$id" "$IMAGE"
  fi
  log "image $IMAGE is cached in $ARCHIVE"
  emit
  exit 0
fi

# npm ci offline, from a copy of the cache (the Dockerfile's `npm cache clean` empties it).
npmcache=$(mktemp -d)
trap 'rm -rf "$npmcache"' EXIT
cp -a "$HOME/.npm/_cacache" "$npmcache/_cacache"
log "buildah bud of $REPO/Dockerfile"
started=$SECONDS
"${BUILDAH[@]}" bud --quiet --pull=never --isolation chroot --layers=false \
  -v "$npmcache:/root/.npm" \
  -f "$REPO/Dockerfile" -t "$IMAGE" "$REPO" >/dev/null
rm -f "$ARCHIVE.tmp"
"${BUILDAH[@]}" push --quiet "$IMAGE" "oci-archive:$ARCHIVE.tmp:$IMAGE" >/dev/null
mv "$ARCHIVE.tmp" "$ARCHIVE"
# Earlier builds' images and archives: not kept (vfs stores every layer in full, ~300 MB each).
for old in $("${BUILDAH[@]}" images --format '{{.Name}}:{{.Tag}}' 2>/dev/null | grep '^kubetrail.local/kubetrail:' || true); do
  [[ "$old" == "$IMAGE" ]] || "${BUILDAH[@]}" rmi "$old" >/dev/null 2>&1 || true
done
"${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
find "$OUT" -maxdepth 1 -name 'kubetrail-*.tar' ! -name "kubetrail-$TAG.tar" -delete
log "built in $((SECONDS - started))s"
emit
