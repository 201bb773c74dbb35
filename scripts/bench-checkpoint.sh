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

secs() { # command... ; prints elapsed seconds
  local t0 t1
  t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
wait_for() { # seconds, command... (retried until it succeeds)
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { pd_log "timed out: $*"; return 1; }
    sleep 0.2
  done
}
ticks() { grep -c '^tick' || true; }
docker_ready() { pd_docker logs "$1" 2>&1 | grep -q '^ready'; }
docker_ticked_after() { [ "$(pd_docker logs "$1" 2>&1 | ticks)" -gt "$2" ]; }

declare -A r
bench_docker() { # runtime size
  local name="b-$RANDOM" before
  pd_docker run -d --runtime "$1" --name "$name" $IMAGE memhog "$2" >/dev/null
  wait_for 120 docker_ready "$name"
  r[$1,docker,$2,cp]=$(secs pd_docker checkpoint create "$name" cp)
  r[$1,docker,$2,size]=$(du -sm "$PD_DIR/docker-root/containers/$(pd_docker inspect -f '{{.Id}}' "$name")/checkpoints/cp" | awk '{print $1}')
  before=$(pd_docker logs "$name" 2>&1 | ticks)
  sleep 3 # Docker re-uploads the checkpoint blob; too soon fails with "already exists"
  r[$1,docker,$2,rst]=$(secs pd_docker start --checkpoint cp "$name")
  wait_for 60 docker_ticked_after "$name" "$before"
  pd_docker rm -f "$name" >/dev/null
}

ctr_ticks() { pd_ctr -n bench task exec --exec-id "c$RANDOM" "$1" grep -c tick /tmp/ticks 2>/dev/null || echo 0; }
ctr_ready() { pd_ctr -n bench task exec --exec-id "c$RANDOM" "$1" grep -q ready /tmp/ticks; }
ctr_ticked_after() { [ "$(ctr_ticks "$1")" -gt "$2" ]; }
bench_ctr() { # runtime size
  local id="b$RANDOM" ref before
  ref="bench/$id:cp"
  pd_ctr -n bench run -d --runtime "$1" $CTR_IMAGE "$id" sh -c "memhog $2 > /tmp/ticks" >/dev/null
  wait_for 120 ctr_ready "$id"
  r[$1,ctr,$2,cp]=$(secs pd_ctr -n bench container checkpoint --rw --task "$id" "$ref")
  before=$(ctr_ticks "$id")
  pd_ctr -n bench task kill -s KILL "$id" >/dev/null; sleep 1
  pd_ctr -n bench task delete "$id" >/dev/null 2>&1 || true
  r[$1,ctr,$2,rst]=$(secs pd_ctr -n bench container restore --live --rw "$id-r" "$ref")
  wait_for 60 ctr_ticked_after "$id-r" "$before"
  pd_ctr -n bench task kill -s KILL "$id-r" >/dev/null; sleep 1
  pd_ctr -n bench task delete "$id-r" >/dev/null 2>&1 || true
  pd_ctr -n bench container delete "$id" "$id-r" >/dev/null 2>&1 || true
  pd_ctr -n bench image rm "$ref" >/dev/null 2>&1 || true
}

bench_raw_criu() { # size: the floor, no container stack at all
  local dir log pid memhog
  dir=$(mktemp -d /tmp/lazarus-bcp-raw.XXXXXX); log=$dir/out
  memhog=$dir/memhog
  gcc -O2 -static -o "$memhog" test/images/memhog.c
  setsid "$memhog" "$1" >"$log" 2>&1 < /dev/null &
  pid=$!
  disown "$pid"
  wait_for 120 grep -q '^ready' "$log"
  mkdir "$dir/img"
  r[raw,$1,cp]=$(secs criu dump -t "$pid" -D "$dir/img" -o dump.log)
  r[raw,$1,size]=$(du -sm "$dir/img" | awk '{print $1}')
  r[raw,$1,rst]=$(secs criu restore -D "$dir/img" -o restore.log -d)
  pkill -9 -f "$memhog" || true
  rm -rf "$dir"
}

# A measurement that fails (its restore never ticks on) is reported as
# "fail" in its cells; the others still print.
for size in $SIZES; do
  bench_raw_criu "$size" || { r[raw,$size,cp]=fail; r[raw,$size,rst]=fail; }
  for rt in $RUNTIMES; do
    bench_docker "$rt" "$size" || { r[$rt,docker,$size,cp]=fail; r[$rt,docker,$size,rst]=fail; }
    bench_ctr "$rt" "$size" || { r[$rt,ctr,$size,cp]=fail; r[$rt,ctr,$size,rst]=fail; }
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
printf '\n%-34s %9s %9s %7s %10s\n' "seconds ($(basename "${CONTAINERD:-containerd}") $("${CONTAINERD:-/usr/bin/containerd}" --version | awk '{print $3}'))" runc lazarus ratio "raw criu"
for size in $SIZES; do
  for path in docker ctr; do
    for op in cp rst; do
      label="$path $( [ $op = cp ] && echo checkpoint || echo restore ) ${size} MiB"
      a=${r[io.containerd.runc.v2,$path,$size,$op]:-fail}; b=${r[io.containerd.lazarus.v2,$path,$size,$op]:-fail}
      printf '%-34s %9s %9s %7s %10s\n' "$label" "$a" "$b" "$(ratio "$b" "$a")" "${r[raw,$size,$op]}"
    done
  done
  printf '%-34s %9s %9s %7s %10s\n' "image size ${size} MiB (MB, docker)" "${r[io.containerd.runc.v2,docker,$size,size]}" "${r[io.containerd.lazarus.v2,docker,$size,size]}" \
    "$(ratio "${r[io.containerd.lazarus.v2,docker,$size,size]}" "${r[io.containerd.runc.v2,docker,$size,size]}")" "${r[raw,$size,size]}"
done
