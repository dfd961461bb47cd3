#!/bin/bash
# run.sh: boot a Debian kernel under qemu and drive an NBD server on this
# host through the real Linux kernel client (nbd-client, ext2/ext4/xfs, fio).
#
# Usage: test/vm/run.sh
#
# Environment:
#   EXTENTD_VM_SERVER   extentd (default), nbdkit (reference run) or
#                       brokenserver-MODE (test/brokenserver: must fail)
#   EXTENTD_BIN         extentd binary; default: go build ./cmd/extentd
#   EXTENTD_VM_ACCEL    auto (default: kvm if it boots, else tcg), kvm, tcg
#   EXTENTD_VM_TIMEOUT  seconds for the whole guest run (default 420)
#   EXTENTD_VM_FS       filesystems, comma separated (default ext2,ext4,xfs)
#   EXTENTD_VM_MB       MiB of files written per filesystem (default 16)
#   EXTENTD_VM_CONNS    nbd-client connections (default 2, needs MULTI_CONN)
#   EXTENTD_VM_CACHE    kernel/initramfs cache (see build-initramfs.sh)
#   EXTENTD_VM_KEEP     if set, keep the work directory (console, server log)
#
# The guest reaches the server only through one qemu user-mode guestfwd
# rule (restrict=on: no other traffic leaves the guest): 10.0.2.100:10809 in
# the guest is relayed, one process per connection, to 127.0.0.1:PORT.
#
# The relay is nbdtap (test/vm/nbdtap), which records what the kernel
# client sent on each connection: options, and requests by command and flags.
#
# Exit status 0 only if the guest printed "EXTENTD-VM DONE pass=N fail=0",
# no FAIL line and no kernel I/O or protocol error, within the timeout; the client negotiated with NBD_OPT_GO;
# the kernel sent FLUSH requests and FUA writes (it only does if the server
# advertised SEND_FLUSH and SEND_FUA); and the server counted those flushes
# and answered no request with an error.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
server=${EXTENTD_VM_SERVER:-extentd}
accel=${EXTENTD_VM_ACCEL:-auto}
limit=${EXTENTD_VM_TIMEOUT:-420}
fs=${EXTENTD_VM_FS:-ext2,ext4,xfs}
mb=${EXTENTD_VM_MB:-16}
conns=${EXTENTD_VM_CONNS:-2}
log() { echo "vm: $*" >&2; }

for t in qemu-system-x86_64 busybox go apt-get dpkg; do
	command -v "$t" >/dev/null || { log "missing tool $t"; exit 1; }
done

t0=$SECONDS
eval "$("$here/build-initramfs.sh")"
log "kernel $KERNEL, initramfs $INITRD ($((SECONDS - t0))s)"

work=$(mktemp -d "${TMPDIR:-/tmp}/extentd-vm.XXXXXX")
srv_pid=
cleanup() {
	if [ -n "$srv_pid" ] && kill -0 "$srv_pid" 2>/dev/null; then
		kill -KILL "$srv_pid" 2>/dev/null || true
		wait "$srv_pid" 2>/dev/null || true
	fi
	if [ -n "${EXTENTD_VM_KEEP:-}" ]; then
		log "kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

freeport() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
img=$work/disk.img
(cd "$repo" && go build -o "$work/nbdtap" ./test/vm/nbdtap)
case $server in
extentd)
	bin=${EXTENTD_BIN:-}
	if [ -z "$bin" ]; then
		bin=$work/extentd
		(cd "$repo" && go build -o "$bin" ./cmd/extentd)
	fi
	;;
nbdkit)
	truncate -s 1G "$img"
	port=$(freeport)
	;;
brokenserver-*)
	# Test tooling (test/brokenserver): shows that this test fails
	# against a server that loses flushed data. Not a CI target.
	bin=$work/brokenserver
	(cd "$repo" && go build -o "$bin" ./test/brokenserver)
	;;
*)
	log "EXTENTD_VM_SERVER must be extentd, nbdkit or brokenserver-MODE"
	exit 1
	;;
esac

# start_server N: start run N of the server on $img, on $port once known
# (extentd picks a free port on its first run and reports it in its
# address file; the guest's relay needs the same port on every run).
start_server() {
	local n=$1 i
	case $server in
	extentd)
		"$bin" serve "$img" -i 127.0.0.1 -p "${port:-0}" --size 1G --admin-address 127.0.0.1:0 \
			--addr-file "$work/addr.$n" >"$work/server.$n.log" 2>&1 &
		;;
	nbdkit)
		nbdkit -f -v -i 127.0.0.1 -p "$port" file "$img" >"$work/server.$n.log" 2>&1 &
		;;
	brokenserver-*)
		"$bin" -mode "${server#brokenserver-}" -listen "127.0.0.1:${port:-0}" -size 1073741824 \
			-addr-file "$work/addr.$n" "$img" >"$work/server.$n.log" 2>&1 &
		;;
	esac
	srv_pid=$!
	for i in $(seq 200); do
		if [ "$server" != nbdkit ] && [ -s "$work/addr.$n" ]; then
			port=$(sed -n 's|^nbd nbd://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/addr.$n" | head -1)
			admin=$(sed -n 's|^admin ||p' "$work/addr.$n")
		fi
		if [ -n "${port:-}" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			log "$server run $n listening on 127.0.0.1:$port (pid $srv_pid)"
			return 0
		fi
		kill -0 "$srv_pid" 2>/dev/null || { cat "$work/server.$n.log" >&2; log "server exited"; return 1; }
		sleep 0.1
	done
	log "server did not start"
	return 1
}

# Counters of earlier server runs (a kill -9 loses the process's own).
prev_flush=0
prev_errors=0
server_counts() { # prints "flushes errors" of the running server
	case $server in
	extentd)
		busybox wget -q -O "$work/metrics.txt" "$admin/metrics" || { echo "x x"; return; }
		awk '/^extentd_requests_total\{/ && /"flush"/ {f += $NF} /^extentd_request_errors_total\{/ {e += $NF} END {print f + 0, e + 0}' "$work/metrics.txt"
		;;
	nbdkit)
		echo "$(grep -c 'flush' "$work/server.$runs.log" || true) 0"
		;;
	*) echo "-1 0" ;; # no counters
	esac
}

runs=1
start_server $runs || exit 1

qemu=(qemu-system-x86_64 -m 1024 -smp 2 -display none -monitor none -no-reboot
	-serial "file:$work/console.log"
	-kernel "$KERNEL" -initrd "$INITRD"
	-netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:10809-cmd:$work/nbdtap -o $work/tap 127.0.0.1:$port"
	-device virtio-net-pci,netdev=n0)
cmdline="console=ttyS0 panic=-1 loglevel=4 extentd_fs=$fs extentd_mb=$mb extentd_conns=$conns"

# KVM may be present but unusable (nested virtualisation): probe it with a
# kernel that must boot to its "no init" panic within 15 s.
if [ "$accel" = auto ]; then
	accel=tcg
	if [ -w /dev/kvm ]; then
		(timeout 15 qemu-system-x86_64 -accel kvm -cpu host -m 256 -display none -monitor none -no-reboot \
			-serial "file:$work/probe.log" -kernel "$KERNEL" \
			-append "console=ttyS0 panic=-1 rdinit=/nonexistent" </dev/null >/dev/null 2>&1 || true) 2>/dev/null
		if grep -q 'Kernel panic' "$work/probe.log" 2>/dev/null; then accel=kvm; else log "kvm does not boot a guest here; using tcg"; fi
	fi
fi
case $accel in
kvm) qemu+=(-accel kvm -cpu host) ;;
tcg) qemu+=(-accel tcg,thread=multi -cpu max) ;;
esac
log "booting ($accel, timeout ${limit}s)"

t1=$SECONDS
rc=0
fail=0
timeout "$limit" "${qemu[@]}" -append "$cmdline" </dev/null >"$work/qemu.log" 2>&1 &
qpid=$!
# The guest prints "EXTENTD-VM CRASH <fs>" after it unmounted a filesystem
# and disconnected: the server is then killed with SIGKILL and started again
# on the same image and port, and the guest reconnects, fscks and verifies:
# what the kernel flushed must have survived.
seen=0
while kill -0 "$qpid" 2>/dev/null; do
	n=$(grep -ac '^EXTENTD-VM CRASH' "$work/console.log" 2>/dev/null || true)
	if [ "${n:-0}" -gt "$seen" ]; then
		seen=$n
		read -r f e < <(server_counts)
		if [ "$f" = x ]; then log "FAIL: no metrics before kill"; fail=1; f=0; e=0; fi
		prev_flush=$((prev_flush + f))
		prev_errors=$((prev_errors + e))
		kill -KILL "$srv_pid"
		wait "$srv_pid" 2>/dev/null || true
		runs=$((runs + 1))
		log "kill -9 of $server (guest: $(grep -a '^EXTENTD-VM CRASH' "$work/console.log" | tail -1 | cut -d' ' -f3)), restart $runs"
		start_server $runs || { log "FAIL: restart failed"; fail=1; kill "$qpid"; break; }
	fi
	sleep 0.2
done
wait "$qpid" || rc=$?
vmtime=$((SECONDS - t1))
grep -E 'EXTENTD-VM|nbd|I/O error|EXT[24]-fs|XFS|BUG|Call Trace|Kernel panic' "$work/console.log" >&2 || true

if [ $rc = 124 ]; then
	log "FAIL: guest timed out after ${limit}s"
	fail=1
elif [ $rc != 0 ]; then
	log "FAIL: qemu exited $rc"
	cat "$work/qemu.log" >&2
	fail=1
fi
if grep -q '^EXTENTD-VM FAIL' "$work/console.log"; then
	log "FAIL: guest reported failing steps"
	fail=1
fi
# The kernel's own complaints: an I/O error on nbd0 (the server answered
# with an error, or the socket died), a protocol violation it noticed, a
# request timeout, an oops.
if grep -aE 'I/O error|Wrong magic|Unexpected reply|Double reply|timed out|Call Trace|BUG:' "$work/console.log" >&2; then
	log "FAIL: the guest kernel reported errors"
	fail=1
fi
if ! grep -qE '^EXTENTD-VM DONE pass=[0-9]+ fail=0' "$work/console.log"; then
	log "FAIL: no clean final line"
	fail=1
fi

# What the kernel sent, as recorded by nbdtap on each connection (sums over
# all connections), and what the server counted.
cat "$work"/tap.* 2>/dev/null | awk '/^cmd / {n = $NF; $NF = ""; c[$0] += n; next} {o[$0]++} END {for (k in o) print "tap:", k, "x" o[k]; for (k in c) print "tap:", k c[k]}' | sort >"$work/tap.summary"
cat "$work/tap.summary" >&2
tapflush=$(awk '/^tap: cmd flush / {s += $NF} END {print s + 0}' "$work/tap.summary")
tapfua=$(awk '/^tap: cmd write flags=[a-z_,]*fua/ {s += $NF} END {print s + 0}' "$work/tap.summary")
grep -q '^tap: option GO ' "$work/tap.summary" || { log "FAIL: the client did not use NBD_OPT_GO"; fail=1; }
[ "$tapflush" -gt 0 ] || { log "FAIL: the kernel sent no FLUSH"; fail=1; }
[ "$tapfua" -gt 0 ] || { log "FAIL: the kernel sent no FUA write"; fail=1; }
read -r flushes errors < <(server_counts)
f=$flushes
if [ "$flushes" = x ]; then log "FAIL: no metrics"; fail=1; flushes=0; errors=0; fi
flushes=$((flushes + prev_flush))
errors=$((errors + prev_errors))
if [ "$server" = extentd ]; then
	grep -E '^extentd_(requests|request_errors|connections)_total' "$work/metrics.txt" >&2 || true
fi
[ "$f" = -1 ] && flushes=n/a errors=n/a
log "kernel sent flush=$tapflush fua-writes=$tapfua; server counted flush=$flushes errors=$errors"
if [ "$f" != -1 ] && [ "${flushes:-0}" -lt "$tapflush" ]; then
	log "FAIL: server counted fewer FLUSH requests than were sent"
	fail=1
fi
case $errors in 0 | n/a) ;; *) log "FAIL: server answered requests with errors"; fail=1 ;; esac

# A clean stop must succeed.
kill -TERM "$srv_pid"
src=0
wait "$srv_pid" || src=$?
srv_pid=
if [ "$server" = extentd ] && [ $src != 0 ]; then
	log "FAIL: extentd exited $src on SIGTERM"
	tail -20 "$work/server.$runs.log" >&2
	fail=1
fi

log "guest ${vmtime}s, total $((SECONDS - t0))s"
if [ $fail != 0 ]; then
	log "console: $work/console.log"
	EXTENTD_VM_KEEP=1
	exit 1
fi
log "PASS"
