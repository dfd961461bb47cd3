#!/usr/bin/env bash
# Start nbd-server (3.x) for bench/run.sh from a generated config file.
#
#   nbd-server.sh PORT BACKING PIDFILE
#
# nbd-server's -d (no-fork) mode serves one connection and exits, which breaks
# prefill + FLUSH + fio and numjobs=2; so it runs as a daemon that writes
# PIDFILE, and the harness follows that PID (and counts the per-connection
# child processes). Export name "bench": nbd://127.0.0.1:PORT/bench.
set -euo pipefail
port=$1 backing=$2 pidfile=$3
conf="$(dirname "$backing")/nbd-server.conf"
cat > "$conf" <<CONF
[generic]
listenaddr = 127.0.0.1
port = $port
allowlist = false
[bench]
exportname = $backing
authfile = $(dirname "$backing")/no-such-allow-file
flush = true
fua = true
CONF
exec nbd-server -C "$conf" -p "$pidfile"
