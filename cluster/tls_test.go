package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA is an operator's CA as `openssl` or `consul tls ca create` would
// make it.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, dir: t.TempDir()}
	writePEM(t, filepath.Join(ca.dir, "ca.pem"), "CERTIFICATE", der)
	return ca
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// files issues a node certificate with the given extended key usages and
// returns the three files.
func (ca *testCA) files(t *testing.T, node string, usages ...x509.ExtKeyUsage) TLSFiles {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: node},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	f := TLSFiles{CAFile: filepath.Join(ca.dir, "ca.pem"), CertFile: filepath.Join(ca.dir, node+".pem"), KeyFile: filepath.Join(ca.dir, node+"-key.pem")}
	writePEM(t, f.CertFile, "CERTIFICATE", der)
	writePEM(t, f.KeyFile, "EC PRIVATE KEY", kder)
	return f
}

var bothAuth = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

// TestOperatorCertificates: with --tls-*-file the Raft port trusts the
// operator's CA only: its certificates connect; a node with the right key
// but the derived certificates, or with a certificate of another CA, is
// refused; incomplete or unusable files are refused at start.
func TestOperatorCertificates(t *testing.T) {
	key := testKey(t)
	ca := newTestCA(t, "ops CA")
	srv := echoServer(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "srv", TLSFiles: ca.files(t, "srv", bothAuth...)})
	addr := srv.advertise.String()

	cli := clientTransport(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "cli", TLSFiles: ca.files(t, "cli", bothAuth...)})
	if conn, err := ping(t, cli, addr); err != nil {
		t.Fatalf("operator certificate: %v", err)
	} else if _, ok := conn.(*tls.Conn); !ok {
		t.Fatalf("stream is %T", conn)
	}
	derived := clientTransport(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "derived"})
	if _, err := ping(t, derived, addr); !errors.Is(err, ErrAuth) {
		t.Fatalf("derived certificate against operator CA: got %v, want ErrAuth", err)
	}
	other := clientTransport(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "other", TLSFiles: newTestCA(t, "other CA").files(t, "other", bothAuth...)})
	if _, err := ping(t, other, addr); !errors.Is(err, ErrAuth) {
		t.Fatalf("certificate of another CA: got %v, want ErrAuth", err)
	}
	// The key still matters: the operator's certificate with another key.
	wrongKey := clientTransport(t, transportConfig{ClusterKey: testKey(t), ClusterName: "prod", NodeID: "wk", TLSFiles: ca.files(t, "wk", bothAuth...)})
	if _, err := ping(t, wrongKey, addr); !errors.Is(err, ErrAuth) {
		t.Fatalf("operator certificate, other key: got %v, want ErrAuth", err)
	}

	serverOnly := ca.files(t, "so", x509.ExtKeyUsageServerAuth)
	otherCA := newTestCA(t, "third CA").files(t, "x", bothAuth...)
	for name, f := range map[string]TLSFiles{
		"only the CA":             {CAFile: serverOnly.CAFile},
		"no key":                  {CAFile: serverOnly.CAFile, CertFile: serverOnly.CertFile},
		"server auth only":        serverOnly,
		"certificate of other CA": {CAFile: serverOnly.CAFile, CertFile: otherCA.CertFile, KeyFile: otherCA.KeyFile},
		"missing file":            {CAFile: "/nonexistent/ca.pem", CertFile: serverOnly.CertFile, KeyFile: serverOnly.KeyFile},
		"key of another cert":     {CAFile: serverOnly.CAFile, CertFile: serverOnly.CertFile, KeyFile: otherCA.KeyFile},
	} {
		if err := f.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := (TLSFiles{CAFile: serverOnly.CAFile}).Validate(); !errors.Is(err, ErrTLSFiles) {
		t.Errorf("incomplete files: got %v, want ErrTLSFiles", err)
	}
}
