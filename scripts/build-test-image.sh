#!/usr/bin/env bash
# Builds the end-to-end test image `lazarus-test/busybox:latest` without a
# registry, from Debian's static busybox (package busybox-static).
#
# Outputs, in $LAZARUS_IMAGE_DIR (default /var/cache/lazarus-test):
#   busybox-oci.tar     OCI image layout as a tar (`ctr image import`); its
#                       index names the image docker.io/lazarus-test/busybox:latest
#   busybox-docker.tar  docker-archive (`docker load`), lazarus-test/busybox:latest
#   busybox.stamp       hash of the inputs; the build is skipped when it matches
#
# Idempotent: safe to run again (and concurrently: a lock serialises builds).
set -euo pipefail

OUT_DIR=${LAZARUS_IMAGE_DIR:-/var/cache/lazarus-test}
BUSYBOX=${LAZARUS_BUSYBOX:-/usr/bin/busybox}
NAME=lazarus-test/busybox
TAG=latest
OCI_TAR=$OUT_DIR/busybox-oci.tar
DOCKER_TAR=$OUT_DIR/busybox-docker.tar
STAMP=$OUT_DIR/busybox.stamp

log() { printf '[build-test-image] %s\n' "$*" >&2; }
die() { printf '[build-test-image] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in umoci skopeo tar sha256sum flock gcc; do
  command -v "$tool" >/dev/null || die "$tool not found (run scripts/setup-host.sh)"
done
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found (install busybox-static)"
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked; install busybox-static"
fi

mkdir -p "$OUT_DIR"
exec 9>"$OUT_DIR/.lock"
flock 9

MEMHOG_SRC=$(dirname "${BASH_SOURCE[0]}")/../test/images/memhog.c
CRSTATE_SRC=$(dirname "${BASH_SOURCE[0]}")/../test/images/crstate.c

inputs_hash() {
  cat "$BUSYBOX" "${BASH_SOURCE[0]}" "$MEMHOG_SRC" "$CRSTATE_SRC" | sha256sum | awk '{print $1}'
}
want=$(inputs_hash)
if [ -s "$OCI_TAR" ] && [ -s "$DOCKER_TAR" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  log "up to date: $OCI_TAR $DOCKER_TAR"
  exit 0
fi

work=$(mktemp -d "$OUT_DIR/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout=$work/oci
bundle=$work/bundle

log "creating OCI layout in $layout"
umoci init --layout "$layout"
umoci new --image "$layout:$TAG"
umoci unpack --image "$layout:$TAG" "$bundle"
rootfs=$bundle/rootfs

# Filesystem skeleton.
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,proc,sys,dev,run,var/tmp}
install -d -m 1777 "$rootfs/tmp"
install -m 0755 "$BUSYBOX" "$rootfs/bin/busybox"
# One symlink per applet, at the path busybox itself reports (like
# `busybox --install -s`, which cannot be run here without chrooting).
"$BUSYBOX" --list-full | while read -r applet; do
  [ "$applet" = bin/busybox ] && continue
  rel=$(dirname "$applet" | sed -E 's#[^/]+#..#g')
  ln -sf "$rel/bin/busybox" "$rootfs/$applet"
done
[ -x "$rootfs/bin/sh" ] || die "busybox provides no sh applet"
# memhog: a stateful workload with a checkable heap (test/images/memhog.c).
gcc -O2 -static -o "$rootfs/usr/bin/memhog" "$MEMHOG_SRC" || die "cannot build memhog (needs gcc and libc6-dev)"
# crstate: workloads holding sockets, locks, a process tree (test/images/crstate.c).
gcc -O2 -Wall -Werror -static -pthread -o "$rootfs/usr/bin/crstate" "$CRSTATE_SRC" ||
  die "cannot build crstate (needs gcc and libc6-dev)"

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
: >"$rootfs/etc/hostname"
: >"$rootfs/etc/hosts"
: >"$rootfs/etc/resolv.conf"

log "repacking"
umoci repack --image "$layout:$TAG" "$bundle"
umoci config --image "$layout:$TAG" \
  --os linux --architecture amd64 \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.workingdir / \
  --config.cmd sh \
  --author "lazarus scripts/build-test-image.sh"
umoci gc --layout "$layout"

# (a) OCI layout tar for `ctr image import`. skopeo writes the full reference
# into org.opencontainers.image.ref.name, so ctr names the image without
# needing --base-name.
log "writing $OCI_TAR"
rm -f "$work/oci.tar"
skopeo copy --quiet "oci:$layout:$TAG" "oci-archive:$work/oci.tar:docker.io/$NAME:$TAG"
# (b) docker-archive for `docker load`.
log "writing $DOCKER_TAR"
skopeo copy --quiet "oci:$layout:$TAG" "docker-archive:$work/docker.tar:$NAME:$TAG"

mv -f "$work/oci.tar" "$OCI_TAR"
mv -f "$work/docker.tar" "$DOCKER_TAR"
printf '%s\n' "$want" >"$STAMP"
log "done: $OCI_TAR $DOCKER_TAR"
