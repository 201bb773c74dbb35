#!/usr/bin/env bash
# Real-application benchmark: Lazarus against runc in one run, on one private
# containerd + dockerd (scripts/lib/private-daemons.sh), with the images of
# scripts/build-app-images.sh. Containers are on Docker's none network;
# clients run inside them (docker exec) against 127.0.0.1.
#
#   Redis, 100,000 keys (real SETs through redis-cli --pipe):
#     checkpoint   `docker checkpoint create` (the container stops)
#     start        `docker start --checkpoint` until it returns
#     restore      `docker start --checkpoint` until redis answers PING
#     image        du of the checkpoint directory (MB)
#   warm service (lazarus-test/warm, ~6 s of initialisation):
#     cold         `docker run` until the first HTTP answer
#     restore      `docker start --checkpoint` of a new container (the
#                  checkpoint copied into it) until the first HTTP answer
#     the answer is checked to carry the checkpointed service's nonce
#
# runc restores the container's loopback interface down on the none network
# (scripts/lib/bench-common.sh), so for runc the "until it answers" figures
# include the workaround, one `docker exec --privileged C ip link set lo up`
# right after the start (that is what a runc user has to do). Lazarus needs none.
#
#   RUNS=3                  runs per measurement; medians are printed
#   CONTAINERD=/usr/bin/containerd
# Prints seconds (and MB), the Lazarus/runc ratio, and warm/cold per runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
KEYS=100000
PD_NAME=bench-apps
# shellcheck source=lib/private-daemons.sh
. scripts/lib/private-daemons.sh
# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh
pd_use_shim
scripts/build-app-images.sh
IMAGES=${LAZARUS_IMAGE_DIR:-/var/cache/lazarus-test}
pd_start "$(mktemp -d /tmp/lazarus-bapps.XXXXXX)" "${CONTAINERD:-/usr/bin/containerd}"
pd_docker load -i "$IMAGES/redis-docker.tar" >/dev/null
pd_docker load -i "$IMAGES/warm-docker.tar" >/dev/null
RUNTIMES="$RUNC $LAZARUS"

cp_dir() { echo "$PD_DIR/docker-root/containers/$(pd_docker inspect -f '{{.Id}}' "$1")/checkpoints"; }
mb() { du -sk "$1" | awk '{ printf "%.1f", $1 / 1024 }'; }
warm_get() { pd_docker exec "$1" wget -qO- http://127.0.0.1:8080/; }
warm_nonce() { warm_get "$1" | sed -n 's/.*"nonce": "\([0-9a-f]*\)".*/\1/p'; }
warm_answers() { [ -n "$(warm_nonce "$1")" ]; }
declare -A r # r[runtime,metric] = "value value ..."
add() { r[$1,$2]="${r[$1,$2]:-} $3"; }

bench_redis() { # runtime
  local rt=$1 name="redis-$RANDOM" t
  pd_docker run -d --runtime "$rt" --name "$name" lazarus-test/redis:latest >/dev/null || return 1
  wait_for 30 redis_ping "$name" || return 1
  redis_fill "$name" $KEYS || return 1
  t=$(now); pd_docker checkpoint create "$name" cp >/dev/null || return 1; add "$rt" redis_cp "$(since "$t")"
  t=$(mb "$(cp_dir "$name")/cp") || return 1; add "$rt" redis_mb "$t"
  start_checkpoint cp "$name" || return 1
  add "$rt" redis_start "$(since "$T")"
  after_start "$rt" "$name" || return 1
  wait_for 60 redis_ping "$name" ||
    { pd_log "$rt: the restored $name never answered PING within 60 s"; return 1; }
  add "$rt" redis_rst "$(since "$T")"
  [ "$(redis_keys "$name")" = $KEYS ] || { pd_log "keys lost"; return 1; }
  pd_docker rm -f "$name" >/dev/null
}

bench_warm() { # runtime
  local rt=$1 orig="warm-$RANDOM" new nonce t
  t=$(now)
  pd_docker run -d --runtime "$rt" --name "$orig" lazarus-test/warm:latest >/dev/null || return 1
  wait_for 120 warm_answers "$orig" || return 1
  add "$rt" warm_cold "$(since "$t")"
  nonce=$(warm_nonce "$orig")
  pd_docker checkpoint create "$orig" warm >/dev/null || return 1
  new="$orig-r"
  pd_docker create --runtime "$rt" --name "$new" lazarus-test/warm:latest >/dev/null || return 1
  mkdir -p "$(cp_dir "$new")" || return 1
  cp -a "$(cp_dir "$orig")/warm" "$(cp_dir "$new")/" || return 1
  start_checkpoint warm "$new" || return 1
  after_start "$rt" "$new" || return 1
  wait_for 60 warm_answers "$new" ||
    { pd_log "$rt: the restored $new never answered HTTP within 60 s"; return 1; }
  add "$rt" warm_rst "$(since "$T")"
  [ "$(warm_nonce "$new")" = "$nonce" ] || { pd_log "restored warm service has another nonce"; return 1; }
  pd_docker rm -f "$orig" "$new" >/dev/null
}

# A failed measurement adds "fail" to its cells; the others still print,
# and the script exits 1 after the table.
# (set -e does not apply inside a function called with ||: every step that
# matters ends in `|| return 1`.)
for run in $(seq "$RUNS"); do
  for rt in $RUNTIMES; do
    pd_log "run $run/$RUNS: $rt"
    ids=$(pd_docker ps -aq)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || pd_docker rm -f $ids >/dev/null
    bench_redis "$rt" || add "$rt" redis_fail 1
    bench_warm "$rt" || add "$rt" warm_fail 1
  done
done

med() { # runtime metric
  local fails=${r[$1,${2%%_*}_fail]:-}
  # shellcheck disable=SC2086
  if [ -n "$fails" ]; then echo "fail"; else median ${r[$1,$2]:-}; fi
}

ctrd=${CONTAINERD:-/usr/bin/containerd}
printf '\nmedians of %s runs, containerd %s, %s\n' "$RUNS" "$("$ctrd" --version | awk '{print $3}')" "$(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-44s %9s %9s %14s\n' "" runc lazarus "lazarus/runc"
row() { # label metric
  local a b
  a=$(med $RUNC "$2"); b=$(med $LAZARUS "$2")
  printf '%-44s %9s %9s %14s\n' "$1" "$a" "$b" "$(ratio "$b" "$a")"
}
row "redis 100k keys: checkpoint (s)" redis_cp
row "redis: docker start --checkpoint returns (s)" redis_start
row "redis: restore until PING answers (s) *" redis_rst
row "redis: checkpoint image (MB)" redis_mb
row "warm: cold start until first answer (s)" warm_cold
row "warm: restore until first answer (s) *" warm_rst
printf '%-44s %9s %9s\n' "warm: restore / cold" \
  "$(ratio "$(med $RUNC warm_rst)" "$(med $RUNC warm_cold)")" \
  "$(ratio "$(med $LAZARUS warm_rst)" "$(med $LAZARUS warm_cold)")"
# shellcheck disable=SC2016 # printed as written
printf '* runc: includes `docker exec --privileged C ip link set lo up` (runc restores lo down)\n'
failed=""
for rt in $RUNTIMES; do
  for what in redis warm; do
    [ -z "${r[$rt,${what}_fail]:-}" ] || failed="$failed $what/$rt"
  done
done
if [ -n "$failed" ]; then
  pd_log "failed measurements:$failed (see the log lines above)"
  exit 1
fi
