package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/extentd/extentd/internal/testutil"
	"github.com/extentd/extentd/nbdserver/nbdtest"
)

// These tests run the real binary, built once by TestMain.

var binPath string

const testVersion = "v0.0.0-test"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "extentd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "extentd")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = "/usr/local/go/bin/go"
	}
	build := exec.Command(gobin, "build", "-o", binPath, "-ldflags", "-X main.version="+testVersion, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building extentd:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running extentd process.
type server struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	nbd    []string // NBD URIs from --addr-file
	admin  string   // host:port of the admin endpoint
	done   chan error
}

// startServer runs `extentd serve` with args plus a free port, a free admin
// port and an address file, and waits until it listens.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addr")
	full := append([]string{"serve", "-p", "0", "--admin-address", "127.0.0.1:0", "--addr-file", addrFile}, args...)
	return startCmd(t, exec.Command(binPath, full...), addrFile)
}

func startCmd(t *testing.T, cmd *exec.Cmd, addrFile string) *server {
	t.Helper()
	s := &server{cmd: cmd, stderr: new(bytes.Buffer), done: make(chan error, 1)}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("extentd stderr:\n%s", s.stderr)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if data, err := os.ReadFile(addrFile); err == nil {
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				if u, ok := strings.CutPrefix(line, "nbd "); ok {
					s.nbd = append(s.nbd, u)
				}
				if u, ok := strings.CutPrefix(line, "admin http://"); ok {
					s.admin = u
				}
			}
			return s
		}
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("extentd exited before listening: %v\n%s", err, s.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("extentd did not write %s in time\n%s", addrFile, s.stderr)
		}
	}
}

// tcpAddr returns host:port of the first nbd:// URI.
func (s *server) tcpAddr(t *testing.T) string {
	t.Helper()
	for _, u := range s.nbd {
		if rest, ok := strings.CutPrefix(u, "nbd://"); ok {
			return rest[:strings.Index(rest, "/")]
		}
	}
	t.Fatalf("no TCP listener in %v", s.nbd)
	return ""
}

// stop sends sig and returns the exit code.
func (s *server) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("extentd did not exit within 60s of %v", sig)
	}
	return s.cmd.ProcessState.ExitCode()
}

func dial(t *testing.T, network, addr, export string) *nbdtest.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := nbdtest.Dial(ctx, network, addr, nbdtest.Options{ExportName: export})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7)
	}
	return p
}

// TestServeWriteSigterm writes through NBD without a flush, stops the server
// with SIGTERM and checks that it exits 0 with every byte in the image file:
// the shutdown path writes back and syncs.
func TestServeWriteSigterm(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		extra      []string
		through    string // the write-through counter after the writes ("": none)
	}{
		// The aligned 1 MiB write goes straight to a buffered image, and
		// into the cache over --direct-io.
		{"writeback", cacheWriteback, nil, "1.048576e+06"},
		{"none", cacheNone, nil, ""},
		{"writeback-direct-io", cacheWriteback, []string{"--direct-io"}, "0"},
		{"none-direct-io", cacheNone, []string{"--direct-io"}, ""},
	} {
		mode := tc.mode
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "disk.img")
			s := startServer(t, append([]string{"--cache", mode, "--size", "64M", "-e", "disk", img}, tc.extra...)...)
			c := dial(t, "tcp", s.tcpAddr(t), "disk")
			if got := c.Export().Size; got != 64<<20 {
				t.Fatalf("export size %d, want 64 MiB", got)
			}
			writes := []struct {
				off int64
				p   []byte
			}{
				{0, pattern(4096, 1)},
				{1<<20 + 123, pattern(10000, 2)}, // unaligned
				{64<<20 - 512, pattern(512, 3)},  // last sector
				{8 << 20, pattern(1<<20, 4)},
			}
			for _, w := range writes {
				if _, err := c.WriteAt(w.p, w.off); err != nil {
					t.Fatalf("write at %d: %v", w.off, err)
				}
			}
			got := make([]byte, 10000)
			if _, err := c.ReadAt(got, 1<<20+123); err != nil || !bytes.Equal(got, writes[1].p) {
				t.Fatalf("read back through NBD: %v, equal=%v", err, bytes.Equal(got, writes[1].p))
			}

			// info and metrics while it runs.
			code, out, stderr := runCLI(t, "info", "--admin-address", s.admin)
			if code != 0 || !strings.Contains(out, "disk.img") || !strings.Contains(out, "64.00 MiB") || !strings.Contains(out, testVersion) {
				t.Errorf("extentd info: code %d, stdout:\n%s\nstderr: %s", code, out, stderr)
			}
			_, raw, err := fetchInfo(context.Background(), s.admin, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var info serverInfo
			if err := json.Unmarshal(raw, &info); err != nil || len(info.Exports) != 1 || info.Exports[0].Name != "disk" || info.Exports[0].Cache != mode {
				t.Errorf("info JSON %s: %v", raw, err)
			}
			metrics := httpGet(t, "http://"+s.admin+"/metrics")
			wants := []string{`extentd_requests_total{command="write"} 4`, `extentd_connections{export="disk"} 1`, `extentd_export_size_bytes{export="disk"} 6.7108864e+07`}
			if tc.through != "" {
				wants = append(wants, `extentd_write_through_bytes_total{export="disk"} `+tc.through+"\n")
			}
			for _, want := range wants {
				if !strings.Contains(metrics, want) {
					t.Errorf("/metrics lacks %q", want)
				}
			}

			if code := s.stop(t, syscall.SIGTERM); code != 0 {
				t.Fatalf("exit code after SIGTERM = %d, want 0", code)
			}
			data, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range writes {
				if !bytes.Equal(data[w.off:w.off+int64(len(w.p))], w.p) {
					t.Errorf("image file lacks the write at %d after SIGTERM", w.off)
				}
			}
			if !strings.Contains(s.stderr.String(), "stopped cleanly") {
				t.Errorf("no clean-stop log line")
			}
		})
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestExistingImageKeepsSize: --size only applies to a new image.
func TestExistingImageKeepsSize(t *testing.T) {
	img := filepath.Join(t.TempDir(), "small.img")
	if code, _, stderr := runCLI(t, "create", img, "--size", "8M"); code != 0 {
		t.Fatal(stderr)
	}
	s := startServer(t, "--size", "1G", img)
	c := dial(t, "tcp", s.tcpAddr(t), "")
	if got := c.Export().Size; got != 8<<20 {
		t.Fatalf("export size %d, want the existing 8 MiB", got)
	}
	c.Close()
	if code := s.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit code after SIGINT = %d", code)
	}
}

// TestDefaultImage: serve with no IMAGE creates ./extentd.img, 1 GiB, sparse.
func TestDefaultImage(t *testing.T) {
	dir := t.TempDir()
	addrFile := filepath.Join(dir, "addr")
	cmd := exec.Command(binPath, "serve", "-p", "0", "--admin-address", "", "--addr-file", addrFile)
	cmd.Dir = dir
	s := startCmd(t, cmd, addrFile)
	if s.admin != "" {
		t.Errorf("admin endpoint %q with --admin-address \"\"", s.admin)
	}
	c := dial(t, "tcp", s.tcpAddr(t), "")
	if got := c.Export().Size; got != 1<<30 {
		t.Fatalf("default export size %d, want 1 GiB", got)
	}
	c.Close()
	if code := s.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	fi, err := os.Stat(filepath.Join(dir, "extentd.img"))
	if err != nil || fi.Size() != 1<<30 {
		t.Fatalf("./extentd.img: %v size %v", err, fi)
	}
}

// TestUnixSocketReadOnly serves read-only on a Unix socket only.
func TestUnixSocketReadOnly(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "ro.img")
	if code, _, stderr := runCLI(t, "create", img, "--size", "1M"); code != 0 {
		t.Fatal(stderr)
	}
	sock := filepath.Join(dir, "nbd.sock")
	addrFile := filepath.Join(dir, "addr")
	s := startCmd(t, exec.Command(binPath, "serve", "-U", sock, "-r", "--admin-address", "", "--addr-file", addrFile, img), addrFile)
	if len(s.nbd) != 1 || !strings.HasPrefix(s.nbd[0], "nbd+unix:///") {
		t.Fatalf("listeners %v, want the Unix socket only", s.nbd)
	}
	c := dial(t, "unix", sock, "")
	if _, err := c.WriteAt(make([]byte, 512), 0); err == nil {
		t.Errorf("write to a read-only export succeeded")
	}
	c.Close()
	if code := s.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestSocketActivation passes a listening socket as fd 3 with LISTEN_PID set
// to the server's own pid, as systemd does.
func TestSocketActivation(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	defer f.Close()
	dir := t.TempDir()
	addrFile := filepath.Join(dir, "addr")
	img := filepath.Join(dir, "act.img")
	// sh's $$ is the pid that exec hands to extentd.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=nbd exec "$0" "$@"`,
		binPath, "serve", "--size", "4M", "-p", "1", "--admin-address", "", "--addr-file", addrFile, img)
	cmd.ExtraFiles = []*os.File{f} // becomes fd 3
	s := startCmd(t, cmd, addrFile)
	if len(s.nbd) != 1 || !strings.Contains(s.nbd[0], addr) {
		t.Fatalf("listeners %v, want the activated %s (not port 1)", s.nbd, addr)
	}
	c := dial(t, "tcp", addr, "")
	if got := c.Export().Size; got != 4<<20 {
		t.Fatalf("size %d", got)
	}
	c.Close()
	if code := s.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestLogReopenOnSIGHUP: after the log file is moved away, SIGHUP makes the
// server log to a new file of the same name.
func TestLogReopenOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "extentd.log")
	s := startServer(t, "--log-file", logPath, "--log-format", "json", filepath.Join(dir, "d.img"))
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(logPath); err == nil && strings.Contains(string(b), `"msg":"log file reopened"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new log file after SIGHUP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := s.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	old, _ := os.ReadFile(logPath + ".1")
	if !strings.Contains(string(old), `"msg":"extentd started"`) {
		t.Errorf("rotated log lacks the start line: %s", old)
	}
	cur, _ := os.ReadFile(logPath)
	if !strings.Contains(string(cur), `"msg":"stopped cleanly"`) {
		t.Errorf("new log lacks the stop line: %s", cur)
	}
}

// TestNbdinfo checks what a real client sees.
func TestNbdinfo(t *testing.T) {
	tools := testutil.RequireTool(t, "nbdinfo")
	if tools == nil {
		return
	}
	s := startServer(t, "--size", "16M", "--description", "test disk", filepath.Join(t.TempDir(), "i.img"))
	out, err := exec.Command(tools[0], "--json", s.nbd[0]).Output()
	if err != nil {
		t.Fatalf("nbdinfo: %v", err)
	}
	var doc struct {
		Exports []struct {
			Size        int64  `json:"export-size"`
			Description string `json:"description"`
			CanFlush    bool   `json:"can_flush"`
			CanFUA      bool   `json:"can_fua"`
		} `json:"exports"`
	}
	if err := json.Unmarshal(out, &doc); err != nil || len(doc.Exports) != 1 {
		t.Fatalf("nbdinfo --json: %v\n%s", err, out)
	}
	e := doc.Exports[0]
	if e.Size != 16<<20 || e.Description != "test disk" || !e.CanFlush || !e.CanFUA {
		t.Errorf("nbdinfo sees %+v", e)
	}
	if code := s.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestPidFileAndBusyAdmin: an admin address given explicitly that is busy
// is an error (exit 1); the pid file holds the server's pid and is removed
// at exit.
func TestPidFileAndBusyAdmin(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	img := filepath.Join(dir, "p.img")

	// Explicitly asked for a busy address: refuse to start.
	cmd := exec.Command(binPath, "serve", "-p", "0", "--admin-address", busy.Addr().String(), img)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != exitError || !strings.Contains(stderr.String(), "--admin-address") {
		t.Errorf("busy explicit admin address: exit %d (%v), stderr %q", code, err, stderr.String())
	}

	pidFile := filepath.Join(dir, "extentd.pid")
	addrFile := filepath.Join(dir, "addr")
	s := startCmd(t, exec.Command(binPath, "serve", "-p", "0", "--admin-address", "127.0.0.1:0", "-P", pidFile, "--addr-file", addrFile, img), addrFile)
	b, err := os.ReadFile(pidFile)
	if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(s.cmd.Process.Pid) {
		t.Errorf("pid file %q (%v), want %d", b, err, s.cmd.Process.Pid)
	}
	if code := s.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if _, err := os.Stat(pidFile); err == nil {
		t.Errorf("pid file left behind after a clean stop")
	}
}

// TestConfigTwoExports serves two exports from a config file, one read-only
// without cache, and checks each is reachable by name with its own size.
func TestConfigTwoExports(t *testing.T) {
	dir := t.TempDir()
	ro := filepath.Join(dir, "ro.img")
	if code, _, stderr := runCLI(t, "create", ro, "--size", "2M"); code != 0 {
		t.Fatal(stderr)
	}
	cfg := filepath.Join(dir, "extentd.yaml")
	body := fmt.Sprintf(`
defaults: {cache-size: 8M, max-dirty: 32M, max-writeback-io: 1M}
exports:
  - {name: rw, image: %s, size: 16M, description: scratch}
  - {name: ro, image: %s, read-only: true, cache: none}
`, filepath.Join(dir, "rw.img"), ro)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--config", cfg)
	addr := s.tcpAddr(t)
	rw := dial(t, "tcp", addr, "rw")
	if rw.Export().Size != 16<<20 || rw.Export().Description != "scratch" {
		t.Errorf("export rw: %+v", rw.Export())
	}
	if _, err := rw.WriteAt(pattern(8192, 5), 4096); err != nil {
		t.Fatal(err)
	}
	roc := dial(t, "tcp", addr, "ro")
	if roc.Export().Size != 2<<20 {
		t.Errorf("export ro size %d", roc.Export().Size)
	}
	if _, err := roc.WriteAt(make([]byte, 512), 0); err == nil {
		t.Errorf("write to the read-only export succeeded")
	}
	rw.Close()
	roc.Close()
	if code := s.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "rw.img"))
	if len(data) != 16<<20 || !bytes.Equal(data[4096:4096+8192], pattern(8192, 5)) {
		t.Errorf("rw.img lacks the write after SIGTERM")
	}
}

// TestNbdcopyRoundTrip copies a file with holes and data into the server
// with nbdcopy (which flushes at the end), stops it with SIGTERM and
// compares the image with the source byte for byte.
func TestNbdcopyRoundTrip(t *testing.T) {
	tools := testutil.RequireTool(t, "nbdcopy")
	if tools == nil {
		return
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	const size = 32 << 20
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for i, off := range []int64{0, 3<<20 + 512, 17 << 20, size - 65536} {
		if _, err := f.WriteAt(pattern(65536, byte(i+1)), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "dst.img")
	s := startServer(t, "--size", "32M", "--max-writeback-io", "1M", "--max-dirty", "4M", img)
	out, err := exec.Command(tools[0], src, s.nbd[0]).CombinedOutput()
	if err != nil {
		t.Fatalf("nbdcopy: %v\n%s", err, out)
	}
	if code := s.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	want, _ := os.ReadFile(src)
	got, _ := os.ReadFile(img)
	if !bytes.Equal(want, got) {
		t.Fatalf("image differs from the nbdcopy source (%d vs %d bytes)", len(got), len(want))
	}
}
