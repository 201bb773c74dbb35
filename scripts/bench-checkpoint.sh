#!/usr/bin/env bash
# Checkpoint/restore benchmark: Lazarus against runc in one run, on one
# private containerd + dockerd, with raw `criu dump` / `criu restore` of the
# same workload as the floor. The workload is test/images/memhog (in the test
# image): it touches SIZE MiB and ticks once a second; every restore is
# checked to tick on. The ctr path checkpoints the rw layer too (--rw), since
# the workload writes its ticks to a file in the container.
#   SIZES="0 256 1024"  MiB of touched memory
#   CONTAINERD=/usr/bin/containerd
# Prints: seconds per operation and the Lazarus/runc ratio (lower is better).
# A measurement that fails (a step fails, or a restore never ticks on) logs a
# FAIL line, shows "fail" in its cells, and makes the script exit 1.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"0 256 1024"}
PD_NAME=bench-checkpoint
# shellcheck source=lib/private-daemons.sh
. scripts/lib/private-daemons.sh
pd_use_shim
pd_start "$(mktemp -d /tmp/lazarus-bcp.XXXXXX)" "${CONTAINERD:-/usr/bin/containerd}"
pd_load_test_image
pd_ctr -n bench image import --all-platforms "${LAZARUS_IMAGE_DIR:-/var/cache/lazarus-test}/busybox-oci.tar" >/dev/null
IMAGE=lazarus-test/busybox
CTR_IMAGE=docker.io/lazarus-test/busybox:latest
RUNTIMES="io.containerd.runc.v2 io.containerd.lazarus.v2"

# set -e does not apply inside a function called with || (nor in the
# command substitutions it runs), and the measurements below are called that
# way so that one failure does not stop the others: every step that matters
# ends in `|| fail "what went wrong"`, which logs and returns 1.
fail() { pd_log "FAIL: $*"; return 1; }
secs() { # command... ; prints elapsed seconds, fails (printing nothing) if it fails
  local t0 t1
  t0=$(date +%s.%N); "$@" >/dev/null || return 1; t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
wait_for() { # seconds, command... (retried until it succeeds)
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}
ticks() { grep -c '^tick' || true; }
docker_ready() { pd_docker logs "$1" 2>&1 | grep -q '^ready'; }
docker_ticked_after() { [ "$(pd_docker logs "$1" 2>&1 | ticks)" -gt "$2" ]; }

declare -A r
bench_docker() { # runtime size
  local name="b-$RANDOM" before what="docker, $1, $2 MiB"
  pd_docker run -d --runtime "$1" --name "$name" $IMAGE memhog "$2" >/dev/null || fail "$what: docker run" || return 1
  wait_for 120 docker_ready "$name" || fail "$what: $name not ready within 120 s" || return 1
  r[$1,docker,$2,cp]=$(secs pd_docker checkpoint create "$name" cp) || fail "$what: checkpoint create" || return 1
  r[$1,docker,$2,size]=$(du -sm "$PD_DIR/docker-root/containers/$(pd_docker inspect -f '{{.Id}}' "$name")/checkpoints/cp" | awk '{print $1}')
  before=$(pd_docker logs "$name" 2>&1 | ticks)
  sleep 3 # Docker re-uploads the checkpoint blob; too soon fails with "already exists"
  r[$1,docker,$2,rst]=$(secs pd_docker start --checkpoint cp "$name") || fail "$what: start --checkpoint" || return 1
  wait_for 60 docker_ticked_after "$name" "$before" ||
    fail "$what: the restored $name never ticked on (still $before ticks after 60 s)" || return 1
  pd_docker rm -f "$name" >/dev/null
}

ctr_ticks() { pd_ctr -n bench task exec --exec-id "c$RANDOM" "$1" grep -c tick /tmp/ticks 2>/dev/null || echo 0; }
ctr_ready() { pd_ctr -n bench task exec --exec-id "c$RANDOM" "$1" grep -q ready /tmp/ticks; }
ctr_ticked_after() { [ "$(ctr_ticks "$1")" -gt "$2" ]; }
bench_ctr() { # runtime size
  local id="b$RANDOM" ref before what="ctr, $1, $2 MiB"
  ref="bench/$id:cp"
  pd_ctr -n bench run -d --runtime "$1" $CTR_IMAGE "$id" sh -c "memhog $2 > /tmp/ticks" >/dev/null || fail "$what: ctr run" || return 1
  wait_for 120 ctr_ready "$id" || fail "$what: $id not ready within 120 s" || return 1
  r[$1,ctr,$2,cp]=$(secs pd_ctr -n bench container checkpoint --rw --task "$id" "$ref") || fail "$what: container checkpoint" || return 1
  before=$(ctr_ticks "$id")
  pd_ctr -n bench task kill -s KILL "$id" >/dev/null; sleep 1
  pd_ctr -n bench task delete "$id" >/dev/null 2>&1 || true
  r[$1,ctr,$2,rst]=$(secs pd_ctr -n bench container restore --live --rw "$id-r" "$ref") || fail "$what: container restore" || return 1
  wait_for 60 ctr_ticked_after "$id-r" "$before" ||
    fail "$what: the restored $id-r never ticked on (still $before ticks after 60 s)" || return 1
  pd_ctr -n bench task kill -s KILL "$id-r" >/dev/null; sleep 1
  pd_ctr -n bench task delete "$id-r" >/dev/null 2>&1 || true
  pd_ctr -n bench container delete "$id" "$id-r" >/dev/null 2>&1 || true
  pd_ctr -n bench image rm "$ref" >/dev/null 2>&1 || true
}

file_ticked_after() { [ "$(ticks <"$1")" -gt "$2" ]; }
RAW_DIR=""
bench_raw_criu() { # size: the floor, no container stack at all
  local log pid memhog before what="raw criu, $1 MiB"
  RAW_DIR=$(mktemp -d /tmp/lazarus-bcp-raw.XXXXXX); log=$RAW_DIR/out
  memhog=$RAW_DIR/memhog
  gcc -O2 -static -o "$memhog" test/images/memhog.c || fail "$what: build memhog" || return 1
  setsid "$memhog" "$1" >"$log" 2>&1 < /dev/null &
  pid=$!
  disown "$pid"
  wait_for 120 grep -q '^ready' "$log" || fail "$what: memhog not ready within 120 s" || return 1
  mkdir "$RAW_DIR/img"
  r[raw,$1,cp]=$(secs criu dump -t "$pid" -D "$RAW_DIR/img" -o dump.log) ||
    fail "$what: criu dump (log: $RAW_DIR/img/dump.log)" || return 1
  r[raw,$1,size]=$(du -sm "$RAW_DIR/img" | awk '{print $1}')
  before=$(ticks <"$log")
  r[raw,$1,rst]=$(secs criu restore -D "$RAW_DIR/img" -o restore.log -d) ||
    fail "$what: criu restore (log: $RAW_DIR/img/restore.log)" || return 1
  # The restored memhog (same pid) writes on to the same file.
  wait_for 60 file_ticked_after "$log" "$before" ||
    fail "$what: the restored memhog never ticked on (still $before ticks after 60 s)" || return 1
  pkill -9 -f -- "$memhog" || true
  rm -rf "$RAW_DIR"
  RAW_DIR=""
}

# After a failed measurement: whatever it left running goes, so that a
# stray 1 GiB workload does not skew the next one.
clear_workloads() {
  local ids task
  ids=$(pd_docker ps -aq || true)
  # shellcheck disable=SC2086
  [ -z "$ids" ] || pd_docker rm -f $ids >/dev/null 2>&1 || true
  for task in $(pd_ctr -n bench task ls -q 2>/dev/null); do
    pd_ctr -n bench task kill -s KILL "$task" >/dev/null 2>&1 || true
    pd_ctr -n bench task delete -f "$task" >/dev/null 2>&1 || true
  done
  if [ -n "$RAW_DIR" ]; then
    pkill -9 -f -- "$RAW_DIR/memhog" || true
    rm -rf "$RAW_DIR"
    RAW_DIR=""
  fi
}

# A measurement that fails (a step fails, or its restore never ticks on) is
# logged, reported as "fail" in its cells, and makes the script exit 1 after
# the table; the others still run and print.
failures=0
failed() { # key prefix...
  local k
  for k in "$@"; do r[$k,cp]=fail; r[$k,rst]=fail; done
  failures=$((failures + 1))
  clear_workloads
}
for size in $SIZES; do
  bench_raw_criu "$size" || failed "raw,$size"
  for rt in $RUNTIMES; do
    bench_docker "$rt" "$size" || failed "$rt,docker,$size"
    bench_ctr "$rt" "$size" || failed "$rt,ctr,$size"
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
printf '\n%-34s %9s %9s %7s %10s\n' "seconds ($(basename "${CONTAINERD:-containerd}") $("${CONTAINERD:-/usr/bin/containerd}" --version | awk '{print $3}'))" runc lazarus ratio "raw criu"
for size in $SIZES; do
  for path in docker ctr; do
    for op in cp rst; do
      label="$path $( [ $op = cp ] && echo checkpoint || echo restore ) ${size} MiB"
      a=${r[io.containerd.runc.v2,$path,$size,$op]:-fail}; b=${r[io.containerd.lazarus.v2,$path,$size,$op]:-fail}
      printf '%-34s %9s %9s %7s %10s\n' "$label" "$a" "$b" "$(ratio "$b" "$a")" "${r[raw,$size,$op]:-fail}"
    done
  done
  a=${r[io.containerd.runc.v2,docker,$size,size]:-n/a}; b=${r[io.containerd.lazarus.v2,docker,$size,size]:-n/a}
  printf '%-34s %9s %9s %7s %10s\n' "image size ${size} MiB (MB, docker)" "$a" "$b" "$(ratio "$b" "$a")" "${r[raw,$size,size]:-n/a}"
done
if [ "$failures" -gt 0 ]; then
  pd_log "$failures measurement(s) failed: see the FAIL lines above"
  exit 1
fi
