package nbdtest_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/extentd/extentd/internal/testutil"
	"github.com/extentd/extentd/nbdserver/nbdtest"
)

// startNbdkit runs nbdkit's memory plugin on a Unix socket as a reference
// server and returns the socket path. The process is stopped by PID.
func startNbdkit(t *testing.T, args ...string) string {
	t.Helper()
	testutil.RequireTool(t, "nbdkit")
	sock := filepath.Join(t.TempDir(), "nbdkit.sock")
	argv := append([]string{"-f", "-U", sock, "--exit-with-parent"}, args...)
	cmd := exec.Command("nbdkit", argv...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nbdkit: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitServing(t, sock)
	return sock
}

// waitServing waits until a server on sock sends a greeting. The socket
// file appears at bind(), before the server listens.
func waitServing(t *testing.T, sock string) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if conn, err := (netDialer{}).dial(sock); err == nil {
			_, herr := nbdtest.NewHandshake(conn)
			conn.Close()
			if herr == nil {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no NBD server on %s", sock)
}

func dial(t *testing.T, sock string, opts nbdtest.Options) *nbdtest.Client {
	t.Helper()
	c, err := nbdtest.Dial(context.Background(), "unix", sock, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestAgainstNbdkit checks the client against a reference server, with
// every header style.
func TestAgainstNbdkit(t *testing.T) {
	sock := startNbdkit(t, "memory", "8M")
	for _, tc := range []struct {
		name string
		opts nbdtest.Options
	}{
		{"simple", nbdtest.Options{}},
		{"structured", nbdtest.Options{StructuredReplies: true, MetaContexts: []string{nbdtest.ContextBaseAllocation}}},
		{"exportname", nbdtest.Options{UseExportName: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, sock, tc.opts)
			info := c.Export()
			if info.Size != 8<<20 {
				t.Fatalf("size %d, want 8 MiB", info.Size)
			}
			data := bytes.Repeat([]byte{0xab, 0xcd, 0xef}, 100000)
			if _, err := c.WriteAtFlags(data, 4096, nbdtest.CmdFlagFUA); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(data))
			if _, err := c.ReadAt(got, 4096); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("read back differs")
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := c.Zero(4096, 65536, 0); err != nil {
				t.Fatal(err)
			}
			if err := c.Trim(1<<20, 65536, 0); err != nil {
				t.Fatal(err)
			}
			if err := c.Cache(0, 65536); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ReadAt(got[:65536], 4096); err != nil || !bytes.Equal(got[:65536], make([]byte, 65536)) {
				t.Fatalf("zeroed range: err %v, not zero", err)
			}
			_, err := c.ReadAt(got[:4096], 8<<20-1024)
			if !errors.Is(err, nbdtest.EINVAL) {
				t.Fatalf("out-of-range read: %v, want EINVAL", err)
			}
			var e *nbdtest.Error
			if !errors.As(err, &e) || e.Cmd != nbdtest.CmdRead {
				t.Fatalf("error %#v is not an *Error for READ", err)
			}
			if c.Structured() {
				ext, err := c.BlockStatus(0, 8<<20, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(ext[nbdtest.ContextBaseAllocation]) == 0 {
					t.Fatalf("no base:allocation extents: %v", ext)
				}
				ext, err = c.BlockStatus(0, 8<<20, nbdtest.CmdFlagReqOne)
				if err != nil || len(ext[nbdtest.ContextBaseAllocation]) != 1 {
					t.Fatalf("REQ_ONE: %v %v", ext, err)
				}
			}
			if err := c.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestConcurrentNbdkit keeps many requests in flight from several
// goroutines.
func TestConcurrentNbdkit(t *testing.T) {
	sock := startNbdkit(t, "memory", "8M", "--threads", "8")
	c := dial(t, sock, nbdtest.Options{StructuredReplies: true})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var calls []*nbdtest.Call
			for i := 0; i < 32; i++ {
				off := uint64((g*32 + i) * 4096)
				call, err := c.Submit(nbdtest.Request{Type: nbdtest.CmdWrite, Offset: off, Payload: bytes.Repeat([]byte{byte(g*32 + i)}, 4096)})
				if err != nil {
					t.Error(err)
					return
				}
				calls = append(calls, call)
			}
			for _, call := range calls {
				if err := call.Wait(10 * time.Second); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	buf := make([]byte, 256*4096)
	if _, err := c.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 256; i++ {
		if buf[i*4096] != byte(i) || buf[i*4096+4095] != byte(i) {
			t.Fatalf("block %d holds %d", i, buf[i*4096])
		}
	}
}

// TestHandshakeNbdkit drives the option phase by hand.
func TestHandshakeNbdkit(t *testing.T) {
	sock := startNbdkit(t, "memory", "1M")
	h := handshake(t, sock)
	if _, err := h.List(); err != nil {
		t.Fatal(err)
	}
	info, err := h.Info("", nbdtest.DefaultInfoRequests())
	if err != nil || info.Size != 1<<20 {
		t.Fatalf("info %+v %v", info, err)
	}
	// Meta context before structured replies: invalid.
	if _, err := h.SetMetaContext("", nbdtest.ContextBaseAllocation); !errors.Is(err, nbdtest.RepErrInvalid) {
		t.Fatalf("SET_META_CONTEXT before STRUCTURED_REPLY: %v", err)
	}
	// Unknown option: ERR_UNSUP and the stream continues.
	if _, err := h.Option(99, []byte("junk")); !errors.Is(err, nbdtest.RepErrUnsup) {
		t.Fatalf("unknown option: %v", err)
	}
	if err := h.StructuredReply(); err != nil {
		t.Fatal(err)
	}
	mc, err := h.ListMetaContext("")
	if err != nil || len(mc) == 0 {
		t.Fatalf("LIST_META_CONTEXT: %v %v", mc, err)
	}
	if err := h.Abort(); err != nil {
		t.Fatal(err)
	}
}

func handshake(t *testing.T, sock string) *nbdtest.Handshake {
	t.Helper()
	conn, err := (&netDialer{}).dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h, err := nbdtest.NewHandshake(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SendClientFlags(h.DefaultClientFlags()); err != nil {
		t.Fatal(err)
	}
	return h
}

// startQemuNbd serves a fresh raw image of size bytes with qemu-nbd on a
// Unix socket (a second reference server: it chunks replies differently
// from nbdkit).
func startQemuNbd(t *testing.T, size int64) string {
	t.Helper()
	testutil.RequireTool(t, "qemu-nbd")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "qemu.sock")
	cmd := exec.Command("qemu-nbd", "-f", "raw", "-k", sock, "--shared=4", "--persistent", "--cache=writeback", "--discard=unmap", img)
	// stderr is dropped: the readiness probe makes qemu-nbd complain.
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu-nbd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitServing(t, sock)
	return sock
}

// TestAgainstQemuNbd runs the client against qemu-nbd, including sparse
// structured reads and block status.
func TestAgainstQemuNbd(t *testing.T) {
	sock := startQemuNbd(t, 8<<20)
	for _, opts := range []nbdtest.Options{{}, {StructuredReplies: true, MetaContexts: []string{nbdtest.ContextBaseAllocation}}} {
		c := dial(t, sock, opts)
		data := bytes.Repeat([]byte("qemu"), 1<<16)
		if _, err := c.WriteAt(data, 1<<20); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4<<20)
		if _, err := c.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[1<<20:1<<20+len(data)], data) || !bytes.Equal(got[:1<<20], make([]byte, 1<<20)) {
			t.Fatal("read back differs")
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := c.Zero(1<<20, 4096, nbdtest.CmdFlagNoHole); err != nil {
			t.Fatal(err)
		}
		if c.Structured() {
			st, err := c.BlockStatus(0, 8<<20, 0)
			if err != nil || len(st[nbdtest.ContextBaseAllocation]) == 0 {
				t.Fatalf("block status: %v %v", st, err)
			}
		}
		if _, err := c.ReadAt(got[:4096], 8<<20); !errors.Is(err, nbdtest.EINVAL) {
			t.Fatalf("read past end: %v, want EINVAL", err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
}
