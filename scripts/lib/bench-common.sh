# shellcheck shell=bash
# What the checkpoint benchmarks share. Source it after private-daemons.sh
# (the Docker steps run against the current daemon set):
#   now; since T                wall clock; seconds since T, 2 decimals
#   wait_for SECONDS CMD...     CMD retried at once until it succeeds (a timed
#                               wait: no sleep between tries); logs on timeout
#   start_checkpoint CP NAME    `docker start --checkpoint CP NAME`, retried on
#                               Docker's "already exists" race; sets T to the
#                               start of the attempt that worked
#   after_start RUNTIME NAME    runc's workaround after a restore (see below);
#                               nothing for Lazarus
#   redis_ping NAME; redis_keys NAME; redis_fill NAME KEYS
#   median VALUES...; ratio A B

# shellcheck disable=SC2034 # used by the scripts that source this file
RUNC=io.containerd.runc.v2 LAZARUS=io.containerd.lazarus.v2

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { pd_log "timed out: $*"; return 1; }
  done
}

# Docker re-uploads a checkpoint blob that containerd may not have collected
# yet and then fails with "already exists" (its own race, see test/README.md):
# retried, at most 10 times a second apart; the race's waits are not measured.
start_checkpoint() { # checkpoint name
  local attempt out
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    # shellcheck disable=SC2034 # read by the caller
    T=$(now)
    if out=$(pd_docker start --checkpoint "$1" "$2" 2>&1); then return 0; fi
    grep -q "already exists" <<<"$out" || { pd_log "restore of $2 failed: $out"; return 1; }
    sleep 1
  done
  pd_log "restore of $2: still \"already exists\" after $attempt attempts"
  return 1
}

# runc restores the container's loopback interface down on Docker's none
# network (asserted by test/e2e/app_tests.rs), so nothing answers on
# 127.0.0.1 afterwards; a runc user has to bring it up. Lazarus needs none.
after_start() { # runtime container
  [ "$1" = "$RUNC" ] || return 0
  pd_docker exec --privileged "$2" ip link set lo up
}

redis_ping() { [ "$(pd_docker exec "$1" redis-cli -h 127.0.0.1 PING 2>/dev/null)" = PONG ]; }
redis_keys() { pd_docker exec "$1" redis-cli -h 127.0.0.1 DBSIZE; }
# KEYS real SETs of random values through redis-cli --pipe, checked.
redis_fill() { # container keys
  local out
  out=$(pd_docker exec "$1" sh -c "awk -v seed=$RANDOM -v n=$2 'BEGIN { srand(seed); for (i = 0; i < n; i++) {
          k = \"key:\" i; v = \"val:\" i \":\" int(rand() * 1000000000);
          printf \"*3\\r\\n\$3\\r\\nSET\\r\\n\$%d\\r\\n%s\\r\\n\$%d\\r\\n%s\\r\\n\", length(k), k, length(v), v } }' |
        redis-cli -h 127.0.0.1 --pipe")
  grep -q "errors: 0, replies: $2" <<<"$out" || { pd_log "loading keys failed: $out"; return 1; }
  [ "$(redis_keys "$1")" = "$2" ] || { pd_log "$1 holds $(redis_keys "$1") keys, not $2"; return 1; }
}

median() { # values...; "fail" when there are none
  [ $# -gt 0 ] || { echo fail; return; }
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
