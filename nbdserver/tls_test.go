package nbdserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/extentd/extentd/internal/testutil"
)

// startTLS sends NBD_OPT_STARTTLS and upgrades the client. It returns the
// TLS handshake error, if any.
func (rc *rawClient) startTLS(cfg *tls.Config) error {
	rc.tb.Helper()
	rc.sendOpt(optStartTLS, nil)
	if r := rc.readOptReply(); r.typ != repAck {
		rc.tb.Fatalf("STARTTLS: reply %#x %q", r.typ, r.data)
	}
	tc := tls.Client(rc.c, cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	rc.c, rc.br = tc, bufio.NewReader(tc)
	return nil
}

func TestStartTLS(t *testing.T) {
	p := testutil.NewPKI(t, "nbdserver")
	s := newTestServer(t, Options{TLSConfig: p.ServerConfig(false)})
	rc := pipeClient(t, s)
	rc.greet(cflagFixedNewstyle | cflagNoZeroes)
	// Negotiated in plaintext, forgotten after STARTTLS.
	rc.sendOpt(optStructuredReply, nil)
	if r := rc.readOptReply(); r.typ != repAck {
		t.Fatalf("STRUCTURED_REPLY: %#x", r.typ)
	}
	if err := rc.startTLS(&tls.Config{RootCAs: p.Pool, ServerName: "localhost"}); err != nil {
		t.Fatal(err)
	}
	rc.sendOpt(optStartTLS, nil)
	if r := rc.readOptReply(); r.typ != repErrInvalid {
		t.Fatalf("second STARTTLS: %#x, want ERR_INVALID", r.typ)
	}
	rc.sendOpt(optGo, infoData(""))
	var tflags uint16
	for _, r := range rc.readOptReplies() {
		if r.typ == repInfo && r.data[1] == infoExport {
			tflags = uint16(r.data[10])<<8 | uint16(r.data[11])
		}
	}
	if tflags == 0 || tflags&tflagSendDF != 0 {
		t.Fatalf("flags after STARTTLS %#x: structured replies must be renegotiated", tflags)
	}
	data := pattern(4096, 7)
	if errno, _, _ := rc.do(requestHeader{cmd: CmdWrite, cookie: 1, length: 4096}, data); errno != 0 {
		t.Fatalf("write over TLS: %v", errno)
	}
	if errno, got, _ := rc.do(requestHeader{cmd: CmdRead, cookie: 2, length: 4096}, nil); errno != 0 || string(got) != string(data) {
		t.Fatalf("read over TLS: %v", errno)
	}
}

func TestRequireTLS(t *testing.T) {
	p := testutil.NewPKI(t, "nbdserver")
	s := newTestServer(t, Options{TLSConfig: p.ServerConfig(false), RequireTLS: true})
	t.Run("options refused before TLS", func(t *testing.T) {
		rc := pipeClient(t, s)
		rc.greet(cflagFixedNewstyle)
		for _, opt := range []uint32{optList, optInfo, optGo, optStructuredReply, 99} {
			rc.sendOpt(opt, infoData(""))
			if r := rc.readOptReply(); r.typ != repErrTLSReqd {
				t.Fatalf("option %d before TLS: %#x, want ERR_TLS_REQD", opt, r.typ)
			}
		}
		if err := rc.startTLS(&tls.Config{RootCAs: p.Pool, ServerName: "localhost"}); err != nil {
			t.Fatal(err)
		}
		rc.sendOpt(optList, nil)
		if rs := rc.readOptReplies(); rs[len(rs)-1].typ != repAck {
			t.Fatalf("LIST over TLS: %+v", rs)
		}
	})
	t.Run("export name before TLS closes", func(t *testing.T) {
		rc := pipeClient(t, s)
		rc.greet(cflagFixedNewstyle)
		rc.sendOpt(optExportName, nil)
		if !rc.closed() {
			t.Fatal("EXPORT_NAME without TLS did not close")
		}
	})
	t.Run("non-fixed newstyle closes", func(t *testing.T) {
		rc := pipeClient(t, s)
		rc.greet(0)
		if !rc.closed() {
			t.Fatal("non-fixed client not refused")
		}
	})
}

func TestTLSClientCertificates(t *testing.T) {
	p := testutil.NewPKI(t, "nbdserver")
	// TCP, not net.Pipe: the server's TLS alert must not block on an
	// unbuffered pipe while the client writes.
	_, addr := startServer(t, Options{Exports: memExports(1 << 20), TLSConfig: p.ServerConfig(true), RequireTLS: true})
	t.Run("with certificate", func(t *testing.T) {
		rc := dialRaw(t, addr)
		rc.greet(cflagFixedNewstyle)
		if err := rc.startTLS(&tls.Config{RootCAs: p.Pool, ServerName: "localhost", Certificates: []tls.Certificate{p.Client}}); err != nil {
			t.Fatal(err)
		}
		rc.sendOpt(optGo, infoData(""))
		if rs := rc.readOptReplies(); rs[len(rs)-1].typ != repAck {
			t.Fatalf("GO: %+v", rs)
		}
	})
	t.Run("without certificate", func(t *testing.T) {
		rc := dialRaw(t, addr)
		rc.greet(cflagFixedNewstyle)
		err := rc.startTLS(&tls.Config{RootCAs: p.Pool, ServerName: "localhost"})
		if err == nil {
			// TLS 1.3 reports the rejection on the first read.
			rc.c.Write([]byte("IHAVEOPT"))
			if !rc.closed() {
				t.Fatal("server accepted a client without a certificate")
			}
		}
	})
}

// TestSmokeNbdinfoTLS checks interoperability with GnuTLS (libnbd).
func TestSmokeNbdinfoTLS(t *testing.T) {
	testutil.RequireTool(t, "nbdinfo")
	p := testutil.NewPKI(t, "nbdserver")
	dir := t.TempDir()
	p.WriteFiles(t, dir)
	_, addr := startServer(t, Options{Exports: memExports(1 << 20), TLSConfig: p.ServerConfig(true), RequireTLS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nbdinfo", "nbds://"+addr+"/?tls-certificates="+dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "with TLS") {
		t.Fatalf("nbdinfo over TLS: %v\n%s", err, out)
	}
	// Plaintext is refused.
	out, err = exec.CommandContext(ctx, "nbdinfo", "nbd://"+addr).CombinedOutput()
	if err == nil {
		t.Fatalf("plaintext nbdinfo succeeded against RequireTLS:\n%s", out)
	}
}
