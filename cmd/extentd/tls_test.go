package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/extentd/extentd/internal/testutil"
	"github.com/extentd/extentd/nbdserver/nbdtest"
)

// TestRequireTLS: with --require-tls a client that starts TLS gets the
// export, and one that does not is refused.
func TestRequireTLS(t *testing.T) {
	dir := t.TempDir()
	pki := testutil.NewPKI(t, "extentd")
	certPath, keyPath, _ := pki.WriteFiles(t, dir)
	s := startServer(t, "--tls-certificate", certPath, "--tls-key", keyPath, "--require-tls", "--size", "1M", filepath.Join(dir, "t.img"))
	addr := s.tcpAddr(t)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := nbdtest.Dial(ctx, "tcp", addr, nbdtest.Options{}); err == nil {
		c.Close()
		t.Fatalf("a plain-text client got an export from a --require-tls server")
	}
	clientTLS := pki.ClientConfig(false)
	clientTLS.ServerName = "127.0.0.1" // the address the client dials
	c, err := nbdtest.Dial(ctx, "tcp", addr, nbdtest.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	want := pattern(4096, 9)
	if _, err := c.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := c.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back over TLS: %v", err)
	}
	c.Close()
	if code := s.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestBadTLSFiles(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runCLI(t, "serve", "--tls-certificate", filepath.Join(dir, "none.pem"), "--tls-key", filepath.Join(dir, "none.key"), filepath.Join(dir, "x.img"))
	if code != exitError || !bytes.Contains([]byte(stderr), []byte("--tls-certificate")) {
		t.Errorf("missing certificate files: code %d stderr %q", code, stderr)
	}
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, []byte("not pem"), 0o644)
	certPath, keyPath, _ := testutil.NewPKI(t, "extentd").WriteFiles(t, dir)
	code, _, stderr = runCLI(t, "serve", "--tls-certificate", certPath, "--tls-key", keyPath, "--tls-ca", ca, filepath.Join(dir, "x.img"))
	if code != exitUsage || !bytes.Contains([]byte(stderr), []byte("--tls-ca")) {
		t.Errorf("CA file without certificates: code %d stderr %q", code, stderr)
	}
}
