package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/extentd/extentd/nbdserver/nbdtest"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key, and
// returns their paths and a pool trusting it.
func selfSigned(t *testing.T, dir string) (certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "extentd test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "srv.pem"), filepath.Join(dir, "srv.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

// TestRequireTLS: with --require-tls a client that starts TLS gets the
// export, and one that does not is refused.
func TestRequireTLS(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, pool := selfSigned(t, dir)
	s := startServer(t, "--tls-certificate", certPath, "--tls-key", keyPath, "--require-tls", "--size", "1M", filepath.Join(dir, "t.img"))
	addr := s.tcpAddr(t)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := nbdtest.Dial(ctx, "tcp", addr, nbdtest.Options{}); err == nil {
		c.Close()
		t.Fatalf("a plain-text client got an export from a --require-tls server")
	}
	c, err := nbdtest.Dial(ctx, "tcp", addr, nbdtest.Options{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}})
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
	certPath, keyPath, _ := selfSigned(t, dir)
	code, _, stderr = runCLI(t, "serve", "--tls-certificate", certPath, "--tls-key", keyPath, "--tls-ca", ca, filepath.Join(dir, "x.img"))
	if code != exitUsage || !bytes.Contains([]byte(stderr), []byte("--tls-ca")) {
		t.Errorf("CA file without certificates: code %d stderr %q", code, stderr)
	}
}
