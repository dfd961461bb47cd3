"""The one place where the benchmark's workloads and servers are defined.

Every fio job is `fio --name=<id> FIO_COMMON <target> <fio args>` where the
target is `--uri=nbd://127.0.0.1:PORT[/export]`. Edit here, nowhere else:
harness.py, the help text, results.json and summary.md all read these tables.
"""

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

# Added to every fio run (plus --runtime/--ramp_time from the command line).
FIO_COMMON = ["--ioengine=nbd", "--time_based", "--group_reporting"]

# The W3 prefill: written once before W3's measured reads, then one NBD FLUSH.
PREFILL = ["--rw=write", "--bs=1M", "--iodepth=8", "--size=1G"]

# unit: "iops" or "bw" (what the table shows first).
# session: "main" workloads share one backing file per (server, rep), in this
#   order; W1 therefore always starts on an empty file. "big" runs in its own
#   session with extentd started with a small cache (see BIG_CACHE).
WORKLOADS = {
    "W1": dict(desc="randwrite 4k qd32", unit="iops", session="main",
               fio=["--rw=randwrite", "--bs=4k", "--iodepth=32"]),
    "W2": dict(desc="seqwrite 1M qd8", unit="bw", session="main",
               fio=["--rw=write", "--bs=1M", "--iodepth=8"]),
    "W3": dict(desc="randread 4k qd32 over 1 GiB written", unit="iops", session="main",
               prefill=True,
               fio=["--rw=randread", "--bs=4k", "--iodepth=32", "--size=1G"]),
    "W4": dict(desc="randrw 70/30 4k/16k/64k qd16", unit="iops", session="main",
               fio=["--rw=randrw", "--rwmixread=70", "--bssplit=4k/50:16k/30:64k/20",
                    "--iodepth=16"]),
    "W5": dict(desc="randwrite 4k qd1, FLUSH every 32", unit="iops", session="main",
               fio=["--rw=randwrite", "--bs=4k", "--iodepth=1", "--fsync=32"]),
    "W6": dict(desc="randwrite 4k qd16 x 2 connections", unit="iops", session="main",
               fio=["--rw=randwrite", "--bs=4k", "--iodepth=16", "--numjobs=2"]),
    # W1 again, but extentd's cache is 64x smaller than the device: the dirty
    # limit is hit within a second, so the figure is sustained, writeback-bound
    # throughput. The peers have no such knob (their cache is the kernel page
    # cache, ~4.6 GiB of dirty pages here): they run it only with --big-all.
    "W1-big": dict(desc="randwrite 4k qd32, cache 64x smaller than device", unit="iops",
                   session="big",
                   fio=["--rw=randwrite", "--bs=4k", "--iodepth=32"]),
}

# Not fio: whole-tool workloads, one session each.
EXTRAS = {
    "copy": dict(desc="nbdcopy of a 4 GiB image, 10% allocated, to a sparse file"),
    "fs": dict(desc="nbdfuse + loop + mkfs.ext4 + untar source tree + sync (root)"),
}

# Fraction of the copy source that holds data, and the size range of its extents.
COPY_FILL = 0.10
COPY_EXTENT_MIN = 64 * KiB
COPY_EXTENT_MAX = 4 * MiB

# extentd's cache for W1-big (both --cache-size and --max-dirty when it has them).
BIG_CACHE = 64 * MiB

# Servers, in the order they run within a repetition. Placeholders:
# {port} {backing} {size} {dir} {pidfile} {benchdir} {extentd} {mport} {extentd_flags}
# "pidfile": the server daemonizes; its PID is read from {pidfile}.
# "needs": commands that must exist (checked before anything runs), with the
# Debian package that provides them.
SERVERS = {
    "extentd": dict(
        cmd="{extentd} serve {backing} {extentd_flags}",
        needs={"go": "golang (or Go from go.dev)"},
        metrics=True),
    "nbdkit-file": dict(
        cmd="nbdkit -f -i 127.0.0.1 -p {port} file {backing}",
        needs={"nbdkit": "nbdkit"}),
    "nbdkit-cache": dict(
        # the cache filter keeps its cache file in $TMPDIR = the session folder
        cmd="nbdkit -f -i 127.0.0.1 -p {port} --filter=cache file {backing} cache=writeback",
        needs={"nbdkit": "nbdkit"}),
    "qemu-nbd": dict(
        # -t: persistent (without it qemu-nbd exits after its first client)
        cmd="qemu-nbd -f raw --cache=writeback --aio=threads -b 127.0.0.1 -p {port} "
            "--shared=8 -t -x '' {backing}",
        needs={"qemu-nbd": "qemu-utils"}),
    "nbd-server": dict(
        # daemonizes (its -d mode serves one connection only): follow the PID file
        cmd="{benchdir}/servers/nbd-server.sh {port} {backing} {pidfile}",
        uri="nbd://127.0.0.1:{port}/bench", pidfile=True,
        needs={"nbd-server": "nbd-server"}),
    "nbdkit-memory": dict(
        # the ceiling: no disk at all. Its "backing file" stays empty; no copy run.
        cmd="nbdkit -f -i 127.0.0.1 -p {port} memory {size}",
        needs={"nbdkit": "nbdkit"}, memory=True),
}
