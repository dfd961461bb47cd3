package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/device/memdev"
	"github.com/extentd/extentd/nbdserver"
	"github.com/extentd/extentd/nbdserver/nbdtest"
)

// defaultSize is the size of the default test export.
const defaultSize = 64 << 20

// env is one running server under test.
type env struct {
	t       testing.TB
	Srv     *nbdserver.Server
	Dev     *memdev.Dev // the default export's device
	Network string      // "tcp" or "unix"
	Addr    string
}

// envConfig changes the server options before start.
type envConfig func(*nbdserver.Options)

// plainDevice hides every optional capability of a Device, for exports that
// must not advertise TRIM, WRITE_ZEROES, FAST_ZERO, block status or CACHE.
type plainDevice struct{ device.Device }

// newEnv starts a server on 127.0.0.1:0 with one writable multi-conn export
// "" of defaultSize bytes, applies cfgs, and stops the server in cleanup.
func newEnv(t testing.TB, cfgs ...envConfig) *env { return startEnv(t, "tcp", cfgs...) }

// newUnixEnv is newEnv on a Unix socket in t.TempDir().
func newUnixEnv(t testing.TB, cfgs ...envConfig) *env { return startEnv(t, "unix", cfgs...) }

func startEnv(t testing.TB, network string, cfgs ...envConfig) *env {
	t.Helper()
	dev := memdev.New(defaultSize, memdev.Options{})
	opts := nbdserver.Options{
		Exports: []nbdserver.Export{{Name: "", Description: "default test export", Device: dev, MultiConn: true}},
		Logger:  zaptest.NewLogger(t),
	}
	for _, c := range cfgs {
		c(&opts)
	}
	addr, stop := startServer(t, network, opts)
	e := &env{t: t, Dev: dev, Network: network, Addr: addr}
	t.Cleanup(stop)
	return e
}

// startServer starts a server with opts on network ("tcp": 127.0.0.1:0,
// "unix": a socket in t.TempDir()) and returns its address and a cleanup
// that shuts it down and checks that Serve returned ErrServerClosed.
func startServer(t testing.TB, network string, opts nbdserver.Options) (addr string, cleanup func()) {
	t.Helper()
	srv, addr, served := serve(t, network, opts)
	return addr, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := serveResult(served); err != nil {
			t.Error(err)
		}
	}
}

// serve starts a server with opts on network as startServer does, leaving
// its shutdown to the caller: Serve's result arrives on served.
func serve(t testing.TB, network string, opts nbdserver.Options) (srv *nbdserver.Server, addr string, served <-chan error) {
	t.Helper()
	srv, err := nbdserver.New(opts)
	if err != nil {
		t.Fatalf("nbdserver.New: %v", err)
	}
	laddr := "127.0.0.1:0"
	if network == "unix" {
		laddr = filepath.Join(t.TempDir(), "nbd.sock")
	}
	l, err := net.Listen(network, laddr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ch := make(chan error, 1)
	go func() { ch <- srv.Serve(l) }()
	return srv, l.Addr().String(), ch
}

// serveResult waits up to 10 s for Serve to return after Shutdown and
// returns nil if it returned ErrServerClosed.
func serveResult(served <-chan error) error {
	select {
	case err := <-served:
		if !errors.Is(err, nbdserver.ErrServerClosed) {
			return fmt.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("Serve did not return after Shutdown")
	}
}

// withExports replaces the export list.
func withExports(x ...nbdserver.Export) envConfig {
	return func(o *nbdserver.Options) { o.Exports = x }
}

// addExport appends an export.
func addExport(x nbdserver.Export) envConfig {
	return func(o *nbdserver.Options) { o.Exports = append(o.Exports, x) }
}

// dial connects with opts and closes the client (checking the server
// closes after NBD_CMD_DISC) in cleanup.
func (e *env) dial(opts nbdtest.Options) *nbdtest.Client {
	e.t.Helper()
	c, err := nbdtest.Dial(context.Background(), e.Network, e.Addr, opts)
	if err != nil {
		e.t.Fatalf("dial %s: %v", e.Addr, err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

// conn opens a raw connection.
func (e *env) conn() net.Conn {
	e.t.Helper()
	c, err := net.DialTimeout(e.Network, e.Addr, 5*time.Second)
	if err != nil {
		e.t.Fatalf("dial %s: %v", e.Addr, err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// handshake opens a connection, reads the greeting and sends the default
// client flags.
func (e *env) handshake() *nbdtest.Handshake {
	e.t.Helper()
	h, err := nbdtest.NewHandshake(e.conn())
	if err != nil {
		e.t.Fatalf("greeting: %v", err)
	}
	if err := h.SendClientFlags(h.DefaultClientFlags()); err != nil {
		e.t.Fatalf("client flags: %v", err)
	}
	return h
}

// raw negotiates GO for export with structured replies as asked and
// returns a raw transmission connection.
func (e *env) raw(export string, structured bool) *nbdtest.Raw {
	e.t.Helper()
	if !structured {
		return e.rawAfter(export, nil)
	}
	return e.rawAfter(export, (*nbdtest.Handshake).StructuredReply)
}

// rawAfter runs negotiate (when not nil) on a new handshake, negotiates GO
// for export and returns a raw transmission connection.
func (e *env) rawAfter(export string, negotiate func(*nbdtest.Handshake) error) *nbdtest.Raw {
	e.t.Helper()
	h := e.handshake()
	if negotiate != nil {
		if err := negotiate(h); err != nil {
			e.t.Fatal(err)
		}
	}
	if _, err := h.Go(export, nil); err != nil {
		e.t.Fatal(err)
	}
	r, err := h.Raw()
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// uri returns the NBD URI of export for libnbd and qemu tools.
func (e *env) uri(export string) string {
	if e.Network == "unix" {
		return fmt.Sprintf("nbd+unix:///%s?socket=%s", export, e.Addr)
	}
	return fmt.Sprintf("nbd://%s/%s", e.Addr, export)
}

// checkAlive connects a fresh client, checks that it can write and read
// back, and that pattern (if not nil) is still at off.
func (e *env) checkAlive(pattern []byte, off int64) {
	e.t.Helper()
	c, err := nbdtest.Dial(context.Background(), e.Network, e.Addr, nbdtest.Options{StructuredReplies: true})
	if err != nil {
		e.t.Fatalf("fresh client after hostile one: %v", err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			e.t.Errorf("close fresh client: %v", err)
		}
	}()
	if pattern != nil {
		got := make([]byte, len(pattern))
		if _, err := c.ReadAt(got, off); err != nil {
			e.t.Fatalf("fresh client read: %v", err)
		}
		if !bytes.Equal(got, pattern) {
			e.t.Fatalf("data at %d changed: sha256 %x, want %x", off, sha256.Sum256(got), sha256.Sum256(pattern))
		}
	}
	probe := []byte("still alive")
	const probeOff = defaultSize - 4096
	if _, err := c.WriteAt(probe, probeOff); err != nil {
		e.t.Fatalf("fresh client write: %v", err)
	}
	got := make([]byte, len(probe))
	if _, err := c.ReadAt(got, probeOff); err != nil || !bytes.Equal(got, probe) {
		e.t.Fatalf("fresh client read back %q, %v", got, err)
	}
}

// pattern returns n deterministic pseudo-random bytes for seed
// (xorshift64, eight bytes per step so that large patterns stay cheap
// under the race detector).
func pattern(seed byte, n int) []byte {
	p := make([]byte, (n+7)&^7)
	x := uint64(seed)*0x9e3779b97f4a7c15 + 1
	for i := 0; i < len(p); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(p[i:], x)
	}
	return p[:n]
}

// writeSeed writes pattern(seed, n) at off through a fresh client and
// returns it.
func (e *env) writeSeed(seed byte, off int64, n int) []byte {
	e.t.Helper()
	c, err := nbdtest.Dial(context.Background(), e.Network, e.Addr, nbdtest.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	p := pattern(seed, n)
	if _, err := c.WriteAtFlags(p, off, nbdtest.CmdFlagFUA); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// defaultOpts is what most tests dial with: structured replies and
// base:allocation.
func defaultOpts() nbdtest.Options {
	return nbdtest.Options{StructuredReplies: true, MetaContexts: []string{nbdtest.ContextBaseAllocation}}
}
