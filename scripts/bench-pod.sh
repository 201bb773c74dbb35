#!/usr/bin/env bash
# Pod benchmark: the shims' memory for N containers (default 10) as one pod
# and as N separate containers, Lazarus against runc's shim, in one run on
# one private containerd. A pod is what containerd's CRI makes of it: every
# container's spec carries `io.kubernetes.cri.sandbox-id`, and both shims
# then serve the whole pod from one process (see README "One shim per pod");
# here `ctr run --annotation` sets it, so no kubelet or CNI is needed.
#
# Columns: shims = shim processes serving the set; RSS and PSS (kB, summed
# over them, from /proc/PID/smaps_rollup: PSS splits shared pages between
# the processes mapping them, e.g. runc shims sharing one Go binary);
# threads; x runc = against runc's row of the same layout.
#
#   N=10  CONTAINERD=/usr/bin/containerd  SHIM_DIR (default: target/release, built first)
# Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10}
PD_NAME=bench-pod
# shellcheck source=lib/private-daemons.sh
. scripts/lib/private-daemons.sh
# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh
pd_use_shim
scripts/build-test-image.sh >/dev/null
TMP=$(mktemp -d /tmp/lazarus-bpod.XXXXXX)
PD_REMOVE+=("$TMP")
pd_start "$TMP/set" "${CONTAINERD:-/usr/bin/containerd}"
pd_ctr -n bench images import "${LAZARUS_IMAGE_DIR:-/var/cache/lazarus-test}/busybox-oci.tar" >/dev/null
IMAGE=docker.io/lazarus-test/busybox:latest

shim_pids() { # shim binary name
  pgrep -f -- "$1 .*-address $PD_DIR/containerd.sock" || true
}
sum_field() { # pids... ; reads $FIELD from smaps_rollup (Rss, Pss) or status (Threads)
  local total=0 pid
  for pid in "$@"; do
    case $FIELD in
      Threads) total=$((total + $(awk '/^Threads:/ {print $2}' /proc/"$pid"/status))) ;;
      *) total=$((total + $(awk -v f="$FIELD:" '$1 == f {print $2}' /proc/"$pid"/smaps_rollup))) ;;
    esac
  done
  echo $total
}

declare -A r
measure() { # runtime shim-binary layout
  local rt=$1 bin=$2 layout=$3 i ann pids
  for i in $(seq "$N"); do
    ann=()
    [ "$layout" = separate ] || ann=(--annotation "io.kubernetes.cri.sandbox-id=pod-$rt")
    pd_ctr -n bench run -d --runtime "$rt" "${ann[@]}" "$IMAGE" "$layout-$i" sleep 1000 >/dev/null
  done
  sleep 2 # the shims settle (lazily started threads, first metrics)
  mapfile -t pids < <(shim_pids "$bin")
  r[$rt,$layout,shims]=${#pids[@]}
  for FIELD in Rss Pss Threads; do r[$rt,$layout,$FIELD]=$(sum_field "${pids[@]}"); done
  for i in $(seq "$N"); do
    pd_ctr -n bench task kill -s KILL "$layout-$i" >/dev/null 2>&1 || true
  done
  for i in $(seq "$N"); do
    wait_for 30 pd_ctr -n bench task delete "$layout-$i" || true
    pd_ctr -n bench containers delete "$layout-$i" >/dev/null 2>&1 || true
  done
  wait_for 30 test -z "$(shim_pids "$bin")" || pd_log "shims of $rt still running"
}

for layout in pod separate; do
  measure $LAZARUS containerd-shim-lazarus-v2 "$layout"
  measure $RUNC containerd-shim-runc-v2 "$layout"
done

printf '\n%s containers; containerd %s; %s\n\n' "$N" \
  "$("${CONTAINERD:-/usr/bin/containerd}" --version | awk '{print $3}')" "$(date -u +%Y-%m-%dT%H:%MZ)"
printf '| layout | runtime | shims | RSS (kB) | PSS (kB) | threads | RSS x runc | PSS x runc |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|\n'
for layout in pod separate; do
  for rt in $LAZARUS $RUNC; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$layout" "$rt" "${r[$rt,$layout,shims]}" \
      "${r[$rt,$layout,Rss]}" "${r[$rt,$layout,Pss]}" "${r[$rt,$layout,Threads]}" \
      "$(ratio "${r[$rt,$layout,Rss]}" "${r[$RUNC,$layout,Rss]}")" \
      "$(ratio "${r[$rt,$layout,Pss]}" "${r[$RUNC,$layout,Pss]}")"
  done
done
