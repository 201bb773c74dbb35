#!/usr/bin/env bash
# Checkpoint/restore benchmark: Lazarus against runc in one run, on one
# private containerd + dockerd, with raw `criu dump` / `criu restore` of the
# same workload as the floor. Workloads (KINDS), each touching SIZE MiB and
# ticking once a second; every restore is checked to tick on:
#   random  test/images/memhog: random bytes (nothing compresses them)
#   mixed   typical application memory (scripts/lib/bench-workloads.sh's
#           MIXED_FILL, in the warm image's Python): per MiB a quarter
#           random, a quarter zeros, half repeated text records
# Paths:
#   docker  `docker checkpoint create` (the container stops), then `docker
#           start --checkpoint`
#   ctr     `ctr container checkpoint --rw --task` into containerd's content
#           store, the task killed, `ctr container restore --live --rw` as a
#           new container (the workload writes its ticks into the rw layer)
#   direct  the image-path path (Lazarus only): `lazarus checkpoint
#           --export F --compress none --json` of a ctr container, whose dump
#           the shim writes straight into an image path (containerd's
#           CheckpointOptions.image_path, as `ctr task checkpoint
#           --image-path` sends it), then `lazarus restore --import F
#           --json`, which restores from the extracted image path
#           (Options.criu_image_path). Timed from the CLI's report: the
#           dump (checkpoint_seconds) and the restore after the archive is
#           extracted (restore_seconds - extract_seconds), so the archive's
#           own writing and reading are not in the cells; CPU is the whole
#           commands'. Compared with raw CRIU, not runc. Its images and
#           raw CRIU's are both in IMAGES_AT (default /dev/shm: memory)
#   raw     `criu dump` / `criu restore -d` of the same program on the host
#           (no container stack at all: the floor), images in IMAGES_AT
#   podman  a reference column beside Docker's rows, when podman is
#           installed (Debian's: apt-get install podman): `podman container
#           checkpoint --export F --compress zstd` (the container stops), the
#           container removed, `podman container restore --import F`; its own
#           root and run root, network none, runc
# Per cell: the median of RUNS runs, its spread (min-max), CPU seconds and
# the image size. CPU: user + system time of everything the benchmark
# starts (daemons, shims, helpers, CRIU, clients, tar), counted in a cpuacct
# cgroup of its own that they all inherit; containers get cgroups of their
# own, so the workloads' ticking is not counted, and other load on the
# machine is not either.
#   SIZES="0 256 1024"  KINDS="random mixed"  PATHS="docker ctr direct raw podman"  RUNS=3
#   IMAGES_AT=/dev/shm  where the direct and raw paths put their images
#   CONTAINERD=/usr/bin/containerd
#   SHIM_DIR  where containerd-shim-lazarus-v2 and lazarus are (default: built
#             into the repo's target/release)
# Not run in CI (minutes of 1 GiB checkpoints). A measurement that fails (a
# step fails, or a restore never ticks on) logs a FAIL line, shows "fail" in
# its cells, and makes the script exit 1 after the table.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"0 256 1024"}
KINDS=${KINDS:-"random mixed"}
PATHS=${PATHS:-"docker ctr direct raw podman"}
RUNS=${RUNS:-3}
PD_NAME=bench-checkpoint
# shellcheck source=lib/private-daemons.sh
. scripts/lib/private-daemons.sh
# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh
# shellcheck source=lib/bench-workloads.sh
. scripts/lib/bench-workloads.sh # MIXED_FILL, IMAGES
bench_use_lazarus restore # the shim and, for the direct path, the CLI
CG=/sys/fs/cgroup/cpuacct/lazarus-bench-$$
if ! { mkdir "$CG" && echo $$ >"$CG/cgroup.procs"; }; then
  pd_log "cannot make the cpuacct cgroup $CG (cgroup v1's cpuacct, as on this host)"
  exit 1
fi
leave_cgroup() { echo $$ >/sys/fs/cgroup/cpuacct/cgroup.procs; rmdir "$CG" 2>/dev/null || true; }
trap leave_cgroup EXIT
pd_start "$(mktemp -d /tmp/lazarus-bcp.XXXXXX)" "${CONTAINERD:-/usr/bin/containerd}"
# (pd_start sets its own trap; Podman's containers go first, its mounts
# with the set's directory.)
trap 'clear_podman; pd_stop_all; leave_cgroup' EXIT
for image in busybox warm; do
  pd_docker load -i "$IMAGES/$image-docker.tar" >/dev/null
  pd_ctr -n bench image import --all-platforms "$IMAGES/$image-oci.tar" >/dev/null
done
RUNTIMES="$RUNC $LAZARUS"
# Where the direct and raw paths keep their images: both in the same
# place, by default memory (tmpfs), so that the shared disk's writeback
# (of the step before, or of the archive the import just unpacked) does
# not decide the comparison of the container stack with raw CRIU.
IMAGES_AT=$(mktemp -d "${IMAGES_AT:-/dev/shm}/lazarus-bcp.XXXXXX")
PD_REMOVE+=("$IMAGES_AT")
printf 'work_root = "%s"\n' "$IMAGES_AT/work" >"$IMAGES_AT/direct.toml"
PODMAN=""
if [[ " $PATHS " == *" podman "* ]]; then
  if command -v podman >/dev/null; then
    PODMAN=$(podman --version | awk '{print $3}')
  else
    pd_log "podman is not installed: its column says n/a (apt-get install podman adds it)"
  fi
fi
PYTHON=/usr/bin/python3.11 # the warm image's Python is Debian's

# set -e does not apply inside a function called with || (nor in the
# command substitutions it runs), and the measurements below are called that
# way so that one failure does not stop the others: every step that matters
# ends in `|| fail "what went wrong"`, which logs and returns 1.
busy() { cat "$CG/cpuacct.usage"; } # nanoseconds
# Runs the command; sets WALL and CPU in seconds, and OUT to its output.
# A sync first: the dirty pages of the step before (gigabytes of images
# and archives) are written back before the clock starts, not during the
# step, which they slowed by up to 3x in single cells.
timed() {
  local t0 c0
  sync
  t0=$(now); c0=$(busy)
  OUT=$("$@") || return 1
  WALL=$(since "$t0")
  CPU=$(awk -v a="$c0" -v b="$(busy)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
}
# Whether the command prints a number above n (with pd_wait_for: until
# a restored workload has ticked past what it had).
more_than() { # n command...
  local n=$1; shift
  [ "$("$@")" -gt "$n" ]
}
# (bench-workloads.sh's bookkeeping is for the two-host benchmarks; this
# one keeps its own, keyed KIND,RUNTIME,PATH,SIZE or KIND,raw,SIZE.)
declare -A r # r[key,metric] = "value value ..." (one per run)
add_run() { r[$1]="${r[$1]:-} $2"; }
record() { add_run "$1,wall" "$WALL"; add_run "$1,cpu" "$CPU"; }

# Docker's workloads are read with bench-workloads.sh's `logged` and `ticks`.
bench_docker() { # kind runtime size
  local name="b-$RANDOM" before what="docker, $1, $2, $3 MiB" key="$1,$2,docker,$3"
  local -a run=(run -d --runtime "$2" --name "$name")
  case $1 in
    random) run+=(lazarus-test/busybox memhog "$3") ;;
    mixed) run+=(--entrypoint python3.11 lazarus-test/warm:latest -c "$MIXED_FILL" "$3") ;;
  esac
  pd_docker "${run[@]}" >/dev/null || fail "$what: docker run" || return 1
  pd_wait_for 300 logged "$name" '^ready' || fail "$what: $name not ready within 300 s" || return 1
  timed pd_docker checkpoint create "$name" cp || fail "$what: checkpoint create" || return 1
  record "$key,cp"
  add_run "$key,size" "$(du -sm "$PD_DIR/docker-root/containers/$(pd_docker inspect -f '{{.Id}}' "$name")/checkpoints/cp" | awk '{print $1}')"
  before=$(ticks "$name")
  sleep 3 # Docker re-uploads the checkpoint blob; too soon fails with "already exists"
  timed pd_docker start --checkpoint cp "$name" || fail "$what: start --checkpoint" || return 1
  record "$key,rst"
  pd_wait_for 60 more_than "$before" ticks "$name" ||
    fail "$what: the restored $name never ticked on (still $before ticks after 60 s)" || return 1
  pd_docker rm -f "$name" >/dev/null
}

# ctr: the workload writes its lines to /tmp/ticks in the rw layer, read
# with the image's own tools (the warm image has Python and no grep).
ctr_count() { # kind id what: how many lines of /tmp/ticks start with "what"
  local -a count=(grep -c "^$3" /tmp/ticks)
  [ "$1" = random ] ||
    count=(python3.11 -c "print(sum(l.startswith('$3') for l in open('/tmp/ticks')))")
  local n
  # One number, 0 if the exec failed (grep -c prints 0 and fails on none).
  n=$(pd_ctr -n bench task exec --exec-id "c$RANDOM" "$2" "${count[@]}" 2>/dev/null | tail -n 1) || true
  echo "${n:-0}"
}
ctr_ready() { [ "$(ctr_count "$1" "$2" ready)" -gt 0 ]; }
ctr_workload() { # kind runtime size id: runs it as a ctr container
  local -a run=(-n bench run -d --runtime "$2")
  case $1 in
    random) run+=(docker.io/lazarus-test/busybox:latest "$4" sh -c "memhog $3 > /tmp/ticks") ;;
    mixed) run+=(docker.io/lazarus-test/warm:latest "$4" python3.11 -c \
      "import sys; sys.stdout = open('/tmp/ticks', 'w', 1); exec(sys.argv.pop(1))" "$MIXED_FILL" "$3") ;;
  esac
  pd_ctr "${run[@]}" >/dev/null
}
bench_ctr() { # kind runtime size
  local id="b$RANDOM" ref before what="ctr, $1, $2, $3 MiB" key="$1,$2,ctr,$3"
  ref="bench/$id:cp"
  ctr_workload "$1" "$2" "$3" "$id" || fail "$what: ctr run" || return 1
  pd_wait_for 300 ctr_ready "$1" "$id" || fail "$what: $id not ready within 300 s" || return 1
  timed pd_ctr -n bench container checkpoint --rw --task "$id" "$ref" ||
    fail "$what: container checkpoint" || return 1
  record "$key,cp"
  before=$(ctr_count "$1" "$id" tick)
  pd_ctr -n bench task kill -s KILL "$id" >/dev/null; sleep 1
  pd_ctr -n bench task delete "$id" >/dev/null 2>&1 || true
  timed pd_ctr -n bench container restore --live --rw "$id-r" "$ref" ||
    fail "$what: container restore" || return 1
  record "$key,rst"
  pd_wait_for 60 more_than "$before" ctr_count "$1" "$id-r" tick ||
    fail "$what: the restored $id-r never ticked on (still $before ticks after 60 s)" || return 1
  pd_ctr -n bench task kill -s KILL "$id-r" >/dev/null; sleep 1
  pd_ctr -n bench task delete "$id-r" >/dev/null 2>&1 || true
  pd_ctr -n bench container delete "$id" "$id-r" >/dev/null 2>&1 || true
  pd_ctr -n bench image rm "$ref" >/dev/null 2>&1 || true
}

# The direct path: a Lazarus ctr container checkpointed and restored by
# the CLI, timed from its own --json report (see the header). Its scratch
# directory (the image path, the unpacked archive) is in IMAGES_AT.
direct_lazarus() { LAZARUS_CONFIG=$IMAGES_AT/direct.toml pd_lazarus "$@"; }
bench_direct() { # kind size
  local id="d$RANDOM" before what="direct, $1, $2 MiB" key="$1,direct,$2" file=$IMAGES_AT/d$RANDOM.tar
  ctr_workload "$1" "$LAZARUS" "$2" "$id" || fail "$what: ctr run" || return 1
  pd_wait_for 300 ctr_ready "$1" "$id" || fail "$what: $id not ready within 300 s" || return 1
  before=$(ctr_count "$1" "$id" tick)
  timed direct_lazarus checkpoint -n bench "$id" --export "$file" --compress none --json ||
    fail "$what: lazarus checkpoint --export" || return 1
  add_run "$key,cp,wall" "$(f2 "$(jq -r .checkpoint_seconds <<<"$OUT")")"
  add_run "$key,cp,cpu" "$CPU"
  # The export stopped the task; the restore makes the container anew.
  pd_ctr -n bench task delete "$id" >/dev/null 2>&1 || true
  pd_ctr -n bench container delete "$id" >/dev/null || fail "$what: ctr container delete" || return 1
  timed direct_lazarus restore -n bench --import "$file" --json ||
    fail "$what: lazarus restore --import" || return 1
  add_run "$key,rst,wall" "$(f2 "$(jq -r '.restore_seconds - .extract_seconds' <<<"$OUT")")"
  add_run "$key,rst,cpu" "$CPU"
  pd_wait_for 60 more_than "$before" ctr_count "$1" "$id" tick ||
    fail "$what: the restored $id never ticked on (still $before ticks after 60 s)" || return 1
  pd_ctr -n bench task kill -s KILL "$id" >/dev/null; sleep 1
  pd_ctr -n bench task delete "$id" >/dev/null 2>&1 || true
  pd_ctr -n bench container delete "$id" >/dev/null 2>&1 || true
  rm -f "$file"
}

# Podman, private to this run: its own storage, no network, cgroupfs.
podman_() {
  podman --root "$PD_DIR/podman-root" --runroot "$PD_DIR/podman-run" --tmpdir "$PD_DIR/podman-tmp" \
    --cgroup-manager cgroupfs --events-backend file --runtime runc "$@"
}
podman_ready() { podman_ logs "$1" 2>&1 | grep -q '^ready'; }
podman_ticks() { podman_ logs "$1" 2>&1 | grep -c '^tick' || true; }
PODMAN_LOADED=""
bench_podman() { # kind size
  local name="b-$RANDOM" before what="podman, $1, $2 MiB" key="$1,podman,$2" file
  if [ -z "$PODMAN_LOADED" ]; then
    for image in busybox warm; do
      podman_ load -i "$IMAGES/$image-docker.tar" >/dev/null || fail "$what: podman load $image" || return 1
    done
    PODMAN_LOADED=1
  fi
  # Podman raises RLIMIT_NOFILE and RLIMIT_NPROC by default, which root
  # without CAP_SYS_RESOURCE (these machines) may not: low limits instead
  # (the workloads open a few files and run one process).
  local -a run=(run -d --network none --name "$name" --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
  case $1 in
    random) run+=(lazarus-test/busybox memhog "$2") ;;
    mixed) run+=(--entrypoint python3.11 lazarus-test/warm:latest -c "$MIXED_FILL" "$2") ;;
  esac
  file=$PD_DIR/$name.tar.zst
  podman_ "${run[@]}" >/dev/null || fail "$what: podman run" || return 1
  pd_wait_for 300 podman_ready "$name" || fail "$what: $name not ready within 300 s" || return 1
  timed podman_ container checkpoint --export "$file" --compress zstd "$name" ||
    fail "$what: podman container checkpoint" || return 1
  record "$key,cp"
  add_run "$key,size" "$(du -sm "$file" | awk '{print $1}')"
  before=$(podman_ticks "$name")
  podman_ rm -f -t 0 "$name" >/dev/null || fail "$what: podman rm" || return 1
  timed podman_ container restore --import "$file" || fail "$what: podman container restore" || return 1
  record "$key,rst"
  pd_wait_for 60 more_than "$before" podman_ticks "$name" ||
    fail "$what: the restored $name never ticked on (still $before ticks after 60 s)" || return 1
  podman_ rm -f -t 0 "$name" >/dev/null
  rm -f "$file"
}

file_ticks() { grep -c '^tick' "$1" || true; }
RAW_DIR=""
bench_raw() { # kind size: the floor, the same program with no container stack
  local log pid before what="raw criu, $1, $2 MiB" key="$1,raw,$2"
  RAW_DIR=$(mktemp -d "$IMAGES_AT/lazarus-bcp-raw.XXXXXX"); log=$RAW_DIR/out
  local -a prog
  case $1 in
    random)
      gcc -O2 -static -o "$RAW_DIR/memhog" test/images/memhog.c || fail "$what: build memhog" || return 1
      prog=("$RAW_DIR/memhog" "$2") ;;
    mixed) prog=("$PYTHON" -u -c "$MIXED_FILL" "$2") ;;
  esac
  setsid "${prog[@]}" >"$log" 2>&1 </dev/null &
  pid=$!
  disown "$pid"
  echo "$pid" >"$RAW_DIR/pid"
  pd_wait_for 300 grep -q '^ready' "$log" || fail "$what: not ready within 300 s" || return 1
  mkdir "$RAW_DIR/img"
  timed criu dump -t "$pid" -D "$RAW_DIR/img" -o dump.log ||
    fail "$what: criu dump (log: $RAW_DIR/img/dump.log)" || return 1
  record "$key,cp"
  add_run "$key,size" "$(du -sm "$RAW_DIR/img" | awk '{print $1}')"
  before=$(file_ticks "$log")
  timed criu restore -D "$RAW_DIR/img" -o restore.log -d ||
    fail "$what: criu restore (log: $RAW_DIR/img/restore.log)" || return 1
  record "$key,rst"
  # The restored program (same pid) writes on to the same file.
  pd_wait_for 60 more_than "$before" file_ticks "$log" ||
    fail "$what: the restored program never ticked on (still $before ticks after 60 s)" || return 1
  kill -9 "$pid" 2>/dev/null || true
  rm -rf "$RAW_DIR"
  RAW_DIR=""
}

clear_podman() {
  [ -n "${PODMAN:-}" ] && [ -n "$PD_DIR" ] || return 0
  local ids
  ids=$(podman_ ps -aq 2>/dev/null || true)
  # shellcheck disable=SC2086
  [ -z "$ids" ] || podman_ rm -f -t 0 $ids >/dev/null 2>&1 || true
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
  clear_podman
  if [ -n "$RAW_DIR" ]; then
    [ -f "$RAW_DIR/pid" ] && kill -9 "$(cat "$RAW_DIR/pid")" 2>/dev/null
    rm -rf "$RAW_DIR"
    RAW_DIR=""
  fi
}
failures=0
failed_cell() { # key
  r[$1,fail]=1
  failures=$((failures + 1))
  clear_workloads
}

for run in $(seq "$RUNS"); do
  for size in $SIZES; do
    for kind in $KINDS; do
      pd_log "run $run/$RUNS: $kind $size MiB"
      for path in $PATHS; do
        case $path in
          raw) bench_raw "$kind" "$size" || failed_cell "$kind,raw,$size" ;;
          direct) bench_direct "$kind" "$size" || failed_cell "$kind,direct,$size" ;;
          podman) [ -z "$PODMAN" ] || bench_podman "$kind" "$size" || failed_cell "$kind,podman,$size" ;;
          docker | ctr)
            for rt in $RUNTIMES; do
              "bench_$path" "$kind" "$rt" "$size" || failed_cell "$kind,$rt,$path,$size"
            done ;;
          *) pd_log "unknown path $path (PATHS)"; exit 1 ;;
        esac
      done
    done
  done
done

# The median of a cell; "fail" if a run of it failed, "n/a" if not measured.
cell() { # key metric
  [ -z "${r[$1,fail]:-}" ] || { echo fail; return; }
  [ -n "${r[$1,$2]:-}" ] || { echo n/a; return; }
  # shellcheck disable=SC2086 # one value a word
  median ${r[$1,$2]}
}
spread() { # key metric
  if [ -n "${r[$1,fail]:-}" ] || [ -z "${r[$1,$2]:-}" ]; then echo -; return; fi
  # shellcheck disable=SC2086
  printf '%s\n' ${r[$1,$2]} | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'
}
sum2() { # a b: their sum, or the first of them that is not a number
  awk -v a="$1" -v b="$2" 'BEGIN { if (a !~ /^[0-9.]+$/) print a; else if (b !~ /^[0-9.]+$/) print b; else printf "%.2f", a + b }'
}

version=$("${CONTAINERD:-/usr/bin/containerd}" --version | awk '{print $3}')
printf '\n%s run(s) per cell, medians (min-max); containerd %s, Docker %s, Podman %s, %s\n\n' \
  "$RUNS" "$version" "$(pd_docker version -f '{{.Server.Version}}')" "${PODMAN:-not installed}" \
  "$(date -u +%Y-%m-%dT%H:%MZ)"
echo "| workload | operation | runc (s) | lazarus (s) | x runc | raw criu (s) | x raw | podman (s) | runc CPU (s) | lazarus CPU (s) | CPU x runc | image MB runc / lazarus / raw / podman |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for size in $SIZES; do
  for kind in $KINDS; do
    raw="$kind,raw,$size" pod="$kind,podman,$size"
    for path in $PATHS; do
      [ "$path" = docker ] || [ "$path" = ctr ] || continue
      a="$kind,$RUNC,$path,$size" b="$kind,$LAZARUS,$path,$size"
      for op in cp rst both; do
        case $op in
          cp) label="$path checkpoint" ;;
          rst) label="$path restore" ;;
          both) label="$path checkpoint + restore" ;;
        esac
        if [ $op = both ]; then
          aw=$(sum2 "$(cell "$a" cp,wall)" "$(cell "$a" rst,wall)")
          bw=$(sum2 "$(cell "$b" cp,wall)" "$(cell "$b" rst,wall)")
          rw=$(sum2 "$(cell "$raw" cp,wall)" "$(cell "$raw" rst,wall)")
          ac=$(sum2 "$(cell "$a" cp,cpu)" "$(cell "$a" rst,cpu)")
          bc=$(sum2 "$(cell "$b" cp,cpu)" "$(cell "$b" rst,cpu)")
          pw=$(sum2 "$(cell "$pod" cp,wall)" "$(cell "$pod" rst,wall)")
          as="" bs="" sizes=""
        else
          aw=$(cell "$a" $op,wall) bw=$(cell "$b" $op,wall) rw=$(cell "$raw" $op,wall)
          ac=$(cell "$a" $op,cpu) bc=$(cell "$b" $op,cpu) pw=$(cell "$pod" $op,wall)
          as=" ($(spread "$a" $op,wall))" bs=" ($(spread "$b" $op,wall))" sizes=""
          if [ $op = cp ] && [ "$path" = docker ]; then
            sizes="$(cell "$a" size) / $(cell "$b" size) / $(cell "$raw" size) / $(cell "$pod" size)"
          fi
        fi
        [ "$path" = docker ] || pw=""
        printf '| %s %s MiB | %s | %s%s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
          "$kind" "$size" "$label" "$aw" "$as" "$bw" "$bs" "$(ratio "$bw" "$aw")" "$rw" \
          "$(ratio "$bw" "$rw")" "$pw" "$ac" "$bc" "$(ratio "$bc" "$ac")" "$sizes"
      done
    done
  done
done
if [[ " $PATHS " == *" direct "* ]]; then
  printf '\nThe direct path (image path, Lazarus only) against raw CRIU:\n\n'
  echo "| workload | operation | lazarus (s) | raw criu (s) | x raw | lazarus CPU (s), whole command |"
  echo "|---|---|---:|---:|---:|---:|"
  for size in $SIZES; do
    for kind in $KINDS; do
      d="$kind,direct,$size" raw="$kind,raw,$size"
      for op in cp rst; do
        label="direct dump"; [ $op = cp ] || label="direct restore"
        printf '| %s %s MiB | %s | %s (%s) | %s | %s | %s |\n' "$kind" "$size" "$label" \
          "$(cell "$d" $op,wall)" "$(spread "$d" $op,wall)" "$(cell "$raw" $op,wall)" \
          "$(ratio "$(cell "$d" $op,wall)" "$(cell "$raw" $op,wall)")" "$(cell "$d" $op,cpu)"
      done
    done
  done
fi
if [ "$failures" -gt 0 ]; then
  pd_log "$failures measurement(s) failed: see the FAIL lines above"
  exit 1
fi
