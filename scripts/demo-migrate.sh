#!/usr/bin/env bash
# Live migration between two "hosts": network namespaces on this machine
# joined by a veth pair (scripts/lib/netns-hosts.sh), each running its own
# private containerd + dockerd inside (scripts/lib/private-daemons.sh; the
# host's own daemons are not touched). Host A runs Redis under Lazarus
# with 100,000 keys and a client inside the container that holds one TCP
# connection to it; host B runs `lazarus serve`. `lazarus migrate` moves
# Redis from A to B (post-copy where the kernel allows it), and on B every
# key is there and the same client process goes on on the same connection.
# Everything is torn down at the end. Settings: KEYS (100000), MODE (auto;
# postcopy or stopcopy), HOLD=1 (before the teardown, print how to reach
# both hosts and wait for Enter).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
KEYS=${KEYS:-100000}
MODE=${MODE:-auto}
PD_NAME=demo-migrate
# shellcheck source=lib/private-daemons.sh
. "$here/lib/private-daemons.sh"
# shellcheck source=lib/netns-hosts.sh
. "$here/lib/netns-hosts.sh"
if ! command -v containerd-shim-lazarus-v2 >/dev/null || ! command -v lazarus >/dev/null; then
  echo "containerd-shim-lazarus-v2 and lazarus must be on PATH: run scripts/install.sh" >&2
  exit 1
fi
IMAGES=${LAZARUS_IMAGE_DIR:-/var/cache/lazarus-test}

HOST=""
host() { HOST=$1; pd_use "$2"; }
docker() { pd_docker "$@"; }
lazarus() { pd_lazarus "$@"; }
prompt() { printf '[host %s] $ %s\n' "$HOST" "$*"; }
show() { prompt "$*"; "$@"; }
say() { printf '\n== %s\n' "$*"; }
die() { pd_log "FAILED: $*"; exit 1; }
redis() { docker exec redis redis-cli -h 127.0.0.1 "$@"; }
# The held client: busybox nc inside the container reading a fifo the
# container's shell keeps open, its replies appended to /tmp/held.out.
held() { # send one command on the held connection
  docker exec redis sh -c "printf '%s\r\n' '$1' > /tmp/held.in"
}
held_out() { docker exec redis cat /tmp/held.out | tr -d '\r'; }
held_lines() { held_out | wc -l; }
held_client() { redis CLIENT LIST | grep ' name=held ' | tr ' ' '\n' | grep -E '^(id|addr)=' | paste -sd' '; }
answers() { [ "$(redis PING 2>/dev/null)" = PONG ]; }
replied() { [ "$(held_lines)" -ge "$1" ]; }
two_clients() { [ "$(redis CLIENT LIST | wc -l)" -ge 2 ]; }

"$here/build-test-image.sh" >/dev/null
"$here/build-app-images.sh" >/dev/null
tmp=$(mktemp -d /tmp/lazarus-demo-migrate.XXXXXX)
chmod 700 "$tmp"
NA=lzdemo-a-$$ NB=lzdemo-b-$$
N=$(($$ % 250 + 1))
ADDR_A=10.216.$N.1 ADDR_B=10.216.$N.2
SERVE_PID=
teardown() {
  [ -z "$SERVE_PID" ] || kill "$SERVE_PID" 2>/dev/null || true
  pd_stop_all
  nh_del "$NA" "$NB"
  rm -rf "$tmp"
}
trap teardown EXIT

say "Two hosts: network namespaces $NA ($ADDR_A) and $NB ($ADDR_B), one veth pair between them"
nh_add "$NA"
nh_add "$NB"
nh_link "$NA" "$ADDR_A" "$NB" "$ADDR_B"
PD_NETNS=$NA pd_start "$tmp/a"
A=$PD_DIR
pd_docker load -i "$IMAGES/redis-docker.tar" >/dev/null
PD_NETNS=$NB pd_start "$tmp/b"
B=$PD_DIR
pd_docker load -i "$IMAGES/redis-docker.tar" >/dev/null
trap teardown EXIT # pd_start sets its own
printf 'each runs its own containerd and dockerd inside (roots and sockets under %s)\n' "$tmp"

say "One key for both hosts (the migration channel is authenticated and encrypted with it)"
key=$tmp/migration.key
host A "$A"
show lazarus keygen "$key"

say "Host B: the agent that receives migrations"
host B "$B"
prompt lazarus serve --listen "$ADDR_B" --key "$key" "&"
# Not through the lazarus function: $! must be the agent itself (nsenter
# execs it), so that the teardown's kill reaches it.
DOCKER_HOST=unix://$B/docker.sock CONTAINERD_ADDRESS=$B/containerd.sock \
  nsenter "--net=/run/netns/$NB" -- "$(type -P lazarus)" serve --listen "$ADDR_B" --key "$key" \
  >/dev/null 2>"$tmp/serve.log" &
SERVE_PID=$!
pd_wait_for 20 grep -q "listening on" "$tmp/serve.log" || { cat "$tmp/serve.log" >&2; die "lazarus serve did not listen"; }
cat "$tmp/serve.log"

say "Host A: Redis under Lazarus, with a client in the container holding one TCP connection"
host A "$A"
# shellcheck disable=SC2016 # the container's shell expands these
script='redis-server --save "" --appendonly no --protected-mode no --bind 0.0.0.0 &
until redis-cli -h 127.0.0.1 PING >/dev/null 2>&1; do sleep 0.1; done
mkfifo /tmp/held.in && : > /tmp/held.out && exec 3<>/tmp/held.in
nc 127.0.0.1 6379 <&3 >/tmp/held.out & wait'
prompt docker run -d --runtime lazarus --name redis --entrypoint sh lazarus-test/redis -c "..."
docker run -d --runtime lazarus --name redis --entrypoint sh lazarus-test/redis -c "$script" >/dev/null
pd_wait_for 30 answers || die "redis did not answer on host A"
pd_wait_for 30 two_clients || die "the held client did not connect"
held "CLIENT SETNAME held"
held "SET held before"
pd_wait_for 10 replied 2 || die "no reply on the held connection"
prompt "$KEYS keys through redis-cli --pipe"
docker exec redis sh -c "awk -v n=$KEYS 'BEGIN { for (i = 0; i < n; i++) {
    k = \"key:\" i; v = \"value-\" i; printf \"*3\r\n\$3\r\nSET\r\n\$%d\r\n%s\r\n\$%d\r\n%s\r\n\", length(k), k, length(v), v } }' |
  redis-cli -h 127.0.0.1 --pipe" | tail -1
show docker exec redis redis-cli -h 127.0.0.1 DBSIZE
client_a=$(held_client)
printf 'held client on host A: %s\n' "$client_a"

say "Move it: host A to host B"
show lazarus migrate redis --to "$ADDR_B" --key "$key" --mode "$MODE" --tcp-established
printf 'on host A: %s\n' "$(docker inspect -f '{{.State.Status}}' redis)"

say "Host B: the same Redis, its keys, its held connection"
host B "$B"
show docker ps
pd_wait_for 30 answers || die "redis does not answer on host B"
size=$(redis DBSIZE)
printf '[host B] $ redis-cli DBSIZE\n%s\n' "$size"
[ "$size" = $((KEYS + 1)) ] || die "host B has $size keys, not $((KEYS + 1))"
show redis GET key:4242
[ "$(redis GET key:4242)" = value-4242 ] || die "key:4242 lost its value"
seen=$(held_lines)
held "GET held"
pd_wait_for 10 replied $((seen + 2)) || die "no reply on the held connection on host B"
printf '[host B] held connection: GET held -> %s\n' "$(held_out | tail -1)"
[ "$(held_out | tail -1)" = before ] || die "the held connection did not answer GET held with 'before'"
client_b=$(held_client)
printf 'held client on host B: %s\n' "$client_b"
[ "$client_a" = "$client_b" ] || die "the held client changed: $client_a, then $client_b"
pd_log "demo OK: Redis moved from host A to host B with its $KEYS keys and the same held TCP connection"

if [ "${HOLD:-}" = 1 ]; then
  printf '\nBoth hosts are up. For example:\n'
  printf '  DOCKER_HOST=unix://%s/docker.sock docker ps      # host A\n' "$A"
  printf '  DOCKER_HOST=unix://%s/docker.sock docker ps      # host B\n' "$B"
  printf '  nsenter --net=/run/netns/%s -- ip addr          # host B'"'"'s network\n' "$NB"
  read -r -p "Enter tears everything down. "
fi
