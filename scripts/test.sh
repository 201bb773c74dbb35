#!/usr/bin/env bash
# All of Lazarus's checks: formatting, clippy, unit tests, the docs' tests
# (crates/lazarus-cli/tests/docs.rs: links resolve, docs/cli.md matches
# every command's --help), the migration demo
# (two network-namespace hosts, the installed lazarus), and the end-to-end
# suite against Lazarus and runc (the reference) on containerd 1.7 and 2.1.
# Needs the host set up (scripts/quickstart.sh or scripts/setup-host.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n=== %s\n' "$*"; }
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "unit tests, and the docs' tests (links, the CLI reference against --help)"
cargo test --workspace --locked --lib --bins --test docs
step "migration demo: Redis between two network-namespace hosts"
scripts/demo-migrate.sh
step "end-to-end suite"
test/run-e2e.sh
