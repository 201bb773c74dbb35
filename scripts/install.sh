#!/usr/bin/env bash
# Installs Lazarus: builds the shim and the CLI (release), puts them on PATH, installs its
# config file and registers the runtime with containerd and Docker.
# Idempotent; merges into existing containerd/Docker configs, never replaces.
#   PREFIX=/usr/local   where bin/containerd-shim-lazarus-v2 and bin/lazarus go
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
log() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"

log "building the shim and the CLI (cargo build --release)"
cargo build --release --locked --workspace --bins
install -D -m 0755 target/release/containerd-shim-lazarus-v2 "$PREFIX/bin/containerd-shim-lazarus-v2"
install -D -m 0755 target/release/lazarus "$PREFIX/bin/lazarus"
log "installed $PREFIX/bin/containerd-shim-lazarus-v2 and $PREFIX/bin/lazarus"

if [ ! -f /etc/lazarus/config.toml ]; then
  install -D -m 0644 config/lazarus.toml /etc/lazarus/config.toml
  log "installed /etc/lazarus/config.toml"
fi

# containerd: a CRI runtime entry (ctr/Docker/nerdctl need none).
mkdir -p /etc/containerd
cfg=/etc/containerd/config.toml
if ! grep -qs 'runtime_type = "io.containerd.lazarus.v2"' "$cfg"; then
  if [ ! -s "$cfg" ]; then
    printf 'version = 2\n\n' > "$cfg"
  fi
  if grep -qs '^version = 3' "$cfg"; then
    snippet=config/containerd-2.x-runtime.toml
  else
    snippet=config/containerd-1.7-runtime.toml
  fi
  { printf '\n'; cat "$snippet"; } >> "$cfg"
  log "registered runtime 'lazarus' in $cfg"
fi

# Docker: merge the runtimes entry and experimental mode into daemon.json.
mkdir -p /etc/docker
daemon=/etc/docker/daemon.json
[ -s "$daemon" ] || echo '{}' > "$daemon"
tmp=$(mktemp)
jq -s '.[0] * .[1]' "$daemon" config/docker-daemon.json > "$tmp"
if ! cmp -s "$tmp" "$daemon"; then
  install -m 0644 "$tmp" "$daemon"
  log "registered runtime 'lazarus' in $daemon (restart dockerd to pick it up)"
fi
rm -f "$tmp"
"$PREFIX/bin/containerd-shim-lazarus-v2" --version
log "done"
