#!/usr/bin/env bash
# Builds the end-to-end test image `lazarus-test/busybox:latest` without a
# registry, from Debian's static busybox (package busybox-static).
#
# Outputs, in $LAZARUS_IMAGE_DIR (default /var/cache/lazarus-test):
#   busybox-oci.tar     OCI image layout as a tar (`ctr image import`); its
#                       index names the image docker.io/lazarus-test/busybox:latest
#   busybox-docker.tar  docker-archive (`docker load`), lazarus-test/busybox:latest
#   pause-oci.tar       the same root filesystem as docker.io/lazarus-test/pause:3.10,
#                       running `sleep` for ever: the CRI tests' pod sandbox image
#                       (containerd's CRI runs one per pod to hold its namespaces)
#   busybox.stamp       hash of the inputs; the build is skipped when it matches
#
# Idempotent: safe to run again (and concurrently: a lock serialises builds).
set -euo pipefail

IMG_TOOL=build-test-image
# shellcheck source=lib/image-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/image-build.sh"
NAME=lazarus-test/busybox
TAG=latest
OCI_TAR=$OUT_DIR/busybox-oci.tar
DOCKER_TAR=$OUT_DIR/busybox-docker.tar
PAUSE_TAR=$OUT_DIR/pause-oci.tar
STAMP=$OUT_DIR/busybox.stamp

require_tools umoci skopeo tar sha256sum flock gcc
require_static_busybox

mkdir -p "$OUT_DIR"
exec 9>"$OUT_DIR/.lock"
flock 9

MEMHOG_SRC=$(dirname "${BASH_SOURCE[0]}")/../test/images/memhog.c
CRSTATE_SRC=$(dirname "${BASH_SOURCE[0]}")/../test/images/crstate.c

inputs_hash() {
  cat "$BUSYBOX" "${BASH_SOURCE[0]}" "$IMG_LIB" "$MEMHOG_SRC" "$CRSTATE_SRC" | sha256sum | awk '{print $1}'
}
want=$(inputs_hash)
if [ -s "$OCI_TAR" ] && [ -s "$DOCKER_TAR" ] && [ -s "$PAUSE_TAR" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
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

skeleton "$rootfs"
# memhog: a stateful workload with a checkable heap (test/images/memhog.c).
gcc -O2 -static -o "$rootfs/usr/bin/memhog" "$MEMHOG_SRC" || die "cannot build memhog (needs gcc and libc6-dev)"
# crstate: workloads holding sockets, locks, a process tree (test/images/crstate.c).
gcc -O2 -Wall -Werror -static -pthread -o "$rootfs/usr/bin/crstate" "$CRSTATE_SRC" ||
  die "cannot build crstate (needs gcc and libc6-dev)"

log "repacking"
umoci repack --image "$layout:$TAG" "$bundle"
umoci config --image "$layout:$TAG" \
  --os linux --architecture amd64 \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.workingdir / \
  --config.cmd sh \
  --author "lazarus scripts/build-test-image.sh"
# The pod sandbox image: same layer, a process that only waits.
umoci config --image "$layout:$TAG" --tag pause \
  --config.entrypoint sleep --config.cmd 2147483647 \
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

# (c) the pause image, an OCI layout tar like (a).
skopeo copy --quiet "oci:$layout:pause" "oci-archive:$work/pause.tar:docker.io/lazarus-test/pause:3.10"

mv -f "$work/oci.tar" "$OCI_TAR"
mv -f "$work/pause.tar" "$PAUSE_TAR"
mv -f "$work/docker.tar" "$DOCKER_TAR"
printf '%s\n' "$want" >"$STAMP"
log "done: $OCI_TAR $DOCKER_TAR $PAUSE_TAR"
