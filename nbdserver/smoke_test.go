package nbdserver

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/extentd/extentd/device/memdev"
	"github.com/extentd/extentd/internal/testutil"
)

// startServer serves opts on 127.0.0.1:0 and returns the address. The
// server is shut down when the test ends.
func startServer(tb testing.TB, opts Options) (*Server, string) {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(tb)
	}
	s, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			tb.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return s, l.Addr().String()
}

func memExports(size int64) []Export {
	d := memdev.New(size, memdev.Options{})
	return []Export{
		{Name: "", Description: "scratch disk", Device: d, MultiConn: true},
		{Name: "ro", Description: "read-only view", Device: d, ReadOnly: true},
	}
}

// TestSmokeNbdinfo runs nbdinfo (libnbd) against the server.
func TestSmokeNbdinfo(t *testing.T) {
	testutil.RequireTool(t, "nbdinfo")
	_, addr := startServer(t, Options{Exports: memExports(64 << 20)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	out, err := exec.CommandContext(ctx, "nbdinfo", "--json", "nbd://"+addr).CombinedOutput()
	if err != nil {
		t.Fatalf("nbdinfo --json: %v\n%s", err, out)
	}
	var info struct {
		Protocol   string `json:"protocol"`
		Structured bool   `json:"structured"`
		Exports    []struct {
			Name        string   `json:"export-name"`
			Description string   `json:"description"`
			Size        int64    `json:"export-size"`
			Contexts    []string `json:"contexts"`
			ReadOnly    bool     `json:"is_read_only"`
			CanFlush    bool     `json:"can_flush"`
			CanFUA      bool     `json:"can_fua"`
			CanTrim     bool     `json:"can_trim"`
			CanZero     bool     `json:"can_zero"`
			CanFastZero bool     `json:"can_fast_zero"`
			CanMulti    bool     `json:"can_multi_conn"`
			CanCache    bool     `json:"can_cache"`
			CanDF       bool     `json:"can_df"`
			MaxBlock    int64    `json:"block_size_maximum"`
		} `json:"exports"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("nbdinfo output: %v\n%s", err, out)
	}
	if info.Protocol != "newstyle-fixed" || !info.Structured || len(info.Exports) != 1 {
		t.Fatalf("unexpected nbdinfo output:\n%s", out)
	}
	e := info.Exports[0]
	if e.Size != 64<<20 || e.Description != "scratch disk" || e.ReadOnly || !e.CanFlush || !e.CanFUA ||
		!e.CanTrim || !e.CanZero || !e.CanFastZero || !e.CanMulti || !e.CanCache || !e.CanDF ||
		e.MaxBlock != 32<<20 || len(e.Contexts) != 1 || e.Contexts[0] != "base:allocation" {
		t.Fatalf("unexpected export info: %+v\n%s", e, out)
	}

	out, err = exec.CommandContext(ctx, "nbdinfo", "--list", "nbd://"+addr).CombinedOutput()
	if err != nil {
		t.Fatalf("nbdinfo --list: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `export="ro"`) || !strings.Contains(string(out), "read-only view") {
		t.Fatalf("nbdinfo --list misses the ro export:\n%s", out)
	}
}

// TestSmokeNbdsh writes, reads, zeroes and maps through libnbd's Python
// bindings.
func TestSmokeNbdsh(t *testing.T) {
	testutil.RequireTool(t, "nbdsh")
	_, addr := startServer(t, Options{Exports: memExports(64 << 20)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	script := `
buf = b"extentd!" * 512
h.pwrite(buf, 1 << 20, nbd.CMD_FLAG_FUA)
assert h.pread(len(buf), 1 << 20) == buf
h.zero(4096, 1 << 20, nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(4096, 1 << 20) == bytes(4096)
h.trim(65536, 0)
h.flush()
h.cache(4096, 0)
ents = []
h.block_status(4 << 20, 0, lambda ctx, off, e, err: ents.extend(e))
assert len(ents) >= 2 and sum(ents[0::2]) == 4 << 20, ents
h.set_strict_mode(0)
try:
    h.pread(512, 64 << 20)
    raise SystemExit("read past end succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EINVAL, e
try:
    h.pwrite(bytes(512), 64 << 20)
    raise SystemExit("write past end succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ENOSPC, e
print("ok")
`
	cmd := exec.CommandContext(ctx, "nbdsh", "--base-allocation", "-u", "nbd://"+addr, "-c", "import errno", "-c", script)
	// nbdsh runs "python3 -mnbd": prefer the system interpreter that has
	// the libnbd bindings over any python3 earlier on PATH.
	cmd.Env = append(cmd.Environ(), "PATH=/usr/bin:/bin")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("nbdsh: %v\n%s", err, out)
	}
}
