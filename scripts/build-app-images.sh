#!/usr/bin/env bash
# Builds the real-application test images without a registry, from the
# host's Debian binaries (the pattern of scripts/build-test-image.sh):
#
#   lazarus-test/redis:latest  Debian's redis-server and redis-cli, exactly the
#                              libraries `ldd` names (at their paths, the
#                              dynamic loader included), busybox-static, a
#                              minimal /etc. Runs
#                              redis-server --save '' --appendonly no
#                                --protected-mode no --bind 0.0.0.0
#   lazarus-test/warm:latest   Debian's python3.11 (binary, its and its kept
#                              extension modules' `ldd` libraries, a pruned
#                              /usr/lib/python3.11), busybox-static, and
#                              test/images/warm_service.py: a service that
#                              takes seconds to initialise, then serves HTTP
#                              on 8080 and prints "ready".
#
# Outputs, in $LAZARUS_IMAGE_DIR (default /var/cache/lazarus-test):
#   redis-oci.tar, redis-docker.tar   OCI layout tar (`ctr image import`,
#   warm-oci.tar,  warm-docker.tar    docker.io/lazarus-test/NAME:latest) and
#                                     docker-archive (`docker load`)
#   apps.stamp                        hash of the inputs; the build is
#                                     skipped when it matches
#
# Idempotent: safe to run again (and concurrently: a lock serialises builds).
set -euo pipefail

IMG_TOOL=build-app-images
# shellcheck source=lib/image-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/image-build.sh"
REDIS_SERVER=/usr/bin/redis-server
REDIS_CLI=/usr/bin/redis-cli
PYTHON=/usr/bin/python3.11
PYLIB=/usr/lib/python3.11
TAG=latest
STAMP=$OUT_DIR/apps.stamp
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WARM_SRC=$HERE/../test/images/warm_service.py

require_tools umoci skopeo tar sha256sum flock ldd
require_static_busybox
[ -x "$REDIS_SERVER" ] || die "$REDIS_SERVER not found (install redis-server)"
[ -x "$REDIS_CLI" ] || die "$REDIS_CLI not found (install redis-tools)"
[ -x "$PYTHON" ] || die "$PYTHON not found (install python3.11)"
[ -f "$PYLIB/os.py" ] || die "$PYLIB is not a Python standard library (install libpython3.11-stdlib)"
[ -f "$WARM_SRC" ] || die "$WARM_SRC not found"

mkdir -p "$OUT_DIR"
exec 9>"$OUT_DIR/.apps.lock"
flock 9

# Parts of the standard library the warm service never needs.
PY_PRUNE=(test idlelib tkinter turtledemo ensurepip lib2to3 pydoc_data distutils
  unittest config-3.11-x86_64-linux-gnu sitecustomize.py turtle.py)
PY_DYNLOAD_PRUNE='^(_test|_xx|xxlimited|_ctypes_test|_curses|_dbm|_sqlite3|_tkinter|nis|ossaudiodev|readline|audioop)'

# The shared libraries `ldd` names for the given ELF files (the loader too).
ldd_libs() {
  local f
  for f in "$@"; do
    ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
  done | sort -u
}

python_extensions() {
  find "$PYLIB/lib-dynload" -name '*.so' | while read -r so; do
    if ! basename "$so" | grep -qE "$PY_DYNLOAD_PRUNE"; then printf '%s\n' "$so"; fi
  done
}

inputs_hash() {
  {
    cat "${BASH_SOURCE[0]}" "$IMG_LIB" "$WARM_SRC" "$BUSYBOX" "$REDIS_CLI" "$PYTHON"
    cat "$(readlink -f "$REDIS_SERVER")"
    # shellcheck disable=SC2046
    cat $(ldd_libs "$REDIS_SERVER" "$REDIS_CLI" "$PYTHON")
    # The standard library by name, size and time (its contents are 50 MB).
    find "$PYLIB" -printf '%P %s %T@\n' | sort
  } | sha256sum | awk '{print $1}'
}
want=$(inputs_hash)
outputs=("$OUT_DIR"/{redis,warm}-{oci,docker}.tar)
up_to_date=1
for f in "${outputs[@]}"; do [ -s "$f" ] || up_to_date=0; done
if [ $up_to_date = 1 ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  log "up to date: ${outputs[*]}"
  exit 0
fi

work=$(mktemp -d "$OUT_DIR/.build-apps.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Copies each file to the same path under the rootfs, dereferencing
# symlinks (a library's soname link becomes the file itself).
copy_at_path() { # rootfs file...
  local root=$1 f
  shift
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
  done
}

# build NAME POPULATE-FUNCTION UMOCI-CONFIG-ARGS...
build() {
  local name=$1 populate=$2
  shift 2
  local layout=$work/$name-oci bundle=$work/$name-bundle
  log "building lazarus-test/$name:$TAG"
  umoci init --layout "$layout"
  umoci new --image "$layout:$TAG"
  umoci unpack --image "$layout:$TAG" "$bundle"
  skeleton "$bundle/rootfs"
  "$populate" "$bundle/rootfs"
  umoci repack --image "$layout:$TAG" "$bundle"
  umoci config --image "$layout:$TAG" \
    --os linux --architecture amd64 \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.workingdir / \
    --author "lazarus scripts/build-app-images.sh" \
    "$@"
  umoci gc --layout "$layout"
  skopeo copy --quiet "oci:$layout:$TAG" "oci-archive:$work/$name-oci.tar:docker.io/lazarus-test/$name:$TAG"
  skopeo copy --quiet "oci:$layout:$TAG" "docker-archive:$work/$name-docker.tar:lazarus-test/$name:$TAG"
}

populate_redis() { # rootfs
  local root=$1
  # redis-server is Debian's link to redis-check-rdb; the binary picks its
  # mode from argv[0], so keep the link.
  copy_at_path "$root" "$(readlink -f "$REDIS_SERVER")" "$REDIS_CLI"
  ln -sf "$(basename "$(readlink -f "$REDIS_SERVER")")" "$root$REDIS_SERVER"
  # shellcheck disable=SC2046
  copy_at_path "$root" $(ldd_libs "$REDIS_SERVER" "$REDIS_CLI")
  mkdir -p "$root/data"
}

populate_warm() { # rootfs
  local root=$1 p
  copy_at_path "$root" "$PYTHON"
  ln -sf python3.11 "$root/usr/bin/python3"
  mkdir -p "$root/usr/lib"
  cp -a "$PYLIB" "$root/usr/lib/"
  for p in "${PY_PRUNE[@]}"; do rm -rf "${root:?}$PYLIB/$p"; done
  find "$root$PYLIB/lib-dynload" -name '*.so' | while read -r so; do
    if basename "$so" | grep -qE "$PY_DYNLOAD_PRUNE"; then rm -f "$so"; fi
  done
  # Compiled files of pruned modules, and links that now point nowhere.
  find "$root$PYLIB" -name '*.pyc' | while read -r pyc; do
    mod=$(basename "$pyc" | sed 's/\.cpython-311.*//')
    src=$(dirname "$(dirname "$pyc")")/$mod
    if [ ! -e "$src.py" ] && [ ! -d "$src" ]; then rm -f "$pyc"; fi
  done
  find "$root$PYLIB" -xtype l -delete
  # shellcheck disable=SC2046
  copy_at_path "$root" $(ldd_libs "$PYTHON" $(python_extensions))
  mkdir -p "$root/app"
  install -m 0644 "$WARM_SRC" "$root/app/warm_service.py"
  chroot "$root" /usr/bin/python3.11 -c 'import hashlib, http.server, json, decimal, email.parser, xml.etree.ElementTree, zipfile, statistics' ||
    die "the warm image's Python cannot import what warm_service.py needs"
}

build redis populate_redis \
  --config.entrypoint redis-server \
  --config.cmd --save --config.cmd '' --config.cmd --appendonly --config.cmd no \
  --config.cmd --protected-mode --config.cmd no --config.cmd --bind --config.cmd 0.0.0.0 \
  --config.exposedports 6379/tcp
build warm populate_warm \
  --config.env PYTHONUNBUFFERED=1 --config.env PYTHONDONTWRITEBYTECODE=1 \
  --config.env WARM_PORT=8080 \
  --config.entrypoint python3.11 --config.cmd /app/warm_service.py \
  --config.exposedports 8080/tcp

for name in redis warm; do
  mv -f "$work/$name-oci.tar" "$OUT_DIR/$name-oci.tar"
  mv -f "$work/$name-docker.tar" "$OUT_DIR/$name-docker.tar"
done
printf '%s\n' "$want" >"$STAMP"
log "done: ${outputs[*]}"
