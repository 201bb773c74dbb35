#!/usr/bin/env bash
# Runs the end-to-end suite (cargo test --test e2e) for each requested
# runtime x containerd combination and prints a summary. Exits non-zero if
# any combination fails. See test/README.md.
#
# Environment:
#   LAZARUS_E2E_RUNTIMES     runtimes to test   (default: "io.containerd.lazarus.v2 io.containerd.runc.v2")
#   LAZARUS_E2E_CONTAINERDS  containerd versions (default: "1.7 2.1")
#   LAZARUS_E2E_THREADS      --test-threads      (default: 2)
#   LAZARUS_E2E_HEAVY        1/0 for every leg; unset: 1 on the containerd 1.7
#                            legs only (the fault cases' 1 GiB heap and 50
#                            containers run once per runtime; 64 MiB and 10
#                            on the others)
#   CARGO_TARGET_DIR         as usual for cargo
# Arguments are passed to the test binary, e.g. a name filter:
#   test/run-e2e.sh docker::        (a folder of test/e2e; faults::kills:: a file)
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
runtimes=${LAZARUS_E2E_RUNTIMES:-"io.containerd.lazarus.v2 io.containerd.runc.v2"}
containerds=${LAZARUS_E2E_CONTAINERDS:-"1.7 2.1"}
threads=${LAZARUS_E2E_THREADS:-2}
logs=${LAZARUS_E2E_LOGS:-/var/lib/lazarus-e2e/runs/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$logs"

# Build once up front (the shim, the CLI and cri-client the suite drives, and
# the suite) so that a compile error is reported as such. `cargo test --test
# e2e` builds only the suite (the lazarus-e2e package, test/e2e), not the
# binaries: the first command is what keeps them current.
if ! { cargo build --workspace --bins && cargo test --test e2e --no-run; } >"$logs/build.log" 2>&1; then
  tail -n 40 "$logs/build.log" >&2
  echo "run-e2e: build failed (log: $logs/build.log)" >&2
  exit 2
fi

# The first panic of test `$2` in log `$1`: its "panicked at" line and up
# to 8 lines of message after it (cargo prints a failed test's output
# between "---- NAME stdout ----" and the next such header).
why_failed() {
  awk -v name="$2" '
    $0 == "---- " name " stdout ----" { inside = 1; next }
    inside && (/^---- .* stdout ----$/ || /^ *stack backtrace:/) { exit }
    inside && /panicked at/ { shown = 1 }
    shown && inside { print; if (++n >= 9) exit }
  ' "$1"
}

# Space left on the filesystem the daemon sets live on.
root=${LAZARUS_E2E_DIR:-/var/lib/lazarus-e2e}
free_space() { df -h --output=avail "$root" 2>/dev/null | tail -n 1 | tr -d ' '; }

summary=()
failed=0
for rt in $runtimes; do
  for cd in $containerds; do
    log="$logs/${rt}-containerd-${cd}.log"
    start=$(date +%s)
    heavy=${LAZARUS_E2E_HEAVY:-$([ "$cd" = 1.7 ] && echo 1 || echo 0)}
    echo "=== runtime $rt, containerd $cd, LAZARUS_E2E_HEAVY=$heavy (log: $log)"
    # The heavy fault cases dump 1 GiB heaps two at a time, several copies
    # each: a disk that fills up shows here rather than as a puzzle.
    free_before=$(free_space)
    LAZARUS_TEST_RUNTIME=$rt LAZARUS_TEST_CONTAINERD=$cd LAZARUS_E2E_HEAVY=$heavy \
      cargo test --test e2e -- --test-threads="$threads" "$@" >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    free_after=$(free_space)
    result=$(grep -E '^test result:' "$log" | tail -n 1)
    [ -n "$result" ] || result="no test result (rc=$rc)"
    if [ $rc -eq 0 ]; then
      summary+=("PASS  $rt  containerd $cd  ${secs}s  $result")
    else
      failed=1
      summary+=("FAIL  $rt  containerd $cd  ${secs}s  $result")
      summary+=("        free on $root before/after: $free_before / $free_after")
      while read -r name; do
        summary+=("        failed: $name")
        # Why, in the summary itself: the panic's place and message (the
        # logs may not outlive the machine that ran them).
        while IFS= read -r line; do
          summary+=("          ${line:0:400}")
        done < <(why_failed "$log" "$name")
      done < <(grep -E '^test .* \.\.\. FAILED$' "$log" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/')
    fi
  done
done

echo
echo "=== e2e summary (logs in $logs)"
printf '%s\n' "${summary[@]}"
exit $failed
