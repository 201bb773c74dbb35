#!/usr/bin/env bash
# Benchmark: Lazarus against runc (io.containerd.runc.v2), measured side by
# side in one run on one private containerd + dockerd:
#   - `docker run` to first output: median wall time from starting
#     `docker run --rm ... echo ready` to reading its first line, and of
#     it the time Lazarus's shim spent in Create and in Start (from its
#     log; runc's shim logs no such thing);
#   - shim memory: total RSS of the shim processes with 1 and with 20 running
#     containers.
# Prints a table with the Lazarus/runc ratio. Env: RUNS (default 15),
# MANY (default 20), CONTAINERD (binary, default /usr/bin/containerd),
# SHIM_DIR (default: the repo's target/release, built first).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-15}
MANY=${MANY:-20}
PD_NAME=bench
# shellcheck source=lib/private-daemons.sh
. scripts/lib/private-daemons.sh
pd_use_shim
pd_start "$(mktemp -d /tmp/lazarus-bench.XXXXXX)" "${CONTAINERD:-/usr/bin/containerd}"
pd_load_test_image
IMAGE=lazarus-test/busybox

now_ms() { date +%s%3N; }

first_output_ms() { # runtime
  local start line end
  start=$(now_ms)
  { read -r line; end=$(now_ms); cat >/dev/null; } < <(pd_docker run --rm --runtime "$1" $IMAGE echo ready)
  [ "$line" = ready ] || { pd_log "unexpected output '$line' from $1"; exit 1; }
  echo $((end - start))
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

shim_rss_kib() { # shim binary name
  local total=0 pid
  for pid in $(pgrep -f -- "$1 .*-address $PD_DIR/containerd.sock" || true); do
    total=$((total + $(awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status 2>/dev/null || echo 0)))
  done
  echo $total
}

# Runs in a command substitution, where set -e does not apply: a failed
# `docker run` returns 1 itself (and the assignment then stops the script).
rss_with_containers() { # runtime shim-binary count
  local ids=() i id
  for i in $(seq "$3"); do
    id=$(pd_docker run -d --runtime "$1" $IMAGE sleep 600) ||
      { pd_log "docker run of container $i of $3 with $1 failed"; return 1; }
    ids+=("$id")
  done
  sleep 2
  shim_rss_kib "$2"
  pd_docker rm -f "${ids[@]}" >/dev/null
}

# Lazarus's shim logs how long its Create and Start took ("created ID (pid
# N) in 12.3 ms", "started ID in 4.5 ms"): its own share of a `docker run`.
# The median over the lines since line `from` of containerd's log; "-" for
# runc's shim, which logs no such thing.
shim_ms() { # from verb
  local ms
  ms=$(tail -n +"$1" "$PD_DIR/containerd.log" |
    grep -oE "$2 [^ ]+( \(pid [0-9]+\))? in [0-9.]+ ms" | awk '{print $(NF-1)}' || true)
  if [ -z "$ms" ]; then echo -; else median <<<"$ms"; fi
}

declare -A result
for rt in io.containerd.runc.v2 io.containerd.lazarus.v2; do
  pd_docker run --rm --runtime "$rt" $IMAGE true # warm caches
  samples=()
  from=$(($(wc -l <"$PD_DIR/containerd.log") + 1))
  for _ in $(seq "$RUNS"); do samples+=("$(first_output_ms "$rt")"); done
  result[$rt,latency]=$(printf '%s\n' "${samples[@]}" | median)
  result[$rt,create]=$(shim_ms "$from" created)
  result[$rt,start]=$(shim_ms "$from" started)
  shim=containerd-shim-${rt#io.containerd.}; shim=${shim%.v2}-v2
  result[$rt,rss1]=$(rss_with_containers "$rt" "$shim" 1)
  result[$rt,rssN]=$(rss_with_containers "$rt" "$shim" "$MANY")
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
printf '\n%-44s %12s %12s %8s\n' "metric ($RUNS runs, $(basename "${CONTAINERD:-containerd}") $("${CONTAINERD:-/usr/bin/containerd}" --version | awk '{print $3}'))" runc lazarus ratio
row() { printf '%-44s %12s %12s %8s\n' "$1" "${result[io.containerd.runc.v2,$2]}" "${result[io.containerd.lazarus.v2,$2]}" \
  "$(ratio "${result[io.containerd.lazarus.v2,$2]}" "${result[io.containerd.runc.v2,$2]}")"; }
row "docker run to first output, median (ms)" latency
row "  of which the shim's Create, median (ms)" create
row "  of which the shim's Start, median (ms)" start
row "shim RSS, 1 container (KiB)" rss1
row "shim RSS, $MANY containers, total (KiB)" rssN
