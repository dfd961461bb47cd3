#!/bin/bash
# run.sh: boot a Debian kernel under qemu and drive an NBD server on this
# host through the real Linux kernel client (nbd-client, ext2/ext4/xfs, fio).
#
# Usage: test/vm/run.sh
#
# Environment:
#   EXTENTD_VM_SERVER   extentd (default) or nbdkit (reference run)
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
	"$bin" serve "$img" -i 127.0.0.1 -p 0 --size 1G --admin-address 127.0.0.1:0 \
		--addr-file "$work/addr" >"$work/server.log" 2>&1 &
	srv_pid=$!
	;;
nbdkit)
	truncate -s 1G "$img"
	port=$(freeport)
	nbdkit -f -v -i 127.0.0.1 -p "$port" file "$img" >"$work/server.log" 2>&1 &
	srv_pid=$!
	;;
*)
	log "EXTENTD_VM_SERVER must be extentd or nbdkit"
	exit 1
	;;
esac
for i in $(seq 100); do
	if [ "$server" = extentd ] && [ -s "$work/addr" ]; then
		port=$(sed -n 's|^nbd nbd://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/addr" | head -1)
		admin=$(sed -n 's|^admin ||p' "$work/addr")
	fi
	if [ -n "${port:-}" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
	kill -0 "$srv_pid" 2>/dev/null || { cat "$work/server.log" >&2; log "server exited"; exit 1; }
	sleep 0.1
done
[ -n "${port:-}" ] || { log "server did not start"; exit 1; }
log "$server listening on 127.0.0.1:$port (pid $srv_pid)"

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
			-append "console=ttyS0 panic=-1 rdinit=/nonexistent" </dev/null >/dev/null 2>&1) 2>/dev/null || true
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
timeout "$limit" "${qemu[@]}" -append "$cmdline" </dev/null >"$work/qemu.log" 2>&1 || rc=$?
vmtime=$((SECONDS - t1))
grep -E 'EXTENTD-VM|nbd|I/O error|EXT[24]-fs|XFS|BUG|Call Trace|Kernel panic' "$work/console.log" >&2 || true

fail=0
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
case $server in
extentd)
	busybox wget -q -O "$work/metrics.txt" "$admin/metrics" || { log "FAIL: no metrics"; fail=1; }
	grep -E '^extentd_(requests|request_errors|connections)_total' "$work/metrics.txt" >&2 || true
	flushes=$(awk '/^extentd_requests_total\{/ && /"flush"/ {s += $NF} END {print s + 0}' "$work/metrics.txt")
	errors=$(awk '/^extentd_request_errors_total\{/ {s += $NF} END {print s + 0}' "$work/metrics.txt")
	;;
nbdkit)
	flushes=$(grep -c 'flush' "$work/server.log" || true)
	errors=0
	;;
esac
log "kernel sent flush=$tapflush fua-writes=$tapfua; server counted flush=$flushes errors=$errors"
[ "${flushes:-0}" -ge "$tapflush" ] || { log "FAIL: server counted fewer FLUSH requests than were sent"; fail=1; }
[ "${errors:-0}" = 0 ] || { log "FAIL: server answered requests with errors"; fail=1; }

# A clean stop must succeed.
kill -TERM "$srv_pid"
src=0
wait "$srv_pid" || src=$?
srv_pid=
if [ "$server" = extentd ] && [ $src != 0 ]; then
	log "FAIL: extentd exited $src on SIGTERM"
	tail -20 "$work/server.log" >&2
	fail=1
fi

log "guest ${vmtime}s, total $((SECONDS - t0))s"
if [ $fail != 0 ]; then
	log "console: $work/console.log"
	EXTENTD_VM_KEEP=1
	exit 1
fi
log "PASS"
