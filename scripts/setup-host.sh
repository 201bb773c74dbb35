#!/usr/bin/env bash
# Idempotent host set-up for Lazarus on Debian 12 (bookworm), as root.
# Installs and verifies: containerd 1.7 (trixie), containerd 2.1 (sid, unpacked
# beside 1.7 under /opt/lazarus/containerd-2.1), Docker 26 (trixie), runc,
# CRIU >= 4.2 built from Debian's source tarball, busybox-static, umoci,
# skopeo, Rust >= 1.85 (unless one is here) and the small tools the tests
# drive (tmux, iproute2, redis); sets fs.pipe-max-size for post-copy migration.
# Each step says why it is the way it is.
set -euo pipefail

CRIU_VERSION=4.2.1
CRIU_SHA256=29ec0ee09e296479fe7048c80980e8ef1d0684d0b0204c2b101dfea19f6725b9
CONTAINERD2_PREFIX=/opt/lazarus/containerd-2.1
BUILD_DIR=/var/cache/lazarus-setup

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
export DEBIAN_FRONTEND=noninteractive

# --- apt sources: trixie and sid, pinned low -------------------------------
mirror_uri() {
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^(https?|file|ftp):/) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || die "cannot find the Debian mirror URI in the apt config"
  printf '%s' "$uri"
}

setup_apt() {
  local uri; uri=$(mirror_uri)
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  cat > /etc/apt/sources.list.d/lazarus-newer.sources <<SRC
# Added by Lazarus scripts/setup-host.sh: newer containerd, Docker and the CRIU
# source tarball. Pinned low in /etc/apt/preferences.d/lazarus-newer.
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: $keyring

Types: deb deb-src
URIs: $uri
Suites: sid
Components: main
Signed-By: $keyring
SRC
  cat > /etc/apt/preferences.d/lazarus-newer <<'PIN'
Package: *
Pin: release n=trixie
Pin-Priority: 100

Package: *
Pin: release n=sid
Pin-Priority: 50
PIN
  # No init system starts services here; keep package scripts from trying.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
  fi
  log "apt-get update"
  apt-get update -qq
}

# --- Rust >= 1.85 (the workspace's rust-version) ----------------------------
# A machine that has cargo and rustc >= 1.85 (rustup's, say) keeps them;
# otherwise Debian's own from trixie (1.85), pinned low above so nothing else
# moves. Debian 12's own rustc (1.63) is too old for the workspace.
RUST_MIN=1.85
rust_ok() {
  command -v cargo >/dev/null && command -v rustc >/dev/null || return 1
  local v; v=$(rustc --version | awk '{print $2}')
  dpkg --compare-versions "$v" ge "$RUST_MIN"
}

install_rust() {
  if rust_ok; then
    log "rust $(rustc --version | awk '{print $2}') (>= $RUST_MIN) already here"
    return
  fi
  log "installing rustc and cargo >= $RUST_MIN from Debian trixie"
  apt-get install -y -qq -t trixie rustc cargo >/dev/null
  hash -r
  rust_ok || die "rustc >= $RUST_MIN still missing after installing trixie's rustc and cargo"
}

install_packages() {
  local pkgs=(
    busybox-static umoci skopeo tmux iproute2 procps psmisc util-linux
    iptables gcc libc6-dev make pkg-config xz-utils jq socat curl ca-certificates dpkg-dev
    redis-server redis-tools python3
    containernetworking-plugins docker-registry
    libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler
    python3-protobuf libnl-3-dev libnet1-dev libbsd-dev libcap-dev
    libgnutls28-dev libnftables-dev libaio-dev uuid-dev libseccomp-dev
  )
  log "installing bookworm packages"
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  # Docker 26 and containerd 1.7 from trixie; refuse anything that would
  # upgrade libc6 (it must stay bookworm's).
  # runc stays bookworm's (1.1.5): trixie's runc would pull a newer libc6.
  local newer=(docker.io/trixie docker-cli/trixie containerd/trixie runc)
  if apt-get install -s -y --no-install-recommends "${newer[@]}" 2>&1 | grep -qE "^Inst libc6 |unmet dependencies"; then
    die "installing Docker/containerd from trixie would upgrade libc6; aborting"
  fi
  log "installing docker.io, docker-cli, containerd from trixie"
  apt-get install -y -qq --no-install-recommends "${newer[@]}" >/dev/null
  # The packages may have started nothing (policy-rc.d), but make sure no
  # system-wide daemon lingers: tests run private instances.
  pkill -x dockerd 2>/dev/null || true
}

install_containerd2() {
  if [ -x "$CONTAINERD2_PREFIX/usr/bin/containerd" ] &&
     "$CONTAINERD2_PREFIX/usr/bin/containerd" --version | grep -q ' v\?2\.'; then
    log "containerd 2.x already unpacked in $CONTAINERD2_PREFIX"
    return
  fi
  log "unpacking containerd 2.x from sid into $CONTAINERD2_PREFIX"
  mkdir -p "$BUILD_DIR/containerd2" "$CONTAINERD2_PREFIX"
  ( cd "$BUILD_DIR/containerd2" && rm -f containerd_*.deb &&
    apt-get download -qq containerd/sid )
  dpkg -x "$BUILD_DIR"/containerd2/containerd_*.deb "$CONTAINERD2_PREFIX"
  "$CONTAINERD2_PREFIX/usr/bin/containerd" --version | grep -q ' v\?2\.' ||
    die "unpacked containerd is not 2.x"
}

criu_ok() {
  command -v criu >/dev/null 2>&1 || return 1
  local v; v=$(criu --version 2>/dev/null | awk '/^Version:/ {print $2}')
  [ -n "$v" ] || return 1
  # Need >= 4.2 (TCP sockets on kernels >= 6.16).
  [ "$(printf '%s\n4.2\n' "$v" | sort -V | head -n1)" = "4.2" ] || return 1
  criu check >/dev/null 2>&1
}

install_criu() {
  if criu_ok; then
    log "CRIU $(criu --version | awk '/^Version:/ {print $2}') already installed and passes criu check"
    return
  fi
  log "building CRIU $CRIU_VERSION from Debian's source tarball"
  mkdir -p "$BUILD_DIR/criu"
  cd "$BUILD_DIR/criu"
  local tarball="criu_${CRIU_VERSION}.orig.tar.xz"
  if [ ! -f "$tarball" ] || ! echo "$CRIU_SHA256  $tarball" | sha256sum -c --quiet 2>/dev/null; then
    rm -f "$tarball"
    # A companion file may 404 while the orig tarball downloads fine: judge by
    # the checksum, not by apt's exit code.
    apt-get source --download-only -qq criu/sid >/dev/null 2>&1 || true
  fi
  [ -f "$tarball" ] || die "could not download $tarball from the sid deb-src entry"
  echo "$CRIU_SHA256  $tarball" | sha256sum -c --quiet || die "$tarball checksum mismatch"
  rm -rf "criu-$CRIU_VERSION"
  tar xf "$tarball"
  make -s -C "criu-$CRIU_VERSION" -j"$(nproc)" criu >build.log 2>&1 ||
    { tail -n 30 build.log >&2; die "CRIU build failed (log: $BUILD_DIR/criu/build.log)"; }
  install -m 0755 "criu-$CRIU_VERSION/criu/criu" /usr/local/sbin/criu
  hash -r
  criu_ok || die "built CRIU does not pass 'criu check'"
}

# CRIU before 4.2 passes `criu check` on Linux >= 6.16 but cannot dump any
# TCP socket there; prove this one can, with a real listening socket.
criu_dumps_tcp() {
  local dir pid ok=1
  dir=$(mktemp -d)
  setsid python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); time.sleep(120)' \
    </dev/null >/dev/null 2>&1 &
  pid=$!
  disown "$pid"
  sleep 0.5
  if criu dump -t "$pid" -D "$dir" -o dump.log >/dev/null 2>&1; then
    ok=0
  else
    tail -n 5 "$dir/dump.log" >&2 || true
    kill "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
  return $ok
}

# Post-copy migration: CRIU's lazy dump sizes its page pipes at about
# 3.3 MB; the kernel's cap is 1 MiB and root here lacks CAP_SYS_RESOURCE
# to exceed it, so without this a lazy dump fails half-way ("page-pipe:
# splice: Bad file descriptor"). Not persistent: applied on every set-up.
PIPE_MAX_SIZE=4194304
tune_sysctls() {
  local cur; cur=$(cat /proc/sys/fs/pipe-max-size)
  if [ "$cur" -lt "$PIPE_MAX_SIZE" ]; then
    sysctl -qw fs.pipe-max-size="$PIPE_MAX_SIZE" || die "cannot set fs.pipe-max-size"
  fi
  log "fs.pipe-max-size $(cat /proc/sys/fs/pipe-max-size)"
}

verify() {
  log "verifying"
  local fail=0
  containerd --version | grep -q ' 1\.7\.' || { echo "containerd 1.7 missing" >&2; fail=1; }
  "$CONTAINERD2_PREFIX/usr/bin/containerd" --version | grep -q ' v\?2\.' || { echo "containerd 2.x missing" >&2; fail=1; }
  local dv; dv=$(/usr/sbin/dockerd --version | sed -E 's/.*version ([0-9]+)\..*/\1/')
  [ "${dv:-0}" -ge 23 ] || { echo "dockerd >= 23 missing" >&2; fail=1; }
  command -v runc >/dev/null || { echo "runc missing" >&2; fail=1; }
  command -v containerd-shim-runc-v2 >/dev/null || { echo "containerd-shim-runc-v2 missing" >&2; fail=1; }
  criu_ok || { echo "criu >= 4.2 passing 'criu check' missing" >&2; fail=1; }
  criu_dumps_tcp || { echo "criu cannot dump a process with a TCP socket on this kernel" >&2; fail=1; }
  criu check --feature uffd-noncoop >/dev/null 2>&1 || { echo "criu/kernel lack uffd-noncoop (post-copy restore)" >&2; fail=1; }
  [ "$(cat /proc/sys/fs/pipe-max-size)" -ge "$PIPE_MAX_SIZE" ] || { echo "fs.pipe-max-size < $PIPE_MAX_SIZE" >&2; fail=1; }
  rust_ok || { echo "cargo and rustc >= $RUST_MIN missing" >&2; fail=1; }
  for t in busybox umoci skopeo tmux ip tc pgrep redis-server; do
    command -v "$t" >/dev/null || { echo "$t missing" >&2; fail=1; }
  done
  [ $fail = 0 ] || die "verification failed"
  log "containerd $(containerd --version | awk '{print $3}'), containerd2 $("$CONTAINERD2_PREFIX/usr/bin/containerd" --version | awk '{print $3}'), dockerd $(/usr/sbin/dockerd --version | awk '{print $3}' | tr -d ,), runc $(runc --version | awk 'NR==1{print $3}'), criu $(criu --version | awk '/^Version:/ {print $2}')"
}

setup_apt
install_packages
install_rust
install_containerd2
install_criu
tune_sysctls
verify
log "host ready"
