# shellcheck shell=bash
# Private containerd + dockerd for the demos (scripts/demo.sh,
# demo-migrate.sh); the e2e suite and the benchmarks have their own harness
# in Rust (test/e2e/support). Source this file, then:
#   pd_start DIR [containerd-binary]   start both, own sockets/roots under DIR;
#                                      DIR becomes the current set
#   pd_use DIR                         make an already started set the current one
#   pd_docker ARGS...                  docker against the current set's dockerd
#   pd_ctr ARGS...                     ctr against the current set's containerd
#   pd_lazarus ARGS...                 the lazarus CLI against the current set
#   pd_stop                            stop the current set and clean up
#   pd_stop_all                        stop every started set (run on EXIT),
#                                      then remove the paths in PD_REMOVE
# Several sets can run at once (one DIR each): a demo's "host A" and "host B".
# The shim binary directory given in PD_SHIM_DIR (if set) is put first on the
# daemons' PATH. PD_NETNS (if set when pd_start runs) names a network
# namespace (scripts/lib/netns-hosts.sh) the set's daemons run in: a host of
# its own as far as addresses go; pd_lazarus then runs there too.

PD_DIR=""           # the current set
PD_CTR_BIN=/usr/bin/ctr
PD_SETS=()          # every started set, in start order
PD_REMOVE=()        # extra paths (a caller's temporary files) removed on EXIT

pd_log() { printf '[%s] %s\n' "${PD_NAME:-lazarus}" "$*" >&2; }

pd_wait_for() { # seconds, command...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

pd_start() {
  PD_DIR=$1
  local containerd_bin=${2:-/usr/bin/containerd}
  PD_CTR_BIN=$(dirname "$containerd_bin")/ctr
  mkdir -p "$PD_DIR"
  # Registered before anything starts, so that a failed start is cleaned up too.
  PD_SETS+=("$PD_DIR")
  echo "$PD_CTR_BIN" > "$PD_DIR/ctr.path"
  echo "${PD_NETNS:-}" > "$PD_DIR/netns"
  # nsenter execs the daemon: the pid recorded below is the daemon's.
  local enter=()
  [ -z "${PD_NETNS:-}" ] || enter=(nsenter "--net=/run/netns/$PD_NETNS" --)
  trap pd_stop_all EXIT
  local version=2 cri='"io.containerd.grpc.v1.cri"'
  if "$containerd_bin" --version | grep -q ' v\?2\.'; then
    version=3
    cri='"io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.grpc.v1.cri"'
  fi
  cat > "$PD_DIR/containerd.toml" <<TOML
version = $version
root = "$PD_DIR/containerd-root"
state = "$PD_DIR/containerd-state"
disabled_plugins = [$cri]
[grpc]
  address = "$PD_DIR/containerd.sock"
[ttrpc]
  address = "$PD_DIR/containerd.sock.ttrpc"
TOML
  cat > "$PD_DIR/daemon.json" <<JSON
{
  "experimental": true,
  "iptables": false,
  "ip-masq": false,
  "bridge": "none",
  "runtimes": { "lazarus": { "runtimeType": "io.containerd.lazarus.v2" } }
}
JSON
  local path=$PATH
  [ -n "${PD_SHIM_DIR:-}" ] && path=$PD_SHIM_DIR:$PATH
  PATH=$path setsid "${enter[@]}" "$containerd_bin" --config "$PD_DIR/containerd.toml" \
    >"$PD_DIR/containerd.log" 2>&1 &
  echo $! > "$PD_DIR/containerd.pid"
  pd_wait_for 30 "$PD_CTR_BIN" -a "$PD_DIR/containerd.sock" version ||
    { tail -20 "$PD_DIR/containerd.log" >&2; pd_log "containerd did not start"; return 1; }
  PATH=$path setsid "${enter[@]}" /usr/sbin/dockerd --config-file "$PD_DIR/daemon.json" \
    --containerd "$PD_DIR/containerd.sock" --data-root "$PD_DIR/docker-root" \
    --exec-root "$PD_DIR/docker-exec" --pidfile "$PD_DIR/dockerd.pid" \
    -H "unix://$PD_DIR/docker.sock" >"$PD_DIR/dockerd.log" 2>&1 &
  pd_wait_for 60 pd_docker version ||
    { tail -20 "$PD_DIR/dockerd.log" >&2; pd_log "dockerd did not start"; return 1; }
}

pd_use() { # DIR of a started set
  PD_DIR=$1
  PD_CTR_BIN=$(cat "$PD_DIR/ctr.path")
}

pd_docker() { /usr/bin/docker -H "unix://$PD_DIR/docker.sock" "$@"; }
pd_ctr() { "$PD_CTR_BIN" -a "$PD_DIR/containerd.sock" "$@"; }
pd_lazarus() { # `command`: a caller may name its own wrapper function lazarus
  local ns enter=()
  ns=$(cat "$PD_DIR/netns" 2>/dev/null || true)
  [ -z "$ns" ] || enter=(nsenter "--net=/run/netns/$ns" --)
  DOCKER_HOST=unix://$PD_DIR/docker.sock CONTAINERD_ADDRESS=$PD_DIR/containerd.sock \
    "${enter[@]}" "$(type -P lazarus)" "$@"
}

pd_load_test_image() {
  "$(dirname "${BASH_SOURCE[0]}")/../build-test-image.sh" >/dev/null
  pd_docker load -i "${LAZARUS_IMAGE_DIR:-/var/cache/lazarus-test}/busybox-docker.tar" >/dev/null
}

pd_stop() {
  [ -n "$PD_DIR" ] || return 0
  local ids ns task
  ids=$(pd_docker ps -aq 2>/dev/null || true)
  # shellcheck disable=SC2086 # one id a word
  [ -z "$ids" ] || pd_docker rm -f $ids >/dev/null 2>&1 || true
  # Tasks started with ctr: killed here, since killing their shims below
  # would leave the containers' processes running.
  for ns in $(pd_ctr namespaces ls -q 2>/dev/null); do
    for task in $(pd_ctr -n "$ns" task ls -q 2>/dev/null); do
      pd_ctr -n "$ns" task kill -s KILL "$task" >/dev/null 2>&1 || true
      pd_ctr -n "$ns" task delete -f "$task" >/dev/null 2>&1 || true
    done
  done
  for d in dockerd containerd; do
    local pid
    pid=$(cat "$PD_DIR/$d.pid" 2>/dev/null || true)
    [ -n "$pid" ] || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  done
  # Shims of this instance outlive containerd by design: stop them too.
  pkill -9 -f -- "-address $PD_DIR/containerd.sock" 2>/dev/null || true
  awk -v d="$PD_DIR" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts |
    sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$PD_DIR"
  local set rest=()
  for set in "${PD_SETS[@]}"; do [ "$set" = "$PD_DIR" ] || rest+=("$set"); done
  PD_SETS=("${rest[@]}")
  PD_DIR=""
}

pd_stop_all() {
  local set
  for set in "${PD_SETS[@]}"; do
    PD_DIR=$set
    pd_stop
  done
  [ ${#PD_REMOVE[@]} -eq 0 ] || rm -rf "${PD_REMOVE[@]}"
}
