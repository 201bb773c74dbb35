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
# The two programs installed (test/cri-client is the test suite's own).
cargo build --release --locked -p lazarus-shim -p lazarus-cli --bins
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

# containerd's CRI runs CRIU itself before a Kubernetes checkpoint
# (CheckpointContainer checks its version), from containerd's own PATH: the
# PATH systemd gives a service has no /usr/local/sbin on some distributions'
# units and always lacks a user's additions, so the check below is of the
# plain system directories, where the set-up puts criu.
sys_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if ! PATH=$sys_path command -v criu >/dev/null; then
  die "criu is not in $sys_path, where containerd looks for it (run scripts/setup-host.sh)"
fi
log "criu for containerd's CRI: $(PATH=$sys_path command -v criu)"

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
