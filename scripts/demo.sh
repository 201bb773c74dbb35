#!/usr/bin/env bash
# The seed demo: a busybox counter ("the looper") run by Docker with Lazarus
# as its runtime, on private containerd + dockerd sets that this script
# starts and stops (scripts/lib/private-daemons.sh; the host's own daemons
# are not touched). Two parts:
#   1. On host A: `docker checkpoint create` stops the looper,
#      `docker start --checkpoint` brings it back, and it counts on from
#      where it stopped.
#   2. Host A to host B: `lazarus checkpoint --export` writes the looper,
#      with the changes it made to its root filesystem, to one archive file;
#      `lazarus inspect` shows what is in it; a second daemon set (host B:
#      its own roots and sockets, only the image loaded) runs
#      `lazarus restore --import`, and the looper counts on there, its file
#      changes with it.
# Part 2 needs the archive commands of the `lazarus` CLI: without them it is
# skipped, except under CI=true, where that is a failure.
set -euo pipefail
here=$(dirname "$0")
PD_NAME=demo
# shellcheck source=lib/private-daemons.sh
. "$here/lib/private-daemons.sh"
command -v containerd-shim-lazarus-v2 >/dev/null ||
  { echo "containerd-shim-lazarus-v2 is not on PATH: run scripts/install.sh" >&2; exit 1; }

# `docker` and `lazarus` below talk to the current host's private daemons.
HOST=""
host() { HOST=$1; pd_use "$2"; }
docker() { pd_docker "$@"; }
lazarus() { pd_lazarus "$@"; }
prompt() { # print a command as one would type it
  local arg line=""
  for arg in "$@"; do
    case $arg in
      *[!A-Za-z0-9_./:=@%+,-]*) line+=" '$arg'" ;;
      *) line+=" $arg" ;;
    esac
  done
  printf '[host %s] $%s\n' "$HOST" "$line"
}
show() { prompt "$@"; "$@"; } # print a command, run it
say() { printf '\n== %s\n' "$*"; }
die() { pd_log "FAILED: $*"; exit 1; }

# The numbers the looper printed (its logs hold nothing else).
numbers() { docker logs "$1" 2>&1 | grep -E '^[0-9]+$' || true; }
counted() { [ "$(numbers "$1" | wc -l)" -ge "$2" ]; } # container at-least
status() { docker inspect -f '{{.State.Status}}' "$1"; }
stopped() { [ "$(status "$1")" = exited ]; }
# What the looper did to its root filesystem, as seen from inside it.
files='cat /data.txt; grep "^demo:" /etc/passwd; [ -e /bin/vi ] && echo "/bin/vi is there" || echo "/bin/vi is gone"'

tmp=$(mktemp -d /tmp/lazarus-demo.XXXXXX)
PD_REMOVE+=("$tmp")
trap pd_stop_all EXIT

say "Host A: a private containerd + dockerd, the busybox test image loaded"
pd_start "$tmp/a"
A=$PD_DIR
host A "$A"
pd_load_test_image

# shellcheck disable=SC2016 # expanded by the container's shell
looper='echo "written on host A" > /data.txt
echo "demo:x:1000:1000:added on host A:/tmp:/bin/sh" >> /etc/passwd
rm /bin/vi
i=0; while true; do echo $i; i=$((i + 1)); sleep 1; done'
say "The looper changes its root filesystem, then counts once a second:"
printf '%s\n' "$looper" | sed 's/^/    /'
# shellcheck disable=SC2016 # printed as written
printf '[host A] $ docker run -d --runtime lazarus --name looper lazarus-test/busybox sh -c "$looper"\n'
docker run -d --runtime lazarus --name looper lazarus-test/busybox sh -c "$looper" >/dev/null
pd_wait_for 30 counted looper 4 || die "the looper did not count to 3 within 30 s"
show docker logs looper
printf 'runtime: %s\n' "$(docker inspect -f '{{.HostConfig.Runtime}}' looper)"

say "Part 1: checkpoint with Docker (the looper stops), restore with Docker"
show docker checkpoint create looper cp1
pd_wait_for 10 stopped looper || die "the looper still runs after docker checkpoint create"
before=$(numbers looper | wc -l)
last=$(numbers looper | tail -1)
sleep 2
[ "$(numbers looper | wc -l)" = "$before" ] || die "the looper printed on after its checkpoint"
printf 'status: %s; 2 s later the logs still end at %s\n' "$(status looper)" "$last"
# Typed straight after the checkpoint, as a user would: Lazarus's copy of the
# checkpoint differs from the one Docker uploads back (moby#42900 is the race
# runc's containers still meet), so this succeeds on the first try.
show docker start --checkpoint cp1 looper
pd_wait_for 30 counted looper $((before + 2)) || die "the restored looper did not count on within 30 s"
first=$(numbers looper | sed -n "$((before + 1))p")
show docker logs --tail 4 looper
numbers looper | tail -n +$((before + 1)) | awk -v last="$last" '$1 <= last { exit 1 }' ||
  die "the restored looper printed a number <= $last: it started over"
printf 'last number before the checkpoint: %s, first after the restore: %s\n' "$last" "$first"

if ! command lazarus checkpoint --help >/dev/null 2>&1 && [ "${CI:-}" != true ]; then
  pd_log "part 2 skipped: this lazarus ($(type -P lazarus || echo 'not on PATH')) has no 'checkpoint' command; run scripts/install.sh"
  pd_log "demo OK (part 1): the looper counted on from $last to $first after docker start --checkpoint"
  exit 0
fi

say "Part 2: from host A to host B through one archive file"
prompt docker exec looper sh -c "$files"
docker exec looper sh -c "$files" | tee "$tmp/files-a"
archive=$tmp/looper.tar.zst
show lazarus checkpoint looper --export "$archive"
pd_wait_for 10 stopped looper || die "the looper still runs on host A after lazarus checkpoint"
last=$(numbers looper | tail -1)
printf 'status on host A: %s, last number: %s\n' "$(status looper)" "$last"
show ls -l "$archive"
show lazarus inspect "$archive"

say "Host B: a second containerd + dockerd (own roots and sockets), only the image loaded"
pd_start "$tmp/b"
host B "$PD_DIR"
pd_load_test_image
show docker ps -a
prompt lazarus restore --import "$archive"
lazarus restore --import "$archive" | tee "$tmp/restored"
name=$(tail -1 "$tmp/restored")
[ -n "$name" ] || die "lazarus restore printed no container name"
pd_wait_for 30 counted "$name" 2 || die "the looper restored on host B did not count within 30 s"
first=$(numbers "$name" | head -1)
show docker ps
printf 'runtime on host B: %s\n' "$(docker inspect -f '{{.HostConfig.Runtime}}' "$name")"
show docker logs "$name"
[ "$first" -gt "$last" ] || die "on host B the looper started at $first, not after $last: it started over"
prompt docker exec "$name" sh -c "$files"
docker exec "$name" sh -c "$files" | tee "$tmp/files-b"
cmp -s "$tmp/files-a" "$tmp/files-b" || die "the looper's files on host B differ from those on host A"
printf 'last number on host A: %s, first on host B: %s; /data.txt, /etc/passwd and /bin/vi as on host A\n' "$last" "$first"
pd_log "demo OK: the looper counted on after docker start --checkpoint, and moved from host A to host B"
