#!/usr/bin/env bash
# extentd benchmark: the same fio workloads against extentd and its peers
# (nbdkit file / cache filter / memory, qemu-nbd, nbd-server), interleaved.
#   bench/run.sh                 # everything: 3 reps, ~25 min on 2 cores
#   bench/run.sh --quick --only W1,W3 --servers extentd,nbdkit-file
#   bench/run.sh --help          # all options and the workload definitions
# Installs nothing: it checks for fio (nbd engine), nbdkit, qemu-utils,
# nbd-server, libnbd-bin and names the missing packages.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v python3 >/dev/null || { echo "bench/run.sh: needs python3 (package python3)" >&2; exit 1; }
exec python3 "$here/lib/harness.py" "$@"
