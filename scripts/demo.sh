#!/usr/bin/env bash
# The seed demo: a busybox container that counts, run by Docker with Lazarus
# as its runtime (`--runtime lazarus`, registered in daemon.json), on a
# private containerd + dockerd that this script starts and stops.
set -euo pipefail
here=$(dirname "$0")
PD_NAME=demo
# shellcheck source=lib/private-daemons.sh
. "$here/lib/private-daemons.sh"
command -v containerd-shim-lazarus-v2 >/dev/null ||
  { echo "containerd-shim-lazarus-v2 is not on PATH: run scripts/install.sh" >&2; exit 1; }

pd_start "$(mktemp -d /tmp/lazarus-demo.XXXXXX)"
pd_load_test_image
pd_log "docker run -d --runtime lazarus --name looper lazarus-test/busybox <counter>"
pd_docker run -d --runtime lazarus --name looper lazarus-test/busybox \
  /bin/sh -c 'i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done' >/dev/null
sleep 4
pd_log "docker logs looper:"
pd_docker logs looper
pd_log "runtime: $(pd_docker inspect -f '{{.HostConfig.Runtime}}' looper), status: $(pd_docker inspect -f '{{.State.Status}}' looper)"
count=$(pd_docker logs looper | wc -l)
[ "$count" -ge 2 ] || { pd_log "the looper did not count"; exit 1; }
pd_docker rm -f looper >/dev/null
pd_log "demo OK: the looper counted to $((count - 1)) under Lazarus"
