# shellcheck shell=bash
# What the image build scripts share. Source it after setting IMG_TOOL (the
# log prefix); it sets OUT_DIR and BUSYBOX and defines:
#   log MSG / die MSG          prefixed messages (die exits 1)
#   require_tools TOOL...      each on PATH, or die naming setup-host.sh
#   require_static_busybox     $BUSYBOX exists and is statically linked
#   skeleton ROOTFS            directories, busybox with a symlink per applet,
#                              /etc/passwd, /etc/group, empty hostname/hosts/resolv.conf

IMG_LIB=${BASH_SOURCE[0]} # hashed into the builds' stamps
OUT_DIR=${LAZARUS_IMAGE_DIR:-/var/cache/lazarus-test}
BUSYBOX=${LAZARUS_BUSYBOX:-/usr/bin/busybox}

log() { printf '[%s] %s\n' "$IMG_TOOL" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$IMG_TOOL" "$*" >&2; exit 1; }

require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool not found (run scripts/setup-host.sh)"
  done
}

require_static_busybox() {
  [ -x "$BUSYBOX" ] || die "$BUSYBOX not found (install busybox-static)"
  if ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is dynamically linked; install busybox-static"
  fi
}

# Applet symlinks at the paths busybox itself reports (like `busybox
# --install -s`, which cannot be run here without chrooting).
skeleton() { # rootfs
  local root=$1 applet rel
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,proc,sys,dev,run,var/tmp}
  install -d -m 1777 "$root/tmp"
  install -m 0755 "$BUSYBOX" "$root/bin/busybox"
  "$BUSYBOX" --list-full | while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    rel=$(dirname "$applet" | sed -E 's#[^/]+#..#g')
    ln -sf "$rel/bin/busybox" "$root/$applet"
  done
  [ -x "$root/bin/sh" ] || die "busybox provides no sh applet"
  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
  : >"$root/etc/hostname"
  : >"$root/etc/hosts"
  : >"$root/etc/resolv.conf"
}
