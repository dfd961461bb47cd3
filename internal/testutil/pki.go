package testutil

import (
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
	"testing"
	"time"
)

// PKI is a throwaway certificate authority with one server and one client
// certificate, for TLS tests. Both leaves are valid for "localhost" and
// 127.0.0.1 for an hour either side of now, with ECDSA P-256 keys.
type PKI struct {
	// Pool trusts the CA; use it as RootCAs or ClientCAs.
	Pool  *x509.CertPool
	CAPEM []byte
	// Server is for ExtKeyUsageServerAuth (CN "localhost"), Client for
	// ExtKeyUsageClientAuth (CN "client").
	Server, Client              tls.Certificate
	ServerCertPEM, ServerKeyPEM []byte
	ClientCertPEM, ClientKeyPEM []byte
}

// NewPKI makes a new CA named name (its CN is name + " test CA") and issues
// the server and client certificates from it. Two PKIs never trust each
// other's certificates.
func NewPKI(tb testing.TB, name string) *PKI {
	tb.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatal(err)
	}
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage) (tls.Certificate, []byte, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			DNSNames:     []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			tb.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			tb.Fatal(err)
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			tb.Fatal(err)
		}
		return cert, certPEM, keyPEM
	}
	p := &PKI{Pool: x509.NewCertPool(), CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	p.Pool.AddCert(ca)
	p.Server, p.ServerCertPEM, p.ServerKeyPEM = issue(2, "localhost", x509.ExtKeyUsageServerAuth)
	p.Client, p.ClientCertPEM, p.ClientKeyPEM = issue(3, "client", x509.ExtKeyUsageClientAuth)
	return p
}

// ServerConfig returns a server configuration presenting the server
// certificate. With verifyClients it requires a client certificate issued
// by this CA.
func (p *PKI) ServerConfig(verifyClients bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{p.Server}, MinVersion: tls.VersionTLS12}
	if verifyClients {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = p.Pool
	}
	return c
}

// ClientConfig returns a client configuration trusting this CA and
// expecting the server name "localhost". With withCert it presents the
// client certificate.
func (p *PKI) ClientConfig(withCert bool) *tls.Config {
	c := &tls.Config{RootCAs: p.Pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if withCert {
		c.Certificates = []tls.Certificate{p.Client}
	}
	return c
}

// WriteFiles writes the PEM files into dir under the names GnuTLS tools
// (nbdkit, nbdinfo's tls-certificates=DIR) look for: ca-cert.pem,
// server-cert.pem, server-key.pem, client-cert.pem and client-key.pem, keys
// with mode 0600. It returns the paths of the server certificate, the
// server key and the CA certificate.
func (p *PKI) WriteFiles(tb testing.TB, dir string) (cert, key, ca string) {
	tb.Helper()
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{"ca-cert.pem", p.CAPEM, 0o644},
		{"server-cert.pem", p.ServerCertPEM, 0o644},
		{"server-key.pem", p.ServerKeyPEM, 0o600},
		{"client-cert.pem", p.ClientCertPEM, 0o644},
		{"client-key.pem", p.ClientKeyPEM, 0o600},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			tb.Fatal(err)
		}
	}
	return filepath.Join(dir, "server-cert.pem"), filepath.Join(dir, "server-key.pem"), filepath.Join(dir, "ca-cert.pem")
}
