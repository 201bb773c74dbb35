# shellcheck shell=bash
# The workloads the migration and archive benchmarks measure, and their
# bookkeeping. Source after private-daemons.sh and bench-common.sh; needs
# MIB (heap size), KEYS (redis), and A, B, TMP (the two sets, scratch).
#   load_images                  the test images into the current set
#   start_workload W RUNTIME N   runs workload W as N, waits until ready
#   restored W N TICKS           whether N works again (past TICKS ticks)
#   add W P METRIC VALUE; med W P METRIC   results and their medians
#   failed W P                   after a failed measurement: cells "fail",
#                                every container on A and B removed
#   fail MSG; f2 SECONDS; mib BYTES
#   bench_use_lazarus COMMAND    the shim and lazarus under test (built into
#                                target/release unless SHIM_DIR), first on
#                                PATH and checked to have COMMAND; the images
IMAGES=${LAZARUS_IMAGE_DIR:-/var/cache/lazarus-test}
bench_use_lazarus() { # lazarus subcommand the benchmark needs
  [ -n "${SHIM_DIR:-}" ] || cargo build --release --locked --bin lazarus
  pd_use_shim
  [ -x "$PD_SHIM_DIR/lazarus" ] || { pd_log "no lazarus CLI in $PD_SHIM_DIR"; exit 1; }
  PATH=$PD_SHIM_DIR:$PATH # pd_lazarus runs this lazarus
  lazarus "$1" --help >/dev/null ||
    { pd_log "$PD_SHIM_DIR/lazarus has no '$1' command"; exit 1; }
  scripts/build-test-image.sh
  scripts/build-app-images.sh
}
load_images() {
  local image
  for image in busybox redis warm; do pd_docker load -i "$IMAGES/$image-docker.tar" >/dev/null; done
}
# shellcheck disable=SC2016 # Python source
MIXED_FILL='import os, sys, time
mib, chunk = int(sys.argv[1]), 1 << 20
text = b"".join(b"%08d user=lazarus-%05d state=active balance=%d\n" % (i, i % 5000, i * 7919 % 1000003) for i in range(40000))
heap = bytearray(mib * chunk)
for c in range(mib):
    o, q = c * chunk, chunk // 4
    heap[o:o + q] = os.urandom(q)
    heap[o + q:o + 2 * q] = bytes(q)
    t = c * 4099 % (len(text) - 2 * q)
    heap[o + 2 * q:o + chunk] = text[t:t + 2 * q]
print("ready", mib, flush=True)
n = 0
while True:
    print("tick", n, flush=True)
    n += 1
    time.sleep(1)'

fail() { pd_log "FAIL: $*"; return 1; }
logged() { pd_docker logs "$1" 2>&1 | grep -q "$2"; }
ticks() { pd_docker logs "$1" 2>&1 | grep -c '^tick' || true; }
start_workload() { # workload runtime name: runs it on the current set, waits until it is ready
  case $1 in
    redis)
      pd_docker run -d --runtime "$2" --name "$3" lazarus-test/redis:latest >/dev/null &&
        wait_for 30 redis_ping "$3" && redis_fill "$3" "$KEYS" ;;
    random)
      pd_docker run -d --runtime "$2" --name "$3" lazarus-test/busybox memhog "$MIB" >/dev/null &&
        pd_wait_for 300 logged "$3" '^ready' ;;
    mixed)
      pd_docker run -d --runtime "$2" --name "$3" --entrypoint python3.11 lazarus-test/warm:latest \
        -c "$MIXED_FILL" "$MIB" >/dev/null && pd_wait_for 300 logged "$3" '^ready' ;;
    *) fail "unknown workload $1 (WORKLOADS)" ;;
  esac
}
restored() { # workload name ticks-before: the restored workload works
  case $1 in
    redis) redis_ping "$2" && [ "$(redis_keys "$2")" = "$KEYS" ] ;;
    *) [ "$(ticks "$2")" -gt "$3" ] ;;
  esac
}
f2() { awk -v v="$1" 'BEGIN { if (v == "" || v == "null") print "n/a"; else printf "%.2f", v }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

declare -A r # r[workload,path,metric] = "value value ..."
add() { r[$1,$2,$3]="${r[$1,$2,$3]:-} $4"; }

med() { # workload path metric
  # shellcheck disable=SC2086 # one value a word
  if [ -n "${r[$1,$2,fail]:-}" ]; then echo fail; else median ${r[$1,$2,$3]:-}; fi
}
# After a failed measurement: what it left goes, so that a stray 1 GiB
# workload does not skew the next one; its cells say "fail".
failures=0
failed() { # workload path
  local set ids
  r[$1,$2,fail]=1
  failures=$((failures + 1))
  for set in "$A" "$B"; do
    pd_use "$set"
    ids=$(pd_docker ps -aq || true)
    # shellcheck disable=SC2086 # one id a word
    [ -z "$ids" ] || pd_docker rm -f $ids >/dev/null 2>&1 || true
  done
  rm -f "$TMP"/*.tar "$TMP"/*.tar.zst
}

