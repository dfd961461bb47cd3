"""Unit tests of the harness's pure parts (no servers, no fio).

    python3 -m unittest discover -s bench/lib -p 'test_*.py'
"""

import json
import os
import random
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import workloads as W  # noqa: E402

PROM = """# HELP extentd_backing_write_size_bytes Size of each write reaching the backing file.
# TYPE extentd_backing_write_size_bytes histogram
extentd_backing_write_size_bytes_bucket{export="",le="512"} 0
extentd_backing_write_size_bytes_bucket{export="",le="+Inf"} 10
extentd_backing_write_size_bytes_sum{export=""} 40960
extentd_backing_write_size_bytes_count{export=""} 10
extentd_backing_flush_duration_seconds_bucket{export="",le="+Inf"} 2
extentd_backing_flush_duration_seconds_sum{export=""} 0.5
extentd_backing_flush_duration_seconds_count{export=""} 2
extentd_dirty_bytes{export=""} 4096
go_goroutines 12
"""


class MetricsTest(unittest.TestCase):
    def parse(self, text):
        out = {}
        for line in text.splitlines():
            m = H._METRIC.match(line)
            if m:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        return out

    def test_family_found_by_name(self):
        s = self.parse(PROM)
        self.assertEqual(H.writeback_family(s), "extentd_backing_write_size_bytes")
        self.assertIsNone(H.writeback_family(s, want="nope_bytes"))
        self.assertIsNone(H.writeback_family({"go_goroutines": 1.0}))

    def test_delta_average(self):
        m0 = self.parse(PROM)
        m1 = dict(m0)
        m1['extentd_backing_write_size_bytes_sum{export=""}'] += 10 * 65536
        m1['extentd_backing_write_size_bytes_count{export=""}'] += 10
        d = H.metrics_delta(m0, m1, "extentd_backing_write_size_bytes")
        self.assertEqual(d["wb_ios"], 10)
        self.assertEqual(d["wb_avg"], 65536)
        self.assertNotIn("go_goroutines", d["counters"])

    def test_no_writes_no_average(self):
        m = self.parse(PROM)
        self.assertIsNone(H.metrics_delta(m, m, "extentd_backing_write_size_bytes")["wb_avg"])


class ExtentTest(unittest.TestCase):
    def test_counts_match_filefrag(self):
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as d:
            p = os.path.join(d, "img")
            with open(p, "wb") as f:
                f.truncate(256 << 20)
            fd = os.open(p, os.O_WRONLY)
            rnd = random.Random(1)
            for _ in range(300):
                os.pwrite(fd, b"x" * 4096, rnd.randrange(0, 65536) * 4096)
            os.fsync(fd)
            os.close(fd)
            n = H.extent_count(p)
            self.assertGreater(n, 1)
            r = subprocess.run(["filefrag", p], capture_output=True, text=True)
            if r.returncode == 0:
                found = int(r.stdout.rsplit(":", 1)[1].split()[0])
                self.assertEqual(H.fragments(p), found)
            r = subprocess.run(["filefrag", "-v", p], capture_output=True, text=True)
            if r.returncode == 0:
                rows = [ln for ln in r.stdout.splitlines() if ln.strip()[:1].isdigit()]
                self.assertEqual(n, len(rows))

    def test_copy_source_fill(self):
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as d:
            p = os.path.join(d, "src")
            H.make_copy_source(p, 256 << 20)
            alloc = H.allocated(p)
            self.assertAlmostEqual(alloc / (256 << 20), W.COPY_FILL, delta=0.01)
            self.assertGreater(H.extent_count(p), 3)


class FormatTest(unittest.TestCase):
    def test_sizes(self):
        self.assertEqual(H.size_arg(4 << 30), "4G")
        self.assertEqual(H.size_arg(64 << 20), "64M")
        self.assertEqual(H.size_arg(1000), "1000")
        self.assertEqual(H.parse_size("64M"), 64 << 20)
        self.assertEqual(H.fbytes(4096), "4.0K")
        self.assertEqual(H.fnum(34567), "34.6k")
        self.assertEqual(H.ratio(2.0, 1.0), "2.00×")
        self.assertEqual(H.ratio(None, 1.0), "—")

    def test_extentd_flags(self):
        h = "  -i, --ipaddr string\n  -p, --port int\n      --size size\n" \
            "      --cache-size size\n      --max-dirty size\n      --admin-address string\n"
        fl = H.extentd_flags(h, 1234, 5678, 4 << 30, 64 << 20)
        self.assertEqual(fl, ["-i", "127.0.0.1", "-p", "1234", "--size", "4G",
                              "--admin-address", "127.0.0.1:5678",
                              "--cache-size", "64M", "--max-dirty", "64M"])
        self.assertNotIn("--cache-size", H.extentd_flags(h, 1, 2, 4 << 30, 0))


class SummaryTest(unittest.TestCase):
    def run_rec(self, srv, wl, iops, rep):
        return {"server": srv, "workload": wl, "rep": rep, "loadavg": ["1.0", "1", "1"],
                "iops": iops, "bw": iops * 4096, "extents": 10 * rep}

    def test_median_min_max_and_errors_skipped(self):
        runs = [self.run_rec("a", "W1", v, i) for i, v in enumerate((300, 100, 200), 1)]
        runs.append(dict(self.run_rec("a", "W1", 1e9, 4), error="boom"))
        s = H.summarize(runs)["a"]["W1"]["iops"]
        self.assertEqual((s["median"], s["min"], s["max"], s["n"]), (200, 100, 300, 3))

    def test_markdown_renders(self):
        runs = [self.run_rec(s, "W1", v, 1) for s, v in (("extentd", 2000), ("nbdkit-file", 1000))]
        result = {"meta": {"servers": ["extentd", "nbdkit-file"], "workloads": ["W1"],
                           "started_iso": "t", "argv": [], "reps": 1, "runtime": 1, "ramp": 1,
                           "size": 4 << 30, "trace": False,
                           "facts": {"nproc": 2, "cpu_model": "x", "mem_total_gib": 1, "os": "o",
                                     "kernel": "k", "loadavg_start": "1 1 1 1/1 1",
                                     "tmp_fs": {"fstype": "ext4", "options": "rw"}}},
                  "runs": runs}
        result["summary"] = H.summarize(runs)
        md = H.markdown(result)
        self.assertIn("| nbdkit-file | 2.00× |", md)
        json.dumps(result)


if __name__ == "__main__":
    unittest.main()
