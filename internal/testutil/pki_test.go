package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// handshake connects a client and a server with the two configurations
// over loopback TCP, sends one byte each way, and returns the client's and
// the server's errors. The byte exchange matters under TLS 1.3, where the
// client finishes its handshake before the server has checked the client's
// certificate.
func handshake(t *testing.T, client, server *tls.Config) (cerr, serr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		ts := tls.Server(c, server)
		b := make([]byte, 1)
		if _, err := io.ReadFull(ts, b); err != nil {
			done <- err
			return
		}
		_, err = ts.Write(b)
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, client)
	if _, cerr = tc.Write([]byte{1}); cerr == nil {
		_, cerr = io.ReadFull(tc, make([]byte, 1))
	}
	c.Close()
	return cerr, <-done
}

func TestPKI(t *testing.T) {
	p := NewPKI(t, "a")
	other := NewPKI(t, "b")
	if cerr, serr := handshake(t, p.ClientConfig(true), p.ServerConfig(true)); cerr != nil || serr != nil {
		t.Errorf("mutual TLS within one PKI: client %v, server %v", cerr, serr)
	}
	if cerr, serr := handshake(t, p.ClientConfig(false), p.ServerConfig(false)); cerr != nil || serr != nil {
		t.Errorf("server-only TLS: client %v, server %v", cerr, serr)
	}
	if _, serr := handshake(t, p.ClientConfig(false), p.ServerConfig(true)); serr == nil {
		t.Error("server that verifies clients accepted a client without a certificate")
	}
	if cerr, _ := handshake(t, other.ClientConfig(false), p.ServerConfig(false)); cerr == nil {
		t.Error("client trusted a server certificate from another CA")
	}
	if _, serr := handshake(t, other.ClientConfig(true), p.ServerConfig(true)); serr == nil {
		t.Error("server accepted a client certificate from another CA")
	}

	dir := t.TempDir()
	cert, key, ca := p.WriteFiles(t, dir)
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		t.Errorf("written server pair: %v", err)
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	if pool := x509.NewCertPool(); !pool.AppendCertsFromPEM(caPEM) {
		t.Error("written CA file holds no certificate")
	}
	for _, name := range []string{"client-cert.pem", "client-key.pem", "server-key.pem"} {
		fi, err := os.Stat(dir + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if name != "client-cert.pem" && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
}
