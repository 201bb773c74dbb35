#!/usr/bin/env bash
# Archive benchmark: `lazarus checkpoint --export` on one private containerd +
# dockerd ("host A") and `lazarus restore --import` of the file on a second
# one ("host B"), against Docker's own `docker checkpoint create` +
# `docker start --checkpoint` (on host A: Docker cannot move a container) of
# the same workloads, with Lazarus as the runtime and with runc (reference).
#
# Workloads (the existing test images: scripts/build-test-image.sh,
# scripts/build-app-images.sh):
#   redis   lazarus-test/redis, 100,000 keys set through redis-cli --pipe;
#           ready: answers PING and holds every key
#   random  memhog MIB (lazarus-test/busybox): MIB MiB of random bytes that
#           no compressor shrinks; ready: ticks on
#   mixed   MIB MiB filled by a few lines of Python (lazarus-test/warm's
#           interpreter): each MiB a quarter random bytes, a quarter zeros and
#           half text records, i.e. mostly compressible like the heaps of
#           ordinary programs; ready: ticks on
# Paths, each on a fresh container:
#   lazarus-zstd   lazarus checkpoint --export F --compress zstd --json on A,
#                  lazarus restore --import F --name N on B
#   lazarus-none   the same with --compress none
#   docker         docker checkpoint create + docker start --checkpoint on A,
#                  runtime Lazarus
#   docker-runc    the same with runc (for redis its "ready" includes the
#                  `ip link set lo up` a runc user needs: lib/bench-common.sh)
# Columns: checkpoint = the command's wall time (Lazarus: split into the
# dump and the archive's writing, from its --json); size = the archive
# file, or Docker's checkpoint directory; restore = the command's wall time;
# ready = from the restore's start until the workload is ready; x docker =
# against the docker row (same runtime) of the same workload.
#
#   MIB=1024  WORKLOADS="redis random mixed"  PATHS="lazarus-zstd lazarus-none docker docker-runc"
#   RUNS=1    runs per measurement; medians are printed
#   CONTAINERD=/usr/bin/containerd
#   SHIM_DIR  where containerd-shim-lazarus-v2 and lazarus are (default: built
#             into the repo's target/release)
# Not run in CI (minutes of 1 GiB checkpoints). A failed measurement logs a
# FAIL line and shows "fail" in its cells; the script then exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${MIB:-1024}
WORKLOADS=${WORKLOADS:-"redis random mixed"}
PATHS=${PATHS:-"lazarus-zstd lazarus-none docker docker-runc"}
RUNS=${RUNS:-1}
KEYS=100000
PD_NAME=bench-archive
# shellcheck source=lib/private-daemons.sh
. scripts/lib/private-daemons.sh
# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh
# shellcheck source=lib/bench-workloads.sh
. scripts/lib/bench-workloads.sh
bench_use_lazarus checkpoint
TMP=$(mktemp -d /var/tmp/lazarus-barc.XXXXXX) # archives: GiBs, not for a tmpfs
PD_REMOVE+=("$TMP")
trap pd_stop_all EXIT
pd_start "$TMP/a" "${CONTAINERD:-/usr/bin/containerd}"
A=$PD_DIR
load_images
pd_start "$TMP/b" "${CONTAINERD:-/usr/bin/containerd}"
B=$PD_DIR
load_images

bench_lazarus() { # workload compression
  local w=$1 c=$2 path=lazarus-$2 name="$1-$RANDOM" file t json
  local what="$w, $path"
  file=$TMP/$name.tar$([ "$c" = zstd ] && echo .zst)
  pd_use "$A"
  start_workload "$w" $LAZARUS "$name" || fail "$what: the workload did not get ready" || return 1
  t=$(now)
  json=$(pd_lazarus checkpoint "$name" --export "$file" --compress "$c" --json) ||
    fail "$what: lazarus checkpoint --export" || return 1
  add "$w" "$path" cp "$(since "$t")"
  add "$w" "$path" size "$(mib "$(stat -c %s "$file")")"
  # --json: checkpoint_seconds is the dump, export_seconds the whole command.
  add "$w" "$path" dump "$(f2 "$(jq -r .checkpoint_seconds <<<"$json")")"
  add "$w" "$path" write "$(f2 "$(jq -r '.export_seconds - .checkpoint_seconds' <<<"$json")")"
  pd_docker rm -f "$name" >/dev/null # frees host A's memory before the restore
  pd_use "$B"
  t=$(now)
  pd_lazarus restore --import "$file" --name "$name" >/dev/null ||
    fail "$what: lazarus restore --import on host B" || return 1
  add "$w" "$path" rst "$(since "$t")"
  wait_for 120 restored "$w" "$name" 0 ||
    fail "$what: the workload restored on host B was not ready within 120 s" || return 1
  add "$w" "$path" ready "$(since "$t")"
  pd_docker rm -f "$name" >/dev/null
  rm -f "$file"
}

bench_docker() { # workload runtime
  local w=$1 rt=$2 path name="$1-$RANDOM" t before what
  path=docker$([ "$rt" = $RUNC ] && echo -runc)
  what="$w, $path"
  pd_use "$A"
  start_workload "$w" "$rt" "$name" || fail "$what: the workload did not get ready" || return 1
  t=$(now)
  pd_docker checkpoint create "$name" cp >/dev/null || fail "$what: docker checkpoint create" || return 1
  add "$w" "$path" cp "$(since "$t")"
  add "$w" "$path" size "$(mib "$(du -sb "$PD_DIR/docker-root/containers/$(pd_docker inspect -f '{{.Id}}' "$name")/checkpoints/cp" | awk '{print $1}')")"
  before=$(ticks "$name")
  start_checkpoint cp "$name" || fail "$what: docker start --checkpoint" || return 1
  add "$w" "$path" rst "$(since "$T")"
  after_start "$rt" "$name" || fail "$what: ip link set lo up" || return 1
  wait_for 120 restored "$w" "$name" "$before" ||
    fail "$what: the restored workload was not ready within 120 s" || return 1
  add "$w" "$path" ready "$(since "$T")"
  pd_docker rm -f "$name" >/dev/null
}

for run in $(seq "$RUNS"); do
  for w in $WORKLOADS; do
    for path in $PATHS; do
      pd_log "run $run/$RUNS: $w, $path"
      case $path in
        lazarus-zstd) bench_lazarus "$w" zstd ;;
        lazarus-none) bench_lazarus "$w" none ;;
        docker) bench_docker "$w" $LAZARUS ;;
        docker-runc) bench_docker "$w" $RUNC ;;
        *) fail "unknown path $path (PATHS)" ;;
      esac || failed "$w" "$path"
    done
  done
done

printf '\n%s run(s), medians; containerd %s, %s, %s; MIB=%s; restores by lazarus on host B, by Docker on host A\n\n' \
  "$RUNS" "$("${CONTAINERD:-/usr/bin/containerd}" --version | awk '{print $3}')" \
  "$(lazarus version 2>/dev/null | head -1)" "$(date -u +%Y-%m-%dT%H:%MZ)" "$MIB"
printf '| workload | path | checkpoint (s) | of which dump + archive (s) | size (MiB) | restore (s) | ready (s) | checkpoint x docker | size x docker | ready x docker |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for w in $WORKLOADS; do
  label="$w $MIB MiB"
  [ "$w" != redis ] || label="redis $KEYS keys"
  for path in $PATHS; do
    split=""
    case $path in lazarus-*) split="$(med "$w" "$path" dump) + $(med "$w" "$path" write)" ;; esac
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$path" \
      "$(med "$w" "$path" cp)" "$split" "$(med "$w" "$path" size)" "$(med "$w" "$path" rst)" "$(med "$w" "$path" ready)" \
      "$(ratio "$(med "$w" "$path" cp)" "$(med "$w" docker cp)")" \
      "$(ratio "$(med "$w" "$path" size)" "$(med "$w" docker size)")" \
      "$(ratio "$(med "$w" "$path" ready)" "$(med "$w" docker ready)")"
  done
done
if [ "$failures" -gt 0 ]; then
  pd_log "$failures measurement(s) failed: see the FAIL lines above"
  exit 1
fi
