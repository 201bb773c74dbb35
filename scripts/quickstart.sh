#!/usr/bin/env bash
# From nothing to a counting container: set up the host (containerd 1.7 and
# 2.1, Docker 26, CRIU 4.2, image tools), install Lazarus, run the demo.
set -euo pipefail
here=$(dirname "$0")
"$here/setup-host.sh"
"$here/install.sh"
"$here/demo.sh"
