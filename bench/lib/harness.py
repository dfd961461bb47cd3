#!/usr/bin/env python3
"""extentd benchmark: the same fio workloads against extentd and its peers.

Called by bench/run.sh (`bench/run.sh --help`). Python 3 standard library only.
Workloads and server commands are defined in workloads.py.

Method, per session (one server, one repetition, one fresh sparse image):
  1. a new folder under --tmpdir with a sparse image of --size named
     extentd-bench.img (the bpftrace script matches that name);
  2. the server starts; its port is awaited in /proc/net/tcp (no probe connection);
  3. each workload: (W3: prefill 1 GiB + FLUSH) fio with a ramp; the server's
     CPU (utime+stime+cutime+cstime over its process tree, /proc/PID/stat) is
     sampled from the end of the ramp to fio's exit; then one NBD FLUSH on a new
     connection ("drain": what the server still owed the image); then the
     image's allocated bytes and extent count (FIEMAP: the rows of `filefrag -v`);
  4. SIGTERM and wait (SIGKILL by PID only after 60 s); the folder is removed.
Repetitions interleave the servers: rep 1 (A B C ...), rep 2 (A B C ...), ...
Cells are medians with [min-max].
"""

import argparse
import atexit
import datetime
import fcntl
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads as W  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHDIR = os.path.dirname(HERE)
REPO = os.path.dirname(BENCHDIR)
CLK_TCK = os.sysconf("SC_CLK_TCK")
IMAGE = "extentd-bench.img"          # backing_io.bt matches this file name
GiB, MiB, KiB = W.GiB, W.MiB, W.KiB
ALL_SERVERS = list(W.SERVERS)
ALL_WORKLOADS = list(W.WORKLOADS) + list(W.EXTRAS)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def parse_size(s):
    m = re.fullmatch(r"(\d+)([kKmMgGtT]?)(i?[bB])?", s.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {s!r} (want e.g. 4G, 64M)")
    return int(m.group(1)) * {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": 1 << 40}[m.group(2).lower()]


def size_arg(n):
    """n bytes as a size string every tool here accepts (4G, 64M, 4096)."""
    for suf, div in (("G", GiB), ("M", MiB), ("K", KiB)):
        if n % div == 0:
            return f"{n // div}{suf}"
    return str(n)


# ------------------------------------------------------------ prerequisites --
def check_prereqs(servers, wls, need_root_fs):
    """Return a list of problems (strings); empty when everything is present.
    Installs nothing."""
    missing = {}   # command -> package

    def need(cmd, pkg):
        if not shutil.which(cmd):
            missing[cmd] = pkg
    need("fio", "fio")
    for s in servers:
        for cmd, pkg in W.SERVERS[s]["needs"].items():
            need(cmd, pkg)
    if not shutil.which("qemu-io") and not shutil.which("nbdsh"):
        missing["qemu-io (or nbdsh)"] = "qemu-utils (or python3-libnbd)"
    if "copy" in wls:
        need("nbdcopy", "libnbd-bin")
    if "fs" in wls and need_root_fs:
        for cmd, pkg in (("nbdfuse", "libnbd-bin"), ("fusermount3", "fuse3"),
                         ("losetup", "mount"), ("mkfs.ext4", "e2fsprogs"), ("tar", "tar")):
            need(cmd, pkg)
    problems = []
    if missing:
        pkgs = sorted(set(missing.values()))
        problems.append("missing: " + ", ".join(f"{c} (package {p})" for c, p in missing.items()) +
                        "\n  install them yourself, e.g.: sudo apt-get install " +
                        " ".join(p.split(" ")[0] for p in pkgs))
    if shutil.which("fio"):
        r = subprocess.run(["fio", "--enghelp=nbd"], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append("fio has no nbd ioengine (`fio --enghelp=nbd` failed): install "
                            "Debian/Ubuntu's fio package (built with libnbd), or build fio "
                            "with libnbd-dev present")
    return problems


# ------------------------------------------------------------------- facts --
def mount_of(path):
    dev = os.stat(path).st_dev
    best = ("?", "?", "?", "?")
    for line in read("/proc/self/mountinfo").splitlines():
        p = line.split()
        sep = p.index("-")
        maj, mnr = (int(x) for x in p[2].split(":"))
        if os.makedev(maj, mnr) == dev and (best[0] == "?" or len(p[4]) > len(best[0])):
            best = (p[4], p[sep + 1], p[sep + 2], p[sep + 3])
    return dict(zip(("mountpoint", "fstype", "source", "options"), best))


def first_line(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        lines = (r.stdout or r.stderr).strip().splitlines()
        return lines[0] if lines else "?"
    except (OSError, subprocess.TimeoutExpired):
        return None


def machine_facts(tmproot):
    mem = re.search(r"MemTotal:\s+(\d+)", read("/proc/meminfo"))
    cpu = re.search(r"model name\s*:\s*(.*)", read("/proc/cpuinfo"))
    osname = re.search(r'PRETTY_NAME="([^"]*)"', read("/etc/os-release"))
    f = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu.group(1).strip() if cpu else "?",
        "mem_total_gib": round(int(mem.group(1)) / (1 << 20), 1) if mem else None,
        "kernel": os.uname().release,
        "os": osname.group(1) if osname else "?",
        "tmp_root": tmproot,
        "tmp_fs": mount_of(tmproot),
        "loadavg_start": read("/proc/loadavg").strip(),
        "vm": {k: read(f"/proc/sys/vm/{k}").strip() for k in ("dirty_ratio", "dirty_background_ratio")},
        "versions": {},
    }
    for name, argv in (("fio", ["fio", "--version"]), ("nbdkit", ["nbdkit", "--version"]),
                       ("qemu-nbd", ["qemu-nbd", "--version"]), ("nbd-server", ["nbd-server", "-V"]),
                       ("nbdcopy", ["nbdcopy", "--version"]), ("go", ["go", "version"]),
                       ("bpftrace", ["bpftrace", "--version"])):
        if shutil.which(argv[0]):
            f["versions"][name] = first_line(argv)
    try:
        f["git"] = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h %s"],
                                  capture_output=True, text=True, timeout=10).stdout.strip()
        # extentd is built from the working tree, which may hold uncommitted work
        st = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "cmd", "extentcache",
                             "nbdserver", "alloc", "statetree", "device", "internal"],
                            capture_output=True, text=True, timeout=10).stdout
        f["git_dirty_paths"] = len([ln for ln in st.splitlines() if ln.strip()])
    except (OSError, subprocess.TimeoutExpired):
        pass
    return f


# ----------------------------------------------------------- process tree --
def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            s = read(f"/proc/{d}/stat")
            if s:
                kids.setdefault(int(s.rsplit(")", 1)[1].split()[1]), []).append(int(d))
    return kids


def tree_pids(root):
    kids, out, todo = children_map(), [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def alive(pid):
    s = read(f"/proc/{pid}/stat")
    return bool(s) and s.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def machine_cpu():
    f = [int(x) for x in read("/proc/stat").splitlines()[0].split()[1:]]
    steal = f[7] if len(f) > 7 else 0
    busy = sum(f[:8]) - f[3] - f[4] - steal
    return busy / CLK_TCK, steal / CLK_TCK


IO_KEYS = ("wchar", "syscw", "rchar", "syscr", "write_bytes")


def snapshot(root):
    """Server CPU seconds (utime+stime+cutime+cstime over the process tree:
    threads, live children, reaped children) and /proc/PID/io counters."""
    s = {"t": time.monotonic(), "cpu_s": 0.0, "nproc": 0}
    s["busy_s"], s["steal_s"] = machine_cpu()
    for k in IO_KEYS:
        s[k] = 0
    if root is None:
        return s
    for pid in tree_pids(root):
        st = read(f"/proc/{pid}/stat")
        if not st:
            continue
        f = st.rsplit(")", 1)[1].split()
        s["cpu_s"] += sum(int(x) for x in f[11:15]) / CLK_TCK
        s["nproc"] += 1
        for line in read(f"/proc/{pid}/io").splitlines():
            k, _, v = line.partition(":")
            if k in IO_KEYS:
                s[k] += int(v)
    return s


def delta(a, b):
    d = {k: b[k] - a[k] for k in ("cpu_s", "busy_s", "steal_s") + IO_KEYS}
    d["wall_s"] = b["t"] - a["t"]
    return d


# ------------------------------------------------------------- the image --
FS_IOC_FIEMAP = 0xC020660B


def extent_count(path):
    """Extents of path as FIEMAP maps them (the rows of `filefrag -v PATH`);
    one ioctl, no walk."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        buf = bytearray(struct.pack("QQIIII", 0, 0xFFFFFFFFFFFFFFFF, 0, 0, 0, 0))
        fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
        return struct.unpack("QQIIII", bytes(buf))[3]
    except OSError:
        return None
    finally:
        os.close(fd)


def fragments(path, batch=4096):
    """The "N extents found" of plain `filefrag PATH`: e2fsprogs counts a new
    extent only where the physical start is neither right after the previous
    extent nor at the previous one's place shifted by the logical gap. Walks
    the whole FIEMAP map."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    tot, start = 0, 0
    last_lg = last_ph = last_ln = 0
    try:
        while True:
            buf = bytearray(32 + 56 * batch)
            struct.pack_into("QQIIII", buf, 0, start, 0xFFFFFFFFFFFFFFFF - start, 0, 0, batch, 0)
            fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
            n = struct.unpack_from("QQIIII", buf, 0)[3]
            if n == 0:
                return tot
            last = False
            for i in range(n):
                lg, ph, ln = struct.unpack_from("QQQ", buf, 32 + 56 * i)
                fl = struct.unpack_from("I", buf, 32 + 56 * i + 40)[0]
                if lg != 0 and ph != last_ph + last_ln and ph != last_ph + lg - last_lg:
                    tot += 1
                elif tot == 0:
                    tot = 1
                last_lg, last_ph, last_ln = lg, ph, ln
                start = lg + ln
                last = last or bool(fl & 1)       # FIEMAP_EXTENT_LAST
            if last:
                return tot
    except OSError:
        return None
    finally:
        os.close(fd)


def allocated(path):
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return None


def make_sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def make_copy_source(path, size, seed=7):
    """A sparse image of size bytes, COPY_FILL of it random data in extents of
    random length and place (non-overlapping, 64 KiB aligned)."""
    rnd = random.Random(seed)
    make_sparse(path, size)
    unit = W.COPY_EXTENT_MIN
    slots = size // unit
    want = int(size * W.COPY_FILL) // unit
    used = bytearray(slots)
    pool = os.urandom(16 * MiB)
    got = 0
    fd = os.open(path, os.O_WRONLY)
    try:
        while got < want:
            n = rnd.randint(1, W.COPY_EXTENT_MAX // unit)
            n = min(n, want - got)
            start = rnd.randrange(0, slots - n)
            # keep a hole on both sides so extents stay separate
            if any(used[max(0, start - 1):start + n + 1]):
                continue
            used[start:start + n] = b"\1" * n
            off = rnd.randrange(0, len(pool) - n * unit + 1, 4096)
            os.pwrite(fd, pool[off:off + n * unit], start * unit)
            got += n
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ tracer --
class Tracer:
    """One bpftrace process for the whole run: counts write/read/fsync
    syscalls on files named IMAGE, per inode (backing_io.bt)."""

    def __init__(self, tmproot, outdir):
        st = os.stat(tmproot)
        kdev = (os.major(st.st_dev) << 20) | os.minor(st.st_dev)
        self.errf = open(os.path.join(outdir, "bpftrace.stderr"), "w")
        self.proc = subprocess.Popen(["bpftrace", "-f", "json", os.path.join(HERE, "backing_io.bt"),
                                      str(kdev)], stdout=subprocess.PIPE, stderr=self.errf,
                                     text=True, start_new_session=True)
        self.cond = threading.Condition()
        self.seq, self.latest, self.attached, self.dead = 0, {}, False, False
        threading.Thread(target=self._reader, daemon=True).start()
        deadline = time.monotonic() + 60
        with self.cond:
            while not self.attached and not self.dead and time.monotonic() < deadline:
                self.cond.wait(0.5)
        if not self.attached:
            self.close()
            raise RuntimeError("bpftrace did not attach (see bpftrace.stderr)")

    def _reader(self):
        cur = {}
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            typ = ev.get("type")
            if typ == "attached_probes":
                with self.cond:
                    self.attached = True
                    self.cond.notify_all()
            elif typ in ("map", "hist"):
                for name, val in ev["data"].items():
                    cur[name.lstrip("@")] = val if isinstance(val, dict) else {}
            elif typ == "printf" and "DUMP" in ev.get("data", ""):
                with self.cond:
                    self.latest, self.seq = cur, self.seq + 1
                    self.cond.notify_all()
                cur = {}
        with self.cond:
            self.dead = True
            self.cond.notify_all()

    def checkpoint(self, ino):
        with self.cond:
            target = self.seq + 2      # a dump that began after this call
            deadline = time.monotonic() + 10
            while self.seq < target and not self.dead and time.monotonic() < deadline:
                self.cond.wait(0.5)
            if self.seq < target:
                raise RuntimeError("bpftrace stopped dumping")
            d = self.latest
        key = str(ino)
        out = {k: int(d.get(k, {}).get(key, 0)) for k in
               ("wr_calls", "wr_bytes", "rd_calls", "rd_bytes", "sync_calls", "falloc_calls")}
        out["wr_hist"] = {str(b.get("min", 0)): b["count"]
                          for b in d.get("wr_size", {}).get(key, []) if b.get("count")}
        return out

    @staticmethod
    def diff(a, b):
        out = {k: b[k] - a[k] for k in a if k != "wr_hist"}
        out["wr_hist"] = {k: v - a["wr_hist"].get(k, 0) for k, v in b["wr_hist"].items()
                          if v - a["wr_hist"].get(k, 0)}
        return out

    def cpu_s(self):
        s = read(f"/proc/{self.proc.pid}/stat")
        if not s:
            return None
        return sum(int(x) for x in s.rsplit(")", 1)[1].split()[11:13]) / CLK_TCK

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.errf.close()


def ensure_tracefs():
    for d in ("/sys/kernel/tracing/events/syscalls", "/sys/kernel/debug/tracing/events/syscalls"):
        if os.path.isdir(d):
            return True
    subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], capture_output=True)
    return os.path.isdir("/sys/kernel/tracing/events/syscalls")


# ---------------------------------------------------------- Prometheus ----
# internal/metrics: "Size of each write reaching the backing file"
DEFAULT_WB_METRIC = "extentd_backing_write_size_bytes"
_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def scrape(addr, timeout=5):
    """Prometheus text exposition as {name{labels}: value}; {} on failure."""
    try:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m:
            try:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return out


def writeback_family(sample, want=None):
    """Name of the histogram of writeback I/O sizes: --wb-metric, else the
    histogram whose name mentions writeback and bytes/size."""
    fams = sorted({k[:-len("_bucket")] for k in (s.split("{")[0] for s in sample)
                   if k.endswith("_bucket")})
    if want:
        return want if want in fams else None
    if DEFAULT_WB_METRIC in fams:
        return DEFAULT_WB_METRIC
    cands = [f for f in fams if ("writeback" in f or "backing_write" in f) and
             ("byte" in f or "size" in f)]
    cands.sort(key=len)
    return cands[0] if cands else None


def metric_sum(sample, name):
    """Sum over label sets of one series name (e.g. foo_sum)."""
    return sum(v for k, v in sample.items() if k.split("{")[0] == name)


def metrics_delta(m0, m1, fam):
    d = {}
    if fam:
        n = metric_sum(m1, fam + "_count") - metric_sum(m0, fam + "_count")
        b = metric_sum(m1, fam + "_sum") - metric_sum(m0, fam + "_sum")
        d.update(wb_family=fam, wb_ios=n, wb_bytes=b, wb_avg=(b / n if n > 0 else None))
    # every other counter about writeback/backing/flush, for results.json
    other = {}
    for k, v in m1.items():
        base = k.split("{")[0]
        if base.endswith("_bucket") or not base.startswith("extentd"):
            continue
        if any(w in base for w in ("writeback", "backing", "flush", "dirty", "cache")):
            dv = v - m0.get(k, 0.0)
            if dv:
                other[k] = dv
    d["counters"] = other
    return d


# ------------------------------------------------------------------ server --
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    for tab in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in read(tab).splitlines()[1:]:
            f = line.split()
            if len(f) > 3 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def extentd_flags(help_text, port, mport, size, small_cache):
    """extentd serve's flags, from what its --help offers."""
    h = help_text
    fl = []
    if re.search(r"--listen\b", h) and not re.search(r"(^|\s)-i[ ,]", h):
        fl += ["--listen", f"127.0.0.1:{port}"]
    else:
        fl += ["-i", "127.0.0.1", "-p", str(port)]
    if "--size" in h:
        fl += ["--size", size_arg(size)]
    # the Prometheus endpoint: always on a port of our own (the default is fixed)
    for flag in ("--metrics-addr", "--admin-address"):
        if flag in h:
            fl += [flag, f"127.0.0.1:{mport}" if mport else ""]
            break
    if small_cache:
        for flag in ("--cache-size", "--max-dirty"):
            if flag in h:
                fl += [flag, size_arg(small_cache)]
    return fl


class Server:
    def __init__(self, run, name, backing, rundir, logpath, small_cache=0):
        spec = W.SERVERS[name]
        self.name, self.port = name, free_port()
        self.mport = free_port() if spec.get("metrics") else None
        self.pidfile = os.path.join(rundir, "server.pid")
        self.uses_pidfile = bool(spec.get("pidfile"))
        subs = dict(port=self.port, backing=backing, size=run.a.size, dir=rundir,
                    pidfile=self.pidfile, benchdir=BENCHDIR, extentd=run.extentd or "extentd",
                    mport=self.mport or "")
        if name == "extentd":
            fl = extentd_flags(run.extentd_help, self.port, self.mport, run.a.size, small_cache)
            subs["extentd_flags"] = " ".join(shlex.quote(x) for x in fl + run.a.extentd_arg)
            if not re.search(r"--(metrics-addr|admin-address) 127", subs["extentd_flags"]):
                self.mport = None
        self.cmd = spec["cmd"].format(**subs)
        self.uri = spec.get("uri", "nbd://127.0.0.1:{port}").format(**subs)
        self.logf = open(logpath, "w")
        t0 = time.monotonic()
        # TMPDIR: the nbdkit cache filter keeps its cache file there
        self.launcher = subprocess.Popen(["bash", "-c", "exec " + self.cmd], cwd=REPO,
                                         env=dict(os.environ, TMPDIR=rundir),
                                         stdin=subprocess.DEVNULL, stdout=self.logf,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = None if self.uses_pidfile else self.launcher.pid
        deadline = t0 + 30
        while time.monotonic() < deadline:
            if self.uses_pidfile and self.pid is None and read(self.pidfile).strip().isdigit():
                self.pid = int(read(self.pidfile).strip())
            if self.pid is not None and not alive(self.pid):
                break
            if not self.uses_pidfile and self.launcher.poll() is not None:
                break
            if self.pid is not None and listening(self.port):
                self.start_s = time.monotonic() - t0
                return
            time.sleep(0.02)
        exited = (self.pid is not None and not alive(self.pid)) or self.launcher.poll() is not None
        self.stop()
        why = "exited before listening" if exited else "did not listen within 30 s"
        raise RuntimeError(f"{name}: {why} on 127.0.0.1:{self.port}: "
                           f"{read(logpath)[-400:].strip()}")

    def metrics(self):
        return scrape(f"127.0.0.1:{self.mport}") if self.mport else {}

    def peak_rss(self):
        m = re.search(r"VmHWM:\s+(\d+) kB", read(f"/proc/{self.pid}/status")) if self.pid else None
        return int(m.group(1)) * 1024 if m else None

    def stop(self, timeout=60):
        """SIGTERM the server's PID and wait; SIGKILL (by PID) only after timeout."""
        t0 = time.monotonic()
        pids = tree_pids(self.pid) if self.pid and alive(self.pid) else []
        if self.pid and alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
        while time.monotonic() - t0 < timeout:
            if (not self.uses_pidfile and self.launcher.poll() is None) or \
               (self.pid and alive(self.pid)):
                time.sleep(0.02)
                continue
            break
        killed = []
        for p in pids:
            if alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                    killed.append(p)
                except ProcessLookupError:
                    pass
        try:
            self.launcher.wait(10)
        except subprocess.TimeoutExpired:
            self.launcher.kill()
            self.launcher.wait()
        for _ in range(250):
            if not any(alive(p) for p in pids):
                break
            time.sleep(0.02)
        self.logf.close()
        return {"stop_s": round(time.monotonic() - t0, 3), "sigkilled": killed,
                "exit": self.launcher.returncode if not self.uses_pidfile else None}


# --------------------------------------------------------------------- fio --
def run_fio(args, outjson, timeout, at=None, on_at=None):
    """Run fio with JSON output; call on_at() `at` seconds after the start
    (end of the ramp). Returns (rc, wall seconds, fio's own CPU seconds)."""
    t0 = time.monotonic()
    with open(outjson + ".stderr", "w") as errf:
        p = subprocess.Popen(["fio"] + args + ["--output-format=json", "--output=" + outjson],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
    fired = at is None
    try:
        return _wait_fio(p, t0, timeout, at, on_at, fired)
    except BaseException:              # Ctrl-C / SIGTERM: do not leave fio running
        if p.poll() is None:
            p.kill()
            p.wait()
        raise


def _wait_fio(p, t0, timeout, at, on_at, fired):
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            rc = os.waitstatus_to_exitcode(status)
            break
        now = time.monotonic()
        if not fired and now - t0 >= at:
            on_at()
            fired = True
        if now - t0 > timeout:
            p.kill()
            _, status, ru = os.wait4(p.pid, 0)
            rc = -9
            break
        time.sleep(0.01)
    p.returncode = rc
    if not fired:
        on_at()
    return rc, time.monotonic() - t0, ru.ru_utime + ru.ru_stime


def fio_metrics(path):
    with open(path) as f:
        txt = f.read()
    d = json.loads(txt[txt.index("{"):])      # fio may print notes before the JSON
    j = d["jobs"][0]
    m = {"fio_error": j.get("error", 0)}
    iops = bw = io = 0.0
    runtime = 0
    for dd in ("read", "write"):
        x = j[dd]
        iops += x["iops"]
        bw += x["bw_bytes"]
        io += x["io_bytes"]
        runtime = max(runtime, x["runtime"])
        if x["total_ios"]:
            pct = x["clat_ns"].get("percentile", {})
            m[f"{dd}_iops"] = x["iops"]
            m[f"{dd}_p50_us"] = pct.get("50.000000", 0) / 1000
            m[f"{dd}_p99_us"] = pct.get("99.000000", 0) / 1000
    s = j.get("sync", {})
    if s.get("total_ios"):
        pct = s["lat_ns"].get("percentile", {})
        m["sync_ios"] = s["total_ios"]
        m["sync_p50_us"] = pct.get("50.000000", 0) / 1000
        m["sync_p99_us"] = pct.get("99.000000", 0) / 1000
    m.update(iops=iops, bw=bw, io_bytes=io, runtime_s=runtime / 1000)
    return m


def nbd_flush(uri, timeout=600):
    """One NBD FLUSH on a fresh connection; seconds it took."""
    t0 = time.monotonic()
    if shutil.which("qemu-io"):
        cmd = ["qemu-io", "-f", "raw", uri, "-c", "flush"]
    else:
        cmd = ["nbdsh", "-u", uri, "-c", "h.flush()"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"FLUSH failed: {(r.stderr or r.stdout).strip()[:300]}")
    return time.monotonic() - t0


def noise(rec, win, client_cores):
    """Load average and what the rest of the machine used during the window."""
    if win["wall_s"] <= 0:
        return
    own = win["cpu_s"] + client_cores * win["wall_s"]
    rec["other_cores"] = max(0.0, (win["busy_s"] - own) / win["wall_s"])
    rec["steal_cores"] = win["steal_s"] / win["wall_s"]


# ---------------------------------------------------------------- session --
class Session:
    """One server on one fresh image, for one repetition."""

    def __init__(self, run, server, rep, kind, small_cache=0, image_from=None):
        self.run, self.name, self.rep, self.kind = run, server, rep, kind
        self.small_cache = small_cache
        self.dir = tempfile.mkdtemp(prefix="extbench-", dir=run.tmproot)
        self.image = os.path.join(self.dir, IMAGE)
        t0 = time.monotonic()
        if image_from:
            subprocess.run(["cp", "--sparse=always", image_from, self.image], check=True)
        else:
            make_sparse(self.image, run.a.size)
        self.prep_s = time.monotonic() - t0
        self.ino = os.stat(self.image).st_ino
        self.srv = None
        self.starts = 0
        self.stops = []
        self.tag = f"{server}-r{rep}-{kind}"

    def ensure_server(self):
        if self.srv and self.srv.pid and alive(self.srv.pid):
            return
        if self.srv:                              # it died: restart on the same image
            self.stops.append(self.srv.stop())
        self.starts += 1
        self.srv = Server(self.run, self.name, self.image, self.dir,
                          os.path.join(self.run.outdir, "logs", f"{self.tag}-{self.starts}.log"),
                          self.small_cache)

    def base_rec(self, wl):
        return {"server": self.name, "workload": wl, "rep": self.rep,
                "loadavg": read("/proc/loadavg").split()[:3], "started": time.time()}

    def fio_workload(self, wl):
        run, a, tracer = self.run, self.run.a, self.run.tracer
        rec = self.base_rec(wl)
        w = W.WORKLOADS[wl]
        fio_json = os.path.join(run.outdir, "fio", f"{self.name}-r{self.rep}-{wl}.json")
        try:
            self.ensure_server()
            srv = self.srv
            rec.update(cmd=srv.cmd, uri=srv.uri, server_start=self.starts)
            target = ["--uri=" + srv.uri]
            if w.get("prefill"):
                pj = fio_json.replace(".json", ".prefill.json")
                rc, wall, _ = run_fio(["--name=prefill", "--ioengine=nbd"] + target + W.PREFILL,
                                      pj, 600)
                if rc != 0:
                    raise RuntimeError(f"prefill fio rc={rc}: {read(pj + '.stderr')[-300:]}")
                rec["prefill_s"] = round(wall, 3)
                rec["prefill_flush_s"] = round(nbd_flush(srv.uri), 3)
            tr0 = tracer.checkpoint(self.ino) if tracer else None
            m0 = srv.metrics()
            sa = snapshot(srv.pid)
            args = ([f"--name={wl}"] + W.FIO_COMMON + [f"--runtime={a.runtime}",
                    f"--ramp_time={a.ramp}"] + target + w["fio"])
            rec["fio_args"] = args
            box = {}
            rc, wall, fio_cpu = run_fio(args, fio_json, a.runtime + a.ramp + 120, at=a.ramp,
                                        on_at=lambda: box.update(s0=snapshot(srv.pid)))
            s1 = snapshot(srv.pid)
            if rc != 0:
                raise RuntimeError(f"fio rc={rc}: {read(fio_json + '.stderr')[-300:]}")
            m = fio_metrics(fio_json)
            rec.update(m)
            rec["fio_cores"] = fio_cpu / wall if wall else 0
            rec["drain_s"] = round(nbd_flush(srv.uri), 3)
            # throughput once durable: the measured I/Os over run + the FLUSH after it
            if m["runtime_s"] > 0:
                rec["durable_iops"] = m["iops"] * m["runtime_s"] / (m["runtime_s"] + rec["drain_s"])
            s2 = snapshot(srv.pid)
            if tracer:
                rec["trace"] = Tracer.diff(tr0, tracer.checkpoint(self.ino))
                t = rec["trace"]
                rec["backing_avg_write"] = t["wr_bytes"] / t["wr_calls"] if t["wr_calls"] else None
            if srv.mport:
                md = metrics_delta(m0, srv.metrics(), run.wb_family(srv))
                rec["metrics"] = md
                rec["metrics_avg_write"] = md.get("wb_avg")
            rec["alloc"] = allocated(self.image)
            rec["extents"] = extent_count(self.image)
            if wl in ("W1", "W1-big"):
                rec["filefrag"] = fragments(self.image)
            win = delta(box["s0"], s1)
            tot = delta(sa, s2)
            rec["srv_window"], rec["srv_total"] = win, tot
            rec["srv_cores"] = win["cpu_s"] / win["wall_s"] if win["wall_s"] > 0 else None
            gps = m["bw"] / GiB
            rec["cpu_per_gib"] = rec["srv_cores"] / gps if gps and rec["srv_cores"] is not None else None
            rec["proc_avg_write"] = tot["wchar"] / tot["syscw"] if tot["syscw"] else None
            noise(rec, win, rec["fio_cores"])
        except Exception as e:                    # record and go on
            rec["error"] = str(e)
            log(f"  ERROR {self.tag} {wl}: {e}")
        rec["finished"] = time.time()
        return rec

    def copy_workload(self):
        """nbdcopy the 10%-allocated image to a fresh sparse file."""
        run, tracer = self.run, self.run.tracer
        rec = self.base_rec("copy")
        target = os.path.join(self.dir, "copy-target.img")
        try:
            self.ensure_server()
            srv = self.srv
            make_sparse(target, run.a.size)
            rec.update(cmd=srv.cmd, uri=srv.uri, source_alloc=allocated(self.image),
                       source_extents=extent_count(self.image))
            tr0 = tracer.checkpoint(self.ino) if tracer else None
            s0 = snapshot(srv.pid)
            t0 = time.monotonic()
            r = subprocess.run(["nbdcopy", srv.uri, target], capture_output=True, text=True,
                               timeout=900)
            wall = time.monotonic() - t0
            s1 = snapshot(srv.pid)
            if r.returncode != 0:
                raise RuntimeError(f"nbdcopy rc={r.returncode}: {r.stderr.strip()[:300]}")
            rec["copy_s"] = wall
            rec["target_alloc"] = allocated(target)
            rec["target_extents"] = extent_count(target)
            rec["target_alloc_ratio"] = rec["target_alloc"] / run.a.size
            rec["data_mib_s"] = rec["source_alloc"] / MiB / wall if wall > 0 else None
            if tracer:
                rec["trace"] = Tracer.diff(tr0, tracer.checkpoint(self.ino))
            win = delta(s0, s1)
            rec["srv_cpu_s"] = win["cpu_s"]
            rec["srv_cores"] = win["cpu_s"] / win["wall_s"] if win["wall_s"] > 0 else None
            noise(rec, win, 0.0)
        except Exception as e:
            rec["error"] = str(e)
            log(f"  ERROR {self.tag} copy: {e}")
        rec["finished"] = time.time()
        return rec

    def fs_workload(self):
        """nbdfuse → loop → mkfs.ext4 → mount → untar → syncfs; every step
        undone in finally (umount, losetup -d, fusermount3 -u, wait nbdfuse)."""
        run, tracer = self.run, self.run.tracer
        rec = self.base_rec("fs")
        mnt = os.path.join(self.dir, "fuse")
        fsdir = os.path.join(self.dir, "ext4")
        os.makedirs(mnt)
        os.makedirs(fsdir)
        disk = os.path.join(mnt, "disk")
        fuse = loop = None
        mounted = False
        try:
            self.ensure_server()
            srv = self.srv
            rec.update(cmd=srv.cmd, uri=srv.uri, tarball_bytes=os.path.getsize(run.tarball))
            tr0 = tracer.checkpoint(self.ino) if tracer else None
            s0 = snapshot(srv.pid)
            t0 = time.monotonic()
            pidf = os.path.join(self.dir, "nbdfuse.pid")
            fuse = subprocess.Popen(["nbdfuse", "-P", pidf, disk, srv.uri],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=open(os.path.join(run.outdir, "logs", self.tag + "-nbdfuse.log"), "w"),
                                    start_new_session=True)
            deadline = time.monotonic() + 30
            while not read(pidf).strip() and fuse.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if not read(pidf).strip():
                raise RuntimeError("nbdfuse did not start")
            loop = subprocess.run(["losetup", "--find", "--show", disk], capture_output=True,
                                  text=True, check=True).stdout.strip()
            t1 = time.monotonic()
            subprocess.run(["mkfs.ext4", "-q", "-F", loop], check=True, capture_output=True)
            rec["mkfs_s"] = time.monotonic() - t1
            subprocess.run(["mount", loop, fsdir], check=True, capture_output=True)
            mounted = True
            t2 = time.monotonic()
            subprocess.run(["tar", "-xf", run.tarball, "-C", fsdir], check=True, capture_output=True)
            subprocess.run(["sync", "-f", fsdir], check=True, capture_output=True)
            rec["untar_sync_s"] = time.monotonic() - t2
            t3 = time.monotonic()
            subprocess.run(["umount", fsdir], check=True, capture_output=True)
            mounted = False
            rec["umount_s"] = time.monotonic() - t3
            rec["total_s"] = time.monotonic() - t0
            s1 = snapshot(srv.pid)
            win = delta(s0, s1)
            rec["srv_cpu_s"] = win["cpu_s"]
            rec["srv_cores"] = win["cpu_s"] / win["wall_s"] if win["wall_s"] > 0 else None
            noise(rec, win, 0.0)
        except Exception as e:
            msg = str(e)
            if isinstance(e, subprocess.CalledProcessError):
                msg += ": " + str(e.stderr or "")[:300]
            rec["error"] = msg
            log(f"  ERROR {self.tag} fs: {msg}")
        finally:
            if mounted:
                subprocess.run(["umount", fsdir], capture_output=True)
            if loop:
                subprocess.run(["losetup", "-d", loop], capture_output=True)
            if fuse:
                subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
                try:
                    fuse.wait(30)
                except subprocess.TimeoutExpired:
                    fuse.kill()
                    fuse.wait()
        if "error" not in rec:
            try:
                rec["drain_s"] = nbd_flush(self.srv.uri)
                if tracer:
                    rec["trace"] = Tracer.diff(tr0, tracer.checkpoint(self.ino))
                    t = rec["trace"]
                    rec["backing_avg_write"] = t["wr_bytes"] / t["wr_calls"] if t["wr_calls"] else None
                rec["alloc"] = allocated(self.image)
                rec["extents"] = extent_count(self.image)
                rec["filefrag"] = fragments(self.image)
            except Exception as e:
                rec["error"] = str(e)
        rec["finished"] = time.time()
        return rec

    def close(self):
        info = {"server": self.name, "rep": self.rep, "kind": self.kind,
                "server_starts": self.starts, "prep_s": round(self.prep_s, 3)}
        if self.srv:
            info["peak_rss"] = self.srv.peak_rss()
            try:
                self.stops.append(self.srv.stop())
            except Exception as e:
                info["stop_error"] = str(e)
        info["stops"] = self.stops
        t0 = time.monotonic()
        shutil.rmtree(self.dir, ignore_errors=True)
        info["cleanup_s"] = round(time.monotonic() - t0, 3)
        return info


# --------------------------------------------------------------- summaries --
KEYS = ("iops", "durable_iops", "bw", "read_p50_us", "read_p99_us", "write_p50_us", "write_p99_us",
        "sync_p50_us", "sync_p99_us", "cpu_per_gib", "srv_cores", "fio_cores",
        "backing_avg_write", "metrics_avg_write", "proc_avg_write", "drain_s", "alloc",
        "extents", "filefrag", "other_cores", "steal_cores", "copy_s", "data_mib_s", "target_alloc",
        "target_alloc_ratio", "source_alloc", "srv_cpu_s", "mkfs_s", "untar_sync_s",
        "umount_s", "total_s", "prefill_s", "load1")


def summarize(runs):
    out = {}
    for r in runs:
        if "error" in r:
            continue
        r = dict(r, load1=float(r["loadavg"][0]))
        cell = out.setdefault(r["server"], {}).setdefault(r["workload"], {})
        for k in KEYS:
            if isinstance(r.get(k), (int, float)):
                cell.setdefault(k, []).append(r[k])
        if r.get("trace"):
            for k in ("wr_calls", "wr_bytes", "rd_calls", "sync_calls"):
                cell.setdefault("bk_" + k, []).append(r["trace"][k])
    for srv in out.values():
        for wl, cell in srv.items():
            srv[wl] = {k: {"median": statistics.median(v), "min": min(v), "max": max(v),
                           "n": len(v)} for k, v in cell.items()}
    return out


def fnum(x):
    if x is None:
        return "—"
    if x >= 100_000:
        return f"{x / 1000:.0f}k"
    if x >= 10_000:
        return f"{x / 1000:.1f}k"
    if x >= 1000:
        return f"{x / 1000:.2f}k"
    return f"{x:.0f}" if x >= 10 else f"{x:.2g}"


def fus(us):
    if us is None:
        return "—"
    if us >= 1000:
        return f"{us / 1000:.1f}ms" if us < 100_000 else f"{us / 1000:.0f}ms"
    return f"{us:.0f}µs"


def fbytes(b):
    if b is None:
        return "—"
    for unit, div in (("G", GiB), ("M", MiB), ("K", KiB)):
        if b >= div:
            v = b / div
            return f"{v:.0f}{unit}" if v >= 10 else f"{v:.1f}{unit}"
    return f"{b:.0f}B"


def med(cell, k):
    return cell[k]["median"] if cell and k in cell else None


def fx(v, spec=".2f"):
    """format v, or — when it is missing"""
    return "—" if v is None else format(v, spec)


def mmm(cell, k, f):
    c = cell[k]
    if c["n"] == 1:
        return f(c["median"])
    return f"{f(c['median'])} [{f(c['min'])}–{f(c['max'])}]"


def write_size(cell, traced, server):
    """Average write reaching the image: metrics for extentd when it has
    them, else traced syscalls, else /proc/PID/io (all fds: marked ~)."""
    if W.SERVERS.get(server, {}).get("memory"):
        return "no image"
    parts = []
    mv = med(cell, "metrics_avg_write")
    if mv is not None:
        parts.append(f"{fbytes(mv)}/wr (metrics)")
    if traced and "bk_wr_calls" in cell:
        if med(cell, "bk_wr_calls") == 0:
            parts.append("no writes")
        else:
            parts.append(f"{fbytes(med(cell, 'backing_avg_write'))}/wr")
    elif not parts:
        v = med(cell, "proc_avg_write")
        parts.append(f"~{fbytes(v)}/wr (proc)" if v else "no writes")
    return " · ".join(parts)


def throughput(cell, wl):
    if W.WORKLOADS[wl]["unit"] == "bw":
        return mmm(cell, "bw", lambda b: f"{b / MiB:.0f}") + " MiB/s"
    return mmm(cell, "iops", fnum) + " IOPS"


def lat(cell):
    r50, r99 = med(cell, "read_p50_us"), med(cell, "read_p99_us")
    w50, w99 = med(cell, "write_p50_us"), med(cell, "write_p99_us")
    if r99 is not None and w99 is not None:
        return f"r {fus(r50)}/{fus(r99)} w {fus(w50)}/{fus(w99)}"
    if r99 is not None:
        return f"{fus(r50)}/{fus(r99)}"
    return f"{fus(w50)}/{fus(w99)}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    r = a / b
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def headline(result):
    """extentd ÷ each peer on the figures users ask about first."""
    summ = result["summary"]
    e = summ.get("extentd")
    if not e:
        return []
    peers = [s for s in result["meta"]["servers"] if s != "extentd" and s in summ]
    if not peers:
        return []
    L = ["Headline: extentd ÷ peer (IOPS: > 1 means extentd is faster; backing write "
         "size: > 1 means larger, fewer writes; extents after W1: peer ÷ extentd, > 1 means "
         "extentd leaves fewer). W1-big: extentd with a 64 MiB cache vs the peer's W1 "
         "(the peers have no cache-size knob; their W1-big is their W1).", "",
         "| peer | W1 | W3 | W5 | W1-big | backing write size (W1) | extents after W1 | CPU-s/GiB W1 (peer ÷ extentd) |",
         "|---|---|---|---|---|---|---|---|"]

    def g(srv, wl, k):
        return med(summ.get(srv, {}).get(wl), k)

    def wsize(srv):
        v = g(srv, "W1", "metrics_avg_write") if srv == "extentd" else None
        return v if v is not None else g(srv, "W1", "backing_avg_write")
    for p in peers:
        if W.SERVERS.get(p, {}).get("memory"):
            bws, ext = "(no image)", "(no image)"
        else:
            bws = ratio(wsize("extentd"), wsize(p))
            ext = ratio(g(p, "W1", "extents"), g("extentd", "W1", "extents"))
        big_p = g(p, "W1-big", "iops") or g(p, "W1", "iops")
        L.append(f"| {p} | {ratio(g('extentd', 'W1', 'iops'), g(p, 'W1', 'iops'))} | "
                 f"{ratio(g('extentd', 'W3', 'iops'), g(p, 'W3', 'iops'))} | "
                 f"{ratio(g('extentd', 'W5', 'iops'), g(p, 'W5', 'iops'))} | "
                 f"{ratio(g('extentd', 'W1-big', 'iops'), big_p)} | {bws} | {ext} | "
                 f"{ratio(g(p, 'W1', 'cpu_per_gib'), g('extentd', 'W1', 'cpu_per_gib'))} |")
    return L + [""]


def overview(result):
    """One row per server: the medians side by side (the README's rows)."""
    summ = result["summary"]
    servers = [s for s in result["meta"]["servers"] if s in summ]
    wls = [w for w in W.WORKLOADS if any(w in summ[s] for s in servers)]
    if not wls:
        return []
    head = [f"{w} {'MiB/s' if W.WORKLOADS[w]['unit'] == 'bw' else 'IOPS'}" for w in wls]
    L = ["| server | " + " | ".join(head) +
         " | W1 durable IOPS | W1 CPU-s/GiB | W1 write to image | W1 extents | W1 alloc |",
         "|---|" + "---|" * (len(wls) + 5)]
    for s in servers:
        row = [s]
        for w in wls:
            c = summ[s].get(w)
            if not c:
                row.append("—")
            elif W.WORKLOADS[w]["unit"] == "bw":
                row.append(f"{med(c, 'bw') / MiB:.0f}")
            else:
                row.append(fnum(med(c, "iops")))
        c = summ[s].get("W1") or {}
        row.append(fnum(med(c, "durable_iops")))
        cpg = med(c, "cpu_per_gib")
        row.append(f"{cpg:.2f}" if cpg is not None else "—")
        if W.SERVERS.get(s, {}).get("memory"):
            row += ["no image", "—", "—"]
        else:
            v = med(c, "metrics_avg_write") if s == "extentd" else None
            v = v if v is not None else med(c, "backing_avg_write")
            row.append(fbytes(v) if v is not None else "—")
            row.append(fnum(med(c, "extents")))
            row.append(fbytes(med(c, "alloc")))
        L.append("| " + " | ".join(row) + " |")
    return L + [""]


def images_on(f):
    o = f.get("outer_fs")
    if f.get("scratch") and o:
        return (f"images on a scratch ext4 (nodiscard) on a loop device (direct I/O) over a "
                f"file on {o['fstype']} {o['mountpoint']} ({o['options']})")
    return f"images on {f['tmp_fs']['fstype']} ({f['tmp_fs']['options']})"


def markdown(result):
    meta, summ = result["meta"], result["summary"]
    servers = [s for s in meta["servers"] if s in summ]
    traced = meta["trace"]
    f = meta["facts"]
    L = [f"## extentd bench — {meta['started_iso']}", ""]
    dur = meta.get("duration_s")
    L.append(f"{f['nproc']} CPUs ({f['cpu_model']}), {f['mem_total_gib']} GiB RAM, "
             f"{f['os']}, kernel {f['kernel']}; " + images_on(f) + f". Load average at start {' '.join(f['loadavg_start'].split()[:3])}"
             + (f", at end {' '.join(meta['loadavg_end'].split()[:3])}" if meta.get("loadavg_end") else "")
             + f". {meta['reps']} reps × {meta['runtime']} s (+{meta['ramp']} s ramp) per fio "
             f"workload, {fbytes(meta['size'])} sparse image per session"
             + (f"; run took {dur / 60:.1f} min" if dur else "") + ".")
    oth = [r["other_cores"] for r in result["runs"] if r.get("other_cores") is not None]
    stl = [r["steal_cores"] for r in result["runs"] if r.get("steal_cores") is not None]
    lds = [float(r["loadavg"][0]) for r in result["runs"] if r.get("loadavg")]
    if oth:
        L.append(f"Other work on the machine during the measured windows: median "
                 f"{statistics.median(oth):.2f} cores [{min(oth):.2f}–{max(oth):.2f}] besides the "
                 f"server and fio; hypervisor steal median {statistics.median(stl):.2f} "
                 f"[max {max(stl):.2f}] cores; 1-min load average at workload start "
                 f"{min(lds):.1f}–{max(lds):.1f}." +
                 (" The machine was busy: compare servers within this run, on CPU-s/GiB "
                  "first, and mind the [min–max]." if statistics.median(oth) > 0.3 else ""))
    L.append("")
    L.append(f"Command: `bench/run.sh {' '.join(meta['argv'])}`" +
             (f" at `{f['git']}`" if f.get("git") else "") +
             (f" (extentd built from the working tree: {f['git_dirty_paths']} uncommitted paths "
              "in its packages)" if f.get("git_dirty_paths") else ""))
    L.append("")
    L += headline(result)
    ov = overview(result)
    if ov:
        L += ["Overview (medians):", ""] + ov
    wls = [w for w in meta["workloads"] if w in W.WORKLOADS and any(w in summ[s] for s in servers)]
    if wls:
        L.append("Cell: throughput median [min–max] · latency p50/p99 (fio clat) · server "
                 "CPU-s per GiB moved · average write reaching the image over run+drain "
                 "(metrics: extentd's own writeback histogram; plain: traced syscalls on the image"
                 + ("" if traced else "; ~ = /proc/PID/io wchar/syscw, all fds") + ").")
        L.append("")
        L.append("| workload | " + " | ".join(servers) + " |")
        L.append("|---|" + "---|" * len(servers))
        for wl in wls:
            row = [f"{wl} {W.WORKLOADS[wl]['desc']}"]
            for s in servers:
                c = summ[s].get(wl)
                if not c:
                    row.append("—")
                    continue
                cpg = med(c, "cpu_per_gib")
                row.append(" · ".join([throughput(c, wl), lat(c),
                                       f"{cpg:.2f} CPU-s/GiB" if cpg is not None else "—",
                                       write_size(c, traced, s)]))
            L.append("| " + " | ".join(row) + " |")
        L.append("")
        L.append("Details (medians): drain = the NBD FLUSH after fio, seconds · durable = IOPS "
                 "counting that FLUSH (I/Os ÷ (runtime + drain)) · cores used by the "
                 "server / fio / rest of the machine / stolen by the hypervisor · image allocated "
                 "bytes and extents (FIEMAP: rows of `filefrag -v`; W1: plus the count plain `filefrag` prints) after the workload and drain "
                 "(cumulative within a session; W1 starts empty) · bk = image write/read/fsync "
                 "syscalls (traced) · W5: FLUSH p50/p99 · load = 1-min load average at start.")
        L.append("")
        L.append("| workload | " + " | ".join(servers) + " |")
        L.append("|---|" + "---|" * len(servers))
        for wl in wls:
            row = [wl]
            for s in servers:
                c = summ[s].get(wl)
                if not c:
                    row.append("—")
                    continue
                p = [f"drain {fx(med(c, 'drain_s'))}s"]
                if W.WORKLOADS[wl]["unit"] == "iops" and med(c, "durable_iops") is not None:
                    p.append(f"durable {fnum(med(c, 'durable_iops'))} IOPS")
                p.append("/".join(f"{med(c, k):.2f}" if med(c, k) is not None else "—"
                                  for k in ("srv_cores", "fio_cores", "other_cores", "steal_cores"))
                         + " cores")
                if not W.SERVERS.get(s, {}).get("memory"):
                    p.append(f"alloc {fbytes(med(c, 'alloc'))} ext {fnum(med(c, 'extents'))}"
                             + (f" (filefrag {fnum(med(c, 'filefrag'))})" if "filefrag" in c else ""))
                if "bk_wr_calls" in c:
                    p.append("bk " + "/".join(fnum(med(c, k)) for k in
                                              ("bk_wr_calls", "bk_rd_calls", "bk_sync_calls")))
                if med(c, "sync_p99_us") is not None:
                    p.append(f"FLUSH {fus(med(c, 'sync_p50_us'))}/{fus(med(c, 'sync_p99_us'))}")
                p.append(f"load {fx(med(c, 'load1'), '.1f')}")
                row.append(" · ".join(p))
            L.append("| " + " | ".join(row) + " |")
        L.append("")
    if any("copy" in summ[s] for s in servers):
        L.append("copy: `nbdcopy nbd://… target.img` of a 4 GiB image with 10% random data in "
                 "64K–4M extents, into a fresh sparse file. Cell: seconds [min–max] · source data "
                 "MiB/s · target allocated (should be ≈ the source's) · server CPU-s.")
        L.append("")
        L.append("| | " + " | ".join(servers) + " |")
        L.append("|---|" + "---|" * len(servers))
        row = ["copy"]
        for s in servers:
            c = summ[s].get("copy")
            row.append("—" if not c else " · ".join([
                mmm(c, "copy_s", lambda v: f"{v:.2f}") + " s",
                f"{fx(med(c, 'data_mib_s'), '.0f')} MiB/s",
                f"target {fbytes(med(c, 'target_alloc'))} ({fx((med(c, 'target_alloc_ratio') or 0) * 100, '.1f')}%)",
                f"{fx(med(c, 'srv_cpu_s'))} CPU-s"]))
        L.append("| " + " | ".join(row) + " |")
        L.append("")
    if any("fs" in summ[s] for s in servers):
        tb = meta.get("tarball", {})
        L.append(f"fs: nbdfuse → losetup → mkfs.ext4 → mount → untar {tb.get('source', '?')} "
                 f"({fbytes(tb.get('bytes'))}, {tb.get('files', '?')} entries) → `sync -f` → umount. "
                 "Cell: untar+sync seconds [min–max] · mkfs s · umount s · server CPU-s · image "
                 "allocated / extents after a FLUSH.")
        L.append("")
        L.append("| | " + " | ".join(servers) + " |")
        L.append("|---|" + "---|" * len(servers))
        row = ["fs"]
        for s in servers:
            c = summ[s].get("fs")
            if not c:
                row.append("—")
                continue
            p = [mmm(c, "untar_sync_s", lambda v: f"{v:.1f}") + " s",
                 f"mkfs {fx(med(c, 'mkfs_s'))} s", f"umount {fx(med(c, 'umount_s'))} s",
                 f"{fx(med(c, 'srv_cpu_s'), '.1f')} CPU-s"]
            if not W.SERVERS.get(s, {}).get("memory"):
                p.append(f"alloc {fbytes(med(c, 'alloc'))} ext {fnum(med(c, 'extents'))}")
            row.append(" · ".join(p))
        L.append("| " + " | ".join(row) + " |")
        L.append("")
    cmds = meta.get("commands", {})
    if cmds:
        L.append("Server commands as run (one session each):")
        L.append("")
        for s in servers:
            if s in cmds:
                L.append(f"- {s}: `{cmds[s]}`")
        if meta.get("commands_big"):
            L.append(f"- extentd (W1-big): `{meta['commands_big']}`")
        L.append("")
    if meta.get("wb_family"):
        L.append(f"extentd writeback histogram: `{meta['wb_family']}`.")
        L.append("")
    if meta.get("skipped"):
        L.append(f"Not run (--stop-by): {', '.join(meta['skipped'])}.")
        L.append("")
    errs = [r for r in result["runs"] if "error" in r]
    if errs:
        L.append("Errors: " + "; ".join(f"{r['workload']}/{r['server']}/r{r['rep']}: "
                                        f"{r['error'][:160]}" for r in errs))
        L.append("")
    return "\n".join(L)


DOCS_BEGIN = "<!-- bench/run.sh:begin -->"
DOCS_END = "<!-- bench/run.sh:end -->"


def write_docs(path, md):
    """Replace the generated block of path (between DOCS_BEGIN and DOCS_END)."""
    text = read(path)
    if DOCS_BEGIN not in text or DOCS_END not in text:
        raise SystemExit(f"--docs {path}: no {DOCS_BEGIN} … {DOCS_END} block to replace")
    head, rest = text.split(DOCS_BEGIN, 1)
    _, tail = rest.split(DOCS_END, 1)
    body = md.replace("## extentd bench", "### Run", 1)
    with open(path + ".tmp", "w") as f:
        f.write(head + DOCS_BEGIN + "\n" + body.rstrip() + "\n" + DOCS_END + tail)
    os.replace(path + ".tmp", path)
    log(f"tables written into {path}")


# -------------------------------------------------------------------- run --
class Scratch:
    """A fresh ext4 without discard for the images: a sparse file in the
    temp folder → loop device (direct I/O, so no second page cache) → mkfs.ext4
    → mount -o nodiscard. On a filesystem mounted with `discard`, deleting a
    4K-scattered 4 GiB image costs 10–40 s (one discard per freed extent);
    inside the scratch filesystem it costs < 1 s. Root only."""

    def __init__(self, parent, size):
        self.dir = tempfile.mkdtemp(prefix="extbench-scratch-", dir=parent)
        self.file = os.path.join(self.dir, "scratch.img")
        self.mnt = os.path.join(self.dir, "mnt")
        self.loop = None
        self.mounted = False
        try:
            os.makedirs(self.mnt)
            # sparse, not fallocated: deleting it at the end then discards only
            # what was used (a fallocated 16G file took ~45 s to delete here)
            with open(self.file, "wb") as f:
                f.truncate(size)
            self.loop = subprocess.run(["losetup", "--direct-io=on", "--find", "--show", self.file],
                                       check=True, capture_output=True, text=True).stdout.strip()
            subprocess.run(["mkfs.ext4", "-q", "-N", "4096", "-E",
                            "nodiscard,lazy_itable_init=0,lazy_journal_init=0", self.loop],
                           check=True, capture_output=True)
            subprocess.run(["mount", "-o", "nodiscard", self.loop, self.mnt], check=True,
                           capture_output=True)
            self.mounted = True
        except Exception:
            self.close()
            raise

    def close(self):
        if self.mounted:
            subprocess.run(["umount", self.mnt], capture_output=True)
            self.mounted = False
        if self.loop:
            subprocess.run(["losetup", "-d", self.loop], capture_output=True)
            self.loop = None
        shutil.rmtree(self.dir, ignore_errors=True)


class Run:
    def __init__(self, a):
        self.a = a
        self.tmproot = os.path.abspath(a.tmpdir or tempfile.gettempdir())
        self.scratch = None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.outdir = os.path.abspath(a.out or os.path.join(
            BENCHDIR, "results", stamp + (("-" + a.label) if a.label else "")))
        for d in ("fio", "logs"):
            os.makedirs(os.path.join(self.outdir, d), exist_ok=True)
        self.tracer = None
        self.extentd = None
        self.extentd_help = ""
        self._wb_family = a.wb_metric
        self.tarball = None

    def wb_family(self, srv):
        if not self._wb_family:
            self._wb_family = writeback_family(srv.metrics())
        return self._wb_family

    def build_extentd(self):
        if self.a.extentd:
            self.extentd = os.path.abspath(self.a.extentd)
        else:
            self.extentd = os.path.join(self.outdir, "extentd")
            log(f"building extentd: go build -o {self.extentd} ./cmd/extentd")
            r = subprocess.run(["go", "build", "-o", self.extentd, "./cmd/extentd"], cwd=REPO,
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("go build ./cmd/extentd failed:\n" + r.stderr.strip()[-2000:])
        r = subprocess.run([self.extentd, "serve", "--help"], capture_output=True, text=True,
                           timeout=30)
        self.extentd_help = r.stdout + r.stderr
        if r.returncode != 0 or "serve" not in self.extentd_help:
            raise RuntimeError("`extentd serve --help` failed: the CLI has no serve command yet?\n"
                               + self.extentd_help.strip()[-800:])

    def make_tarball(self):
        src = self.a.fs_tree
        self.tarball = os.path.join(self.tmproot, f"extbench-tree-{os.getpid()}.tar")
        parent, base = os.path.split(os.path.abspath(src).rstrip("/"))
        subprocess.run(["tar", "-cf", self.tarball, "-C", parent, base], check=True,
                       capture_output=True)
        n = subprocess.run(["tar", "-tf", self.tarball], capture_output=True, text=True).stdout.count("\n")
        return {"source": src, "bytes": os.path.getsize(self.tarball), "files": n}


def main():
    ap = argparse.ArgumentParser(
        prog="bench/run.sh", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the same fio workloads against extentd and its peers, interleaved, "
                    "and report medians [min–max].",
        epilog="Workloads (fio " + " ".join(W.FIO_COMMON) + " --uri=nbd://…):\n" +
               "".join(f"  {k:7s} {v['desc']:44s} {' '.join(v['fio'])}\n"
                       for k, v in W.WORKLOADS.items()) +
               f"  W3 first writes: {' '.join(W.PREFILL)}, then one NBD FLUSH.\n" +
               "".join(f"  {k:7s} {v['desc']}\n" for k, v in W.EXTRAS.items()) +
               "Servers: " + ", ".join(ALL_SERVERS) + " (commands in bench/lib/workloads.py).\n"
               "Examples:\n"
               "  bench/run.sh                                   # everything, ~25 min on 2 cores\n"
               "  bench/run.sh --quick --only W1,W3 --servers extentd,nbdkit-file\n"
               "  bench/run.sh --report bench/results/X/results.json")
    ap.add_argument("--servers", default=",".join(ALL_SERVERS),
                    help="comma list, run in this order within each rep (default: all)")
    ap.add_argument("--only", default=None, metavar="WORKLOADS",
                    help="comma list of workloads (default all: " + ",".join(ALL_WORKLOADS) + ")")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--extra-reps", type=int, default=None,
                    help="reps for copy and fs (default: --reps)")
    ap.add_argument("--runtime", type=int, default=6, help="measured seconds per fio run (6)")
    ap.add_argument("--ramp", type=int, default=2, help="fio ramp seconds (2)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 rep, 3 s + 1 s ramp, small fs tree")
    ap.add_argument("--size", type=parse_size, default=parse_size("4G"), help="image size (4G)")
    ap.add_argument("--big-cache", type=parse_size, default=W.BIG_CACHE,
                    help="extentd --cache-size/--max-dirty for W1-big (64M)")
    ap.add_argument("--big-all", action="store_true",
                    help="run W1-big on the peers too (same command as their W1)")
    ap.add_argument("--extentd", default=None, metavar="BIN",
                    help="use this extentd binary instead of building ./cmd/extentd")
    ap.add_argument("--extentd-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for extentd serve (repeatable)")
    ap.add_argument("--wb-metric", default=None,
                    help="extentd histogram of writeback I/O bytes (default: auto-detect)")
    ap.add_argument("--fs-tree", default=None,
                    help="folder to tar and untar in the fs workload (default /usr/local/go/src, "
                         "else /usr/share/doc; --quick: a small part)")
    ap.add_argument("--trace", choices=("auto", "on", "off"), default="auto",
                    help="count image syscalls with bpftrace (root)")
    ap.add_argument("--scratch", default="auto", metavar="auto|off|SIZE",
                    help="put the images on a fresh nodiscard ext4 on a loop device (direct I/O) "
                         "over a SIZE file in --tmpdir; auto (default): 16G when root and "
                         "--tmpdir's filesystem is mounted with discard")
    ap.add_argument("--tmpdir", default=None, help="where images go (default $TMPDIR or /tmp)")
    ap.add_argument("--out", default=None, help="results folder (default bench/results/STAMP)")
    ap.add_argument("--label", default="")
    ap.add_argument("--dry-run", action="store_true", help="print the session plan and exit")
    ap.add_argument("--stop-by", default=None, metavar="HH:MM",
                    help="start no new session after this local time (the rest is listed as skipped)")
    ap.add_argument("--docs", default=None, metavar="FILE",
                    help="also put the tables into FILE between the lines "
                         f"{DOCS_BEGIN} and {DOCS_END} (e.g. docs/BENCHMARKS.md)")
    ap.add_argument("--report", nargs="+", metavar="RESULTS_JSON",
                    help="run nothing: re-render the tables of saved runs (merged)")
    a = ap.parse_args()

    if a.report:
        merged = None
        for p in a.report:
            with open(p) as f:
                r = json.load(f)
            if merged is None:
                merged = r
            else:
                merged["runs"] += r["runs"]
                merged["meta"]["servers"] += [s for s in r["meta"]["servers"]
                                              if s not in merged["meta"]["servers"]]
                merged["meta"]["workloads"] += [w for w in r["meta"]["workloads"]
                                                if w not in merged["meta"]["workloads"]]
        merged["summary"] = summarize(merged["runs"])
        md = markdown(merged)
        if a.docs:
            write_docs(a.docs, md)
        print(md)
        return 0

    if a.quick:
        a.reps, a.runtime, a.ramp = 1, 3, 1
    servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    for s in servers:
        if s not in W.SERVERS:
            ap.error(f"unknown server {s!r} (known: {', '.join(ALL_SERVERS)})")
    wls = [w.strip() for w in (a.only or ",".join(ALL_WORKLOADS)).split(",") if w.strip()]
    for w in wls:
        if w not in W.WORKLOADS and w not in W.EXTRAS:
            ap.error(f"unknown workload {w!r} (known: {', '.join(ALL_WORKLOADS)})")
    is_root = os.geteuid() == 0
    if "fs" in wls and not is_root:
        log("fs workload skipped: it needs root (losetup, mount)")
        wls.remove("fs")
    if a.fs_tree is None:
        a.fs_tree = next(p for p in ("/usr/local/go/src", "/usr/share/doc", "/usr/share") if os.path.isdir(p))
        if a.quick:
            small = os.path.join(a.fs_tree, "net") if os.path.isdir(os.path.join(a.fs_tree, "net")) else a.fs_tree
            a.fs_tree = small
    extra_reps = a.reps if a.extra_reps is None else a.extra_reps

    problems = check_prereqs(servers, wls, is_root)
    if problems:
        sys.exit("bench/run.sh: cannot run:\n- " + "\n- ".join(problems))

    run = Run(a)
    t_start = time.monotonic()
    if "extentd" in servers and not a.dry_run:
        try:
            run.build_extentd()
        except Exception as e:
            sys.exit(f"bench/run.sh: {e}\n(run without extentd: --servers "
                     + ",".join(s for s in servers if s != "extentd") + ")")

    main_wls = [w for w in wls if W.WORKLOADS.get(w, {}).get("session") == "main"]
    big = "W1-big" in wls
    # (rep, kind, server). The copy and fs sessions of rep k run after the fio
    # sessions of rep k+1, so that a run cut short by --stop-by loses only the
    # tail of the last rep's fio sessions.
    fio_blocks, extra_blocks = [], []
    for rep in range(1, a.reps + 1):
        blk = [(rep, "main", s) for s in servers if main_wls]
        blk += [(rep, "big", s) for s in servers if big and (s == "extentd" or a.big_all)]
        fio_blocks.append(blk)
        ex = []
        if rep <= extra_reps:
            ex += [(rep, "copy", s) for s in servers
                   if "copy" in wls and not W.SERVERS[s].get("memory")]
            ex += [(rep, "fs", s) for s in servers if "fs" in wls]
        extra_blocks.append(ex)
    plan = []
    for i, blk in enumerate(fio_blocks):
        plan += blk
        if i >= 1:
            plan += extra_blocks[i - 1]
    plan += extra_blocks[-1]
    n_fio = sum(len(main_wls) if k == "main" else 1 for _, k, _ in plan if k in ("main", "big"))
    est = n_fio * (a.runtime + a.ramp + 3) + len(plan) * 10 + \
        sum(1 for p in plan if p[1] == "fs") * (25 if not a.quick else 5) + \
        sum(1 for p in plan if p[1] == "copy") * 10
    log(f"{len(plan)} sessions, {n_fio} fio runs, roughly {est / 60:.0f} min; results in {run.outdir}")
    if a.dry_run:
        for rep, kind, s in plan:
            print(f"rep {rep} {kind:5s} {s}" + (f": {' '.join(main_wls)}" if kind == "main" else ""))
        shutil.rmtree(run.outdir, ignore_errors=True)
        return 0

    outer_fs = mount_of(run.tmproot)
    want_scratch = a.scratch != "off" and (
        a.scratch != "auto" or (is_root and "discard" in outer_fs["options"].split(",")))
    if want_scratch:
        if not is_root:
            sys.exit("--scratch needs root (losetup, mount)")
        size = parse_size("16G" if a.scratch == "auto" else a.scratch)
        try:
            run.scratch = Scratch(run.tmproot, size)
        except Exception as e:
            msg = str(e) + (": " + str(e.stderr)[:300] if isinstance(e, subprocess.CalledProcessError) else "")
            sys.exit(f"bench/run.sh: cannot set up the scratch filesystem: {msg} (try --scratch off)")
        log(f"images on a scratch ext4 (nodiscard, loop {run.scratch.loop} direct I/O, "
            f"{fbytes(size)}) because {outer_fs['mountpoint']} is mounted with discard")
        run.tmproot = run.scratch.mnt
        atexit.register(run.scratch.close)
    facts = machine_facts(run.tmproot)
    facts["outer_fs"] = outer_fs
    if run.scratch:
        facts["scratch"] = {"loop": run.scratch.loop, "file": run.scratch.file}
    if a.trace != "off":
        if is_root and shutil.which("bpftrace") and ensure_tracefs():
            try:
                run.tracer = Tracer(run.tmproot, run.outdir)
            except Exception as e:
                log(f"tracer unavailable: {e}")
        if run.tracer is None:
            if a.trace == "on":
                sys.exit("--trace on: bpftrace could not start (needs root, bpftrace, tracefs)")
            log("no bpftrace: backing write sizes of the peers come from /proc/PID/io "
                "(all fds, an upper bound on the count)")

    result = {"meta": {
        "started_iso": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:], "facts": facts, "size": a.size, "runtime": a.runtime,
        "ramp": a.ramp, "reps": a.reps, "extra_reps": extra_reps, "trace": run.tracer is not None,
        "servers": servers, "workloads": wls, "big_cache": a.big_cache,
        "workload_defs": {k: dict(v) for k, v in W.WORKLOADS.items()},
        "fio_common": W.FIO_COMMON, "prefill": W.PREFILL, "commands": {},
    }, "runs": [], "sessions": []}
    res_json = os.path.join(run.outdir, "results.json")

    def save():
        result["summary"] = summarize(result["runs"])
        result["meta"]["wb_family"] = run._wb_family
        with open(res_json + ".tmp", "w") as f:
            json.dump(result, f, indent=None, separators=(",", ":"))
        os.replace(res_json + ".tmp", res_json)

    stop_at = None
    if a.stop_by:
        h, m = (int(x) for x in a.stop_by.split(":"))
        now = datetime.datetime.now()
        t = now.replace(hour=h, minute=m, second=0, microsecond=0)
        if t <= now:
            t += datetime.timedelta(days=1)
        stop_at = t.timestamp()

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    interrupted = False
    copy_src = None
    try:
        if any(k == "copy" for _, k, _ in plan):
            copy_src = os.path.join(run.tmproot, f"extbench-copysrc-{os.getpid()}.img")
            t0 = time.monotonic()
            make_copy_source(copy_src, a.size)
            result["meta"]["copy_source"] = {"alloc": allocated(copy_src),
                                             "extents": extent_count(copy_src),
                                             "make_s": round(time.monotonic() - t0, 2)}
            log(f"copy source: {fbytes(allocated(copy_src))} allocated in "
                f"{extent_count(copy_src)} extents")
        if any(k == "fs" for _, k, _ in plan):
            result["meta"]["tarball"] = run.make_tarball()
            log(f"fs tree: {result['meta']['tarball']}")
        for i, (rep, kind, s) in enumerate(plan, 1):
            if stop_at and time.time() >= stop_at:
                result["meta"]["skipped"] = [f"r{r} {k} {x}" for r, k, x in plan[i - 1:]]
                log(f"--stop-by reached: skipping the last {len(plan) - i + 1} sessions")
                break
            log(f"session {i}/{len(plan)}: rep {rep} {kind} {s}  load {read('/proc/loadavg').split()[0]}")
            sess = Session(run, s, rep, kind, small_cache=a.big_cache if kind == "big" and s == "extentd" else 0,
                           image_from=copy_src if kind == "copy" else None)
            try:
                if kind == "main":
                    recs = []
                    for wl in main_wls:
                        recs.append(sess.fio_workload(wl))
                        result["runs"].append(recs[-1])
                        save()
                        r = recs[-1]
                        if "error" not in r:
                            log(f"    {wl:6s} {r['iops']:8.0f} IOPS {r['bw'] / MiB:6.0f} MiB/s  "
                                f"cpu/GiB {r['cpu_per_gib'] or 0:5.2f}  drain {r['drain_s']:.2f}s")
                    if sess.srv:
                        result["meta"]["commands"].setdefault(s, sess.srv.cmd)
                elif kind == "big":
                    r = sess.fio_workload("W1-big")
                    result["runs"].append(r)
                    if sess.srv and s == "extentd":
                        result["meta"]["commands_big"] = sess.srv.cmd
                    if "error" not in r:
                        log(f"    W1-big {r['iops']:8.0f} IOPS  cpu/GiB {r['cpu_per_gib'] or 0:5.2f}  "
                            f"drain {r['drain_s']:.2f}s")
                elif kind == "copy":
                    r = sess.copy_workload()
                    result["runs"].append(r)
                    if "error" not in r:
                        log(f"    copy {r['copy_s']:.2f}s target {fbytes(r['target_alloc'])}")
                elif kind == "fs":
                    r = sess.fs_workload()
                    result["runs"].append(r)
                    if "error" not in r:
                        log(f"    fs untar+sync {r['untar_sync_s']:.2f}s mkfs {r['mkfs_s']:.2f}s")
            finally:
                info = sess.close()
                result["sessions"].append(info)
            save()
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: summarizing what ran")
    finally:
        if run.tracer:
            result["meta"]["tracer_cpu_s"] = run.tracer.cpu_s()
            run.tracer.close()
        for p in (copy_src, run.tarball):
            if p and os.path.exists(p):
                os.unlink(p)
    result["meta"]["loadavg_end"] = read("/proc/loadavg").strip()
    result["meta"]["duration_s"] = round(time.monotonic() - t_start, 1)
    save()
    md = markdown(result)
    with open(os.path.join(run.outdir, "summary.md"), "w") as f:
        f.write(md)
    if a.docs:
        write_docs(a.docs, md)
    print(md)
    log(f"results: {res_json} and summary.md ({result['meta']['duration_s'] / 60:.1f} min)")
    if run.scratch:
        log(f"removing the scratch filesystem {run.scratch.file} (on a discard filesystem "
            "this can take a minute)")
        run.scratch.close()
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
