#!/usr/bin/env bash
# From nothing to a counting container: set up the host (containerd 1.7 and
# 2.1, Docker 26, CRIU 4.2, Rust >= 1.85, image tools), install Lazarus, run
# the demo. Each step prints how long it took; the end says what to try next.
set -euo pipefail
here=$(dirname "$0")
started=$SECONDS

step() {
  local what=$1 t0=$SECONDS
  shift
  printf '\n[quickstart] === %s\n' "$what"
  "$@"
  printf '[quickstart] === %s: done in %d s\n' "$what" $((SECONDS - t0))
}

step "host set-up: containerd, Docker, CRIU, Rust (scripts/setup-host.sh)" "$here/setup-host.sh"
step "build and install Lazarus (scripts/install.sh)" "$here/install.sh"
step "demo: checkpoint and restore a counting container (scripts/demo.sh)" "$here/demo.sh"

cat <<DONE

[quickstart] ready in $((SECONDS - started)) s. What you can do now, on this host's
Docker (runtime "lazarus" is registered with containerd and Docker):

  # the seed scenario: a container that counts, stopped and resumed where it was
  docker run -d --runtime lazarus --name looper busybox \\
    sh -c 'i=0; while true; do echo \$i; i=\$((i+1)); sleep 1; done'
  docker checkpoint create looper cp1
  docker start --checkpoint cp1 looper

  # one archive file, restored here or on another host
  lazarus checkpoint looper --export looper.tar.zst
  lazarus restore --import looper.tar.zst

  # live migration between two network-namespace hosts (Redis)
  scripts/demo-migrate.sh

See README.md and docs/ for more.
DONE
