package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"testing"

	"github.com/extentd/extentd/internal/testutil"
	"github.com/extentd/extentd/nbdserver"
	"github.com/extentd/extentd/nbdserver/nbdtest"
)

func withTLS(cfg *tls.Config, require bool) envConfig {
	return func(o *nbdserver.Options) { o.TLSConfig, o.RequireTLS = cfg, require }
}

// roundTrip writes and reads back one block through c.
func roundTrip(t *testing.T, c *nbdtest.Client, seed byte) {
	t.Helper()
	p := pattern(seed, 64<<10)
	if _, err := c.WriteAt(p, int64(seed)<<16); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(p))
	if _, err := c.ReadAt(got, int64(seed)<<16); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("read back over TLS: %v", err)
	}
}

// TestTLSOptional: TLS offered but not required (SELECTIVETLS with no
// TLS-only export). Both TLS and plaintext clients work; STARTTLS resets
// earlier negotiation; a second STARTTLS is invalid.
func TestTLSOptional(t *testing.T) {
	pki := testutil.NewPKI(t, "optional")
	e := newEnv(t, withTLS(pki.ServerConfig(false), false))

	c := e.dial(nbdtest.Options{TLSConfig: pki.ClientConfig(false), StructuredReplies: true, MetaContexts: []string{nbdtest.ContextBaseAllocation}})
	if _, ok := c.Conn().(*tls.Conn); !ok {
		t.Fatal("client connection is not TLS")
	}
	roundTrip(t, c, 1)
	if _, err := c.BlockStatus(0, 1<<20, 0); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, e.dial(nbdtest.Options{}), 2)

	// STRUCTURED_REPLY before STARTTLS must be forgotten: after GO the
	// server must use simple replies (the client fails a structured one
	// with ErrProtocol).
	h := e.handshake()
	if err := h.StructuredReply(); err != nil {
		t.Fatal(err)
	}
	if err := h.StartTLS(context.Background(), pki.ClientConfig(false)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Option(nbdtest.OptStartTLS, nil); !errors.Is(err, nbdtest.RepErrInvalid) {
		t.Fatalf("second STARTTLS: %v, want NBD_REP_ERR_INVALID", err)
	}
	info, err := h.Go("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Has(nbdtest.TFlagSendDF) {
		t.Errorf("SEND_DF advertised though structured replies were reset by STARTTLS")
	}
	cl, err := h.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if cl.Structured() {
		t.Fatal("client thinks structured replies survive STARTTLS")
	}
	roundTrip(t, cl, 3)

	// Meta contexts chosen before STARTTLS are forgotten too.
	h = e.handshake()
	if err := h.StructuredReply(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.SetMetaContext("", nbdtest.ContextBaseAllocation); err != nil {
		t.Fatal(err)
	}
	if err := h.StartTLS(context.Background(), pki.ClientConfig(false)); err != nil {
		t.Fatal(err)
	}
	if err := h.StructuredReply(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Go("", nil); err != nil {
		t.Fatal(err)
	}
	if cl, err = h.Client(); err != nil {
		t.Fatal(err)
	}
	runErrCases(t, cl, []errCase{{"BLOCK_STATUS with contexts from before STARTTLS",
		nbdtest.Request{Type: nbdtest.CmdBlockStatus, Length: 4096}, []nbdtest.Errno{nbdtest.EINVAL}}})
	cl.Close()

	// STARTTLS with data is invalid and leaves the session plaintext.
	h = e.handshake()
	if _, err := h.Option(nbdtest.OptStartTLS, []byte{0}); !errors.Is(err, nbdtest.RepErrInvalid) {
		t.Fatalf("STARTTLS with data: %v, want NBD_REP_ERR_INVALID", err)
	}
	if _, err := h.Go("", nil); err != nil {
		t.Fatal(err)
	}
}

// TestTLSRequired: FORCEDTLS refuses every option but STARTTLS and ABORT
// with ERR_TLS_REQD, and EXPORT_NAME in plaintext ends the connection.
func TestTLSRequired(t *testing.T) {
	pki := testutil.NewPKI(t, "required")
	e := newEnv(t, withTLS(pki.ServerConfig(false), true))
	h := e.handshake()
	for _, opt := range []struct {
		code uint32
		data []byte
	}{
		{nbdtest.OptList, nil},
		{nbdtest.OptInfo, nbdtest.InfoPayload("", nil)},
		{nbdtest.OptGo, nbdtest.InfoPayload("", nil)},
		{nbdtest.OptStructuredReply, nil},
	} {
		if _, err := h.Option(opt.code, opt.data); !errors.Is(err, nbdtest.RepErrTLSReqd) {
			t.Errorf("plaintext %s: %v, want NBD_REP_ERR_TLS_REQD", nbdtest.OptName(opt.code), err)
		}
	}
	if err := h.StartTLS(context.Background(), pki.ClientConfig(false)); err != nil {
		t.Fatal(err)
	}
	if list, err := h.List(); err != nil || len(list) != 1 {
		t.Fatalf("LIST over TLS: %v %v", list, err)
	}
	if _, err := h.Go("", nil); err != nil {
		t.Fatal(err)
	}
	c, err := h.Client()
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, 4)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	h = e.handshake()
	if _, err := h.ExportName(""); err == nil {
		t.Fatal("plaintext EXPORT_NAME succeeded under RequireTLS")
	}
	if err := h.ExpectClosed(closeWait); err != nil {
		t.Fatal(err)
	}
	h = e.handshake()
	if err := h.Abort(); err != nil {
		t.Fatalf("ABORT under RequireTLS: %v", err)
	}
	// A Dial without TLS fails cleanly.
	if _, err := nbdtest.Dial(context.Background(), e.Network, e.Addr, nbdtest.Options{}); !errors.Is(err, nbdtest.RepErrTLSReqd) {
		t.Fatalf("plaintext dial: %v", err)
	}
}

// TestTLSClientCert: with RequireAndVerifyClientCert, only a client with a
// certificate from the right CA gets through; failures do not hurt the
// server.
func TestTLSClientCert(t *testing.T) {
	pki := testutil.NewPKI(t, "mtls")
	other := testutil.NewPKI(t, "other")
	e := newEnv(t, withTLS(pki.ServerConfig(true), true))

	c := e.dial(nbdtest.Options{TLSConfig: pki.ClientConfig(true)})
	roundTrip(t, c, 5)

	foreign := pki.ClientConfig(false)
	// GetClientCertificate sends the foreign certificate even though it
	// does not match the CAs the server asks for.
	foreign.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &other.Client, nil }
	untrusting := other.ClientConfig(true)
	for name, cfg := range map[string]*tls.Config{
		"no client cert":      pki.ClientConfig(false),
		"foreign client cert": foreign,
		"untrusted server":    untrusting,
	} {
		// With TLS 1.3 the client may finish its handshake before the
		// server rejects the certificate; the failure then shows at GO.
		cl, err := nbdtest.Dial(context.Background(), e.Network, e.Addr, nbdtest.Options{TLSConfig: cfg})
		if err == nil {
			cl.Close()
			t.Errorf("%s: connection accepted", name)
			continue
		}
		t.Logf("%s: refused: %v", name, err)
	}
	roundTrip(t, c, 6)
	ok := e.dial(nbdtest.Options{TLSConfig: pki.ClientConfig(true), StructuredReplies: true})
	roundTrip(t, ok, 7)
}
