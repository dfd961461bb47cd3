#!/bin/sh
# init.sh: /init of the test initramfs (see build-initramfs.sh). As PID 1 it
# attaches the NBD server that run.sh relays to 10.0.2.100:10809 with the
# kernel client and puts filesystems and fio on it. Every step runs in its
# own `timeout` child (this script re-executed with the step's name) and
# prints one line on the console:
#
#	EXTENTD-VM PASS <step> <seconds>s
#	EXTENTD-VM FAIL <step> <seconds>s rc=<code>
#
# and at the end "EXTENTD-VM DONE pass=<n> fail=<n>", then poweroff. After
# each filesystem is unmounted and the device disconnected it prints
# "EXTENTD-VM CRASH <fs>": run.sh then kill -9s the server and restarts it
# (the guest waits 3 s, then reconnects with retries).
# Kernel command line knobs: extentd_fs="ext2 ext4 xfs", extentd_conns=2,
# extentd_mb=<MiB of files per filesystem>.
export PATH=/sbin:/bin
dev=/dev/nbd0
srv=10.0.2.100
port=10809
state=/tmp/state

log() { echo "EXTENTD-VM $*"; }

# ---- steps (each runs as a child: /init STEP ARGS...) ----

step_modules() {
	for m in $(cat /lib/modules/load-order); do
		insmod "/lib/modules/$m.ko" || return 1
	done
}

step_network() {
	ip link set lo up
	ip link set eth0 up || return 1
	ip addr add 10.0.2.15/24 dev eth0 || return 1
}

step_connect() {
	# Retried: after a server restart the relay may not reach it at once.
	i=0
	until nbd-client "$srv" "$port" "$dev" -b 4096 -C "$conns" -t 60 -N ""; do
		i=$((i + 1))
		[ $i -gt 30 ] && return 1
		sleep 1
	done
	# Wait for the size to appear (netlink configure is asynchronous).
	i=0
	while [ "$(cat /sys/block/nbd0/size)" = 0 ]; do
		i=$((i + 1))
		[ $i -gt 100 ] && return 1
		usleep 100000
	done
}

# What the kernel made of the negotiation: write_cache "write back" means
# NBD_FLAG_SEND_FLUSH, fua=1 means SEND_FUA too (the kernel enables FUA
# only with both).
step_negotiated() {
	wc=$(cat /sys/block/nbd0/queue/write_cache)
	fua=$(cat /sys/block/nbd0/queue/fua)
	log "INFO size=$(($(cat /sys/block/nbd0/size) * 512)) write_cache=\"$wc\" fua=$fua" \
		"max_sectors_kb=$(cat /sys/block/nbd0/queue/max_sectors_kb)" \
		"discard_max_bytes=$(cat /sys/block/nbd0/queue/discard_max_bytes)" \
		"nr_hw_queues=$(ls /sys/block/nbd0/mq | wc -l)" \
		"flags=$(cat /sys/kernel/debug/nbd/nbd0/flags 2>/dev/null | tr '\n' ' ')"
	[ "$wc" = "write back" ] && [ "$fua" = 1 ]
}

step_disconnect() {
	nbd-client -d "$dev" || return 1
	i=0
	while [ "$(cat /sys/block/nbd0/size)" != 0 ]; do
		i=$((i + 1))
		[ $i -gt 100 ] && return 1
		usleep 100000
	done
}

step_mkfs() {
	case $1 in
	ext2 | ext4) mkfs."$1" -q -F -b 4096 "$dev" ;;
	xfs) mkfs.xfs -q -f "$dev" ;;
	esac
}

step_mount() { mount -t "$1" "$dev" /mnt; }

step_umount() { umount /mnt; }

# Write a tree of random files of assorted sizes, checksums kept in /tmp
# (outside the filesystem under test).
step_populate() {
	mb=$1
	mkdir -p /mnt/a/b/c /mnt/d || return 1
	n=0 total=0
	for kb in 1 3 4 7 64 100 1024 4096 5 0 257 2048; do
		for dir in /mnt /mnt/a /mnt/a/b/c /mnt/d; do
			n=$((n + 1))
			dd if=/dev/urandom of="$dir/f$n" bs=1024 count=$kb 2>/dev/null || return 1
			total=$((total + kb))
		done
	done
	i=0
	while [ $total -lt $((mb * 1024)) ]; do
		i=$((i + 1))
		dd if=/dev/urandom of="/mnt/d/big$i" bs=1M count=4 2>/dev/null || return 1
		total=$((total + 4096))
	done
	(cd /mnt && find . -type f | sort | xargs sha256sum) >"$state.sums" || return 1
	log "INFO files=$(wc -l <"$state.sums") kib=$total"
	sync
}

step_verify() {
	echo 3 >/proc/sys/vm/drop_caches
	(cd /mnt && sha256sum -c -s "$state.sums") || return 1
	# No file may have appeared or vanished.
	(cd /mnt && find . -type f | sort) >"$state.names"
	awk '{print $2}' "$state.sums" | cmp -s - "$state.names"
}

step_fsck() {
	case $1 in
	ext2 | ext4) e2fsck -fn "$dev" ;;
	xfs) xfs_repair -n "$dev" ;;
	esac
}

# fio on a file inside the mounted filesystem, verified with crc32c.
step_fio_file() {
	fio --name=file --directory=/mnt --size=24M --rw=randwrite \
		--bssplit=4k/50:16k/30:64k/20 --ioengine=libaio --iodepth=8 --direct=1 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --fsync=64 \
		--output-format=terse >/tmp/fio.out 2>&1 || { cat /tmp/fio.out; return 1; }
	rm -f /mnt/file.0.0
}

# fio on the raw device: mixed sizes over both hardware queues, O_DIRECT,
# flushed at the end (end_fsync), then O_DSYNC writes (FUA); each verified.
step_fio_raw() {
	fio --name=raw --filename="$dev" --size=48M --rw=randwrite \
		--bssplit=4k/40:8k/10:64k/25:256k/15:1m/10 --ioengine=libaio --iodepth=16 \
		--direct=1 --numjobs=2 --offset_increment=256M --group_reporting \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --end_fsync=1 \
		--output-format=terse >/tmp/fio.out 2>&1 || { cat /tmp/fio.out; return 1; }
	fio --name=fua --filename="$dev" --offset=768M --size=1M --rw=randwrite \
		--bs=4k --ioengine=psync --direct=1 --sync=1 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 \
		--output-format=terse >/tmp/fio.out 2>&1 || { cat /tmp/fio.out; return 1; }
}

# After a disconnect, a kill -9 of the server and a reconnect (new
# connections, empty page cache), the data fio wrote must still verify.
step_fio_raw_verify() {
	fio --name=raw --filename="$dev" --size=48M --rw=randwrite \
		--bssplit=4k/40:8k/10:64k/25:256k/15:1m/10 --ioengine=libaio --iodepth=16 \
		--direct=1 --numjobs=2 --offset_increment=256M --group_reporting \
		--verify=crc32c --verify_only=1 --verify_fatal=1 \
		--output-format=terse >/tmp/fio.out 2>&1 || { cat /tmp/fio.out; return 1; }
}

step_discard() { blkdiscard "$dev"; }

# ---- driver (PID 1) ----

pass=0
fail=0
# run NAME TIMEOUT STEP ARGS...
run() {
	name=$1 limit=$2
	shift 2
	t0=$(cut -d. -f1 /proc/uptime)
	timeout "$limit" /bin/sh /init "$@"
	rc=$?
	dt=$(($(cut -d. -f1 /proc/uptime) - t0))
	if [ $rc = 0 ]; then
		pass=$((pass + 1))
		log "PASS $name ${dt}s"
	else
		fail=$((fail + 1))
		log "FAIL $name ${dt}s rc=$rc"
	fi
	return $rc
}

finish() {
	log "DONE pass=$pass fail=$fail"
	sync
	poweroff -f
}

if [ $$ != 1 ]; then
	# Child: run one step. Knobs come from the environment.
	s=$1
	shift
	"step_$s" "$@"
	exit $?
fi

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tmpfs tmp /tmp
conns=2
fslist="ext2 ext4 xfs"
mb=16
for a in $(cat /proc/cmdline); do
	case $a in
	extentd_conns=*) conns=${a#*=} ;;
	extentd_fs=*) fslist=$(echo "${a#*=}" | tr , ' ') ;;
	extentd_mb=*) mb=${a#*=} ;;
	esac
done
export conns
log "START kernel=$(uname -r) conns=$conns fs=\"$fslist\" mb=$mb"

run modules 30 modules || finish
run network 10 network || finish
run connect 30 connect || finish
run negotiated 10 negotiated
for fs in $fslist; do
	run "$fs-mkfs" 120 mkfs "$fs" || continue
	run "$fs-mount" 30 mount "$fs" || continue
	run "$fs-populate" 240 populate "$mb"
	[ "$fs" = xfs ] && run "$fs-fio-file" 180 fio_file
	run "$fs-umount" 60 umount || finish
	# The host kills the server (SIGKILL) when it sees the CRASH line and
	# starts it again on the same image: what follows reads, through new
	# connections and an empty page cache, what the kernel had flushed.
	run "$fs-disconnect" 30 disconnect || finish
	log "CRASH $fs"
	sleep 3
	run "$fs-reconnect-after-kill" 60 connect || finish
	run "$fs-fsck" 120 fsck "$fs"
	run "$fs-remount" 30 mount "$fs" || continue
	run "$fs-verify" 120 verify
	run "$fs-umount2" 60 umount || finish
done
run fio-raw 300 fio_raw
# Both jobs' writes went over both connections (hardware queues); the
# kernel sends each FLUSH (end_fsync) on one of them only, so they survive
# the kill only if that flush covers every connection (MULTI_CONN).
run fio-disconnect 30 disconnect || finish
log "CRASH raw"
sleep 3
run fio-reconnect-after-kill 60 connect || finish
run fio-raw-verify 180 fio_raw_verify
run discard 60 discard
run disconnect 30 disconnect
finish
