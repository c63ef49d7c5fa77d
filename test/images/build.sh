#!/usr/bin/env bash
# Builds the harness's container images locally, with buildah, from Debian's
# busybox-static: no registry is reachable here and nothing is pulled at test time.
#
#   kubetrail.local/busybox:TAG  busybox with every applet linked into /bin (the test image)
#   kubetrail.local/pause:TAG    the same files; its command never exits (containerd's sandbox_image)
#
# TAG is a hash of this script and the busybox binary, so a new busybox or a new
# recipe gives a new image and an unchanged one is never rebuilt. Prints the two
# OCI archives' paths and names as shell assignments (for the harness to import).
set -euo pipefail

CACHE="${KUBETRAIL_CACHE:-$HOME/.cache/kubetrail}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
OUT="$CACHE/images"
log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[[ -x "$BUSYBOX" ]] || { echo "images: $BUSYBOX missing (install Debian busybox-static)" >&2; exit 1; }
# A dynamically linked busybox would need the host's libc inside the image.
if ldd "$BUSYBOX" >/dev/null 2>&1; then echo "images: $BUSYBOX is dynamically linked; need busybox-static" >&2; exit 1; fi

TAG=$(cat "$0" "$BUSYBOX" | sha256sum | cut -c1-16)
BUSYBOX_IMG="kubetrail.local/busybox:$TAG"
PAUSE_IMG="kubetrail.local/pause:$TAG"
BUSYBOX_TAR="$OUT/busybox-$TAG.tar"
PAUSE_TAR="$OUT/pause-$TAG.tar"

emit() {
  printf 'BUSYBOX_IMAGE=%s\nBUSYBOX_ARCHIVE=%s\nPAUSE_IMAGE=%s\nPAUSE_ARCHIVE=%s\n' "$BUSYBOX_IMG" "$BUSYBOX_TAR" "$PAUSE_IMG" "$PAUSE_TAR"
}
if [[ -s "$BUSYBOX_TAR" && -s "$PAUSE_TAR" ]]; then
  log "images $TAG are cached in $OUT"
  emit
  exit 0
fi

mkdir -p "$OUT"
# buildah's own storage, kept in the cache (vfs: no overlay-on-overlay questions, no
# fuse-overlayfs); never the machine's /var/lib/containers.
export STORAGE_DRIVER=vfs
BUILDAH=(buildah --root "$CACHE/buildah/root" --runroot "$CACHE/buildah/run" --storage-driver vfs)
started=$SECONDS
log "building $BUSYBOX_IMG and $PAUSE_IMG with buildah (first run only)"
ctr=$("${BUILDAH[@]}" from --quiet scratch)
trap '"${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$("${BUILDAH[@]}" mount "$ctr")
mkdir -p "$mnt"/{bin,etc,tmp,root,www,proc,sys,dev}
chmod 1777 "$mnt/tmp"
install -m 0755 "$BUSYBOX" "$mnt/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [[ "$applet" == busybox ]] || ln -sf busybox "$mnt/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$mnt/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$mnt/etc/group"
printf 'kubetrail test image\n' >"$mnt/www/index.html"
"${BUILDAH[@]}" umount "$ctr" >/dev/null
"${BUILDAH[@]}" config --env PATH=/bin --workingdir / --cmd '["/bin/sh"]' "$ctr"
rm -f "$BUSYBOX_TAR.tmp" "$PAUSE_TAR.tmp"
"${BUILDAH[@]}" commit --quiet "$ctr" "oci-archive:$BUSYBOX_TAR.tmp:$BUSYBOX_IMG" >/dev/null
# The sandbox's process only holds the pod's namespaces open; it must never exit
# (with one that exits, every sandbox fails: "namespace path: lstat /proc/N/ns/ipc").
"${BUILDAH[@]}" config --cmd '["/bin/sleep","2147483647"]' "$ctr"
"${BUILDAH[@]}" commit --quiet "$ctr" "oci-archive:$PAUSE_TAR.tmp:$PAUSE_IMG" >/dev/null
mv "$BUSYBOX_TAR.tmp" "$BUSYBOX_TAR"
mv "$PAUSE_TAR.tmp" "$PAUSE_TAR"
log "built in $((SECONDS - started))s: $BUSYBOX_TAR, $PAUSE_TAR"
emit
