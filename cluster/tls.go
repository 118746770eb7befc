package cluster

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"
)

// Mutual TLS on the Raft port, with a certificate authority derived from the
// cluster key.
//
// Why derived rather than operator-made certificates: the cluster key is
// already the root of trust (it alone lets a node join and decrypt gossip),
// so a separately distributed CA would add a second secret without changing
// who can join. Deriving it keeps TLS on by default with nothing to
// configure, so every deployment (make run, make up, compose, the fault
// suite) runs it.
//
// Every node computes the same CA: an ed25519 key from HMAC(cluster key,
// label|cluster name) and a certificate built from fixed fields (ed25519
// signatures are deterministic). It is never sent; each node holds it only as
// its trust anchor. At every start a node makes a fresh leaf key and
// certificate signed by that CA, and both ends of every connection require
// and verify the other's leaf against it (TLS 1.3 only). Inside TLS the
// original HMAC handshake still runs: it carries the stream purpose and binds
// the cluster name, and it keeps the old protocol's checks exactly.

// TLSMode says what the Raft port speaks.
type TLSMode string

const (
	// TLSOn (the default): mutual TLS only; plaintext peers are refused.
	TLSOn TLSMode = "on"
	// TLSUpgrade accepts TLS and the plaintext handshake of versions before
	// TLS, and dials TLS, falling back to plaintext for a peer that closes
	// the connection on the TLS hello (as those versions do). For the
	// rolling upgrade of a plaintext cluster only: roll every node to
	// upgrade, then each to on.
	TLSUpgrade TLSMode = "upgrade"
)

// ErrTLSMode is a --tls-mode value other than on or upgrade.
var ErrTLSMode = errors.New("--tls-mode: use on (the default) or upgrade (only while rolling a cluster from a version without TLS)")

// ParseTLSMode reads --tls-mode; empty means TLSOn.
func ParseTLSMode(s string) (TLSMode, error) {
	switch TLSMode(s) {
	case "", TLSOn:
		return TLSOn, nil
	case TLSUpgrade:
		return TLSUpgrade, nil
	}
	return "", fmt.Errorf("%w (got %q)", ErrTLSMode, s)
}

// Fixed fields of the derived CA certificate: any change makes a new CA that
// older nodes do not trust, so they are part of the wire protocol.
var (
	caNotBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	caNotAfter  = time.Date(2125, 1, 1, 0, 0, 0, 0, time.UTC)
)

const (
	caLabel = "chime-tls-ca-v1\x00"
	// leafSkew backdates each leaf so a peer whose clock is behind ours
	// still accepts it.
	leafSkew     = time.Hour
	leafLifetime = 10 * 365 * 24 * time.Hour
)

// clusterCA derives the cluster's CA key and certificate from its key and
// name; every node of the cluster gets identical results.
func clusterCA(clusterKey, clusterName string) (*x509.Certificate, ed25519.PrivateKey, error) {
	priv := ed25519.NewKeyFromSeed(deriveKey(clusterKey, caLabel+clusterName))
	pub := priv.Public().(ed25519.PublicKey)
	// Set explicitly: Go's default key id has changed between releases,
	// and nodes built with different Go versions must agree.
	ski := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "chime cluster CA", Organization: []string{"chime cluster " + clusterName}},
		NotBefore:             caNotBefore,
		NotAfter:              caNotAfter,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski[:20],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, nil, fmt.Errorf("derive cluster CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("derive cluster CA: %w", err)
	}
	return cert, priv, nil
}

// nodeCert makes this start's leaf key and certificate, signed by the CA.
func nodeCert(ca *x509.Certificate, caKey ed25519.PrivateKey, nodeID string, now time.Time) (tls.Certificate, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "chime node " + nodeID},
		NotBefore:    now.Add(-leafSkew),
		NotAfter:     now.Add(leafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("make node certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// TLSFiles are operator-made certificates for the Raft port, used instead of
// the derived CA when set (all three or none): PEM files of the CA
// certificate(s) that sign the nodes' certificates, of this node's
// certificate (and any intermediates), and of its private key.
type TLSFiles struct {
	CAFile, CertFile, KeyFile string
}

// ErrTLSFiles: the TLS files are incomplete or unreadable.
var ErrTLSFiles = errors.New("--tls-ca-file, --tls-cert-file and --tls-key-file: give all three or none")

// Validate reads and checks the files (when any is set) without using
// them, so that the agent can refuse bad ones before it writes anything.
func (f TLSFiles) Validate() error {
	if !f.set() {
		return nil
	}
	_, _, err := f.load()
	return err
}

func (f TLSFiles) set() bool { return f.CAFile != "" || f.CertFile != "" || f.KeyFile != "" }

// load reads the files: the trust pool and this node's certificate.
func (f TLSFiles) load() (*x509.CertPool, tls.Certificate, error) {
	if f.CAFile == "" || f.CertFile == "" || f.KeyFile == "" {
		return nil, tls.Certificate{}, ErrTLSFiles
	}
	pem, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("--tls-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, tls.Certificate{}, fmt.Errorf("--tls-ca-file %s: no PEM certificate in it", f.CAFile)
	}
	leaf, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("--tls-cert-file/--tls-key-file: %w", err)
	}
	// Refuse at start what every peer would refuse: a certificate that
	// this CA did not sign, or that cannot serve both ends of a connection.
	inter := x509.NewCertPool()
	for _, der := range leaf.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return nil, tls.Certificate{}, fmt.Errorf("--tls-cert-file %s: not valid for both server and client auth under --tls-ca-file: %w", f.CertFile, err)
		}
	}
	return pool, leaf, nil
}

// transportTLS returns the server and client configurations of the Raft
// port for a node of the cluster with this key and name: the derived CA and
// a fresh leaf, or the operator's files when set.
func transportTLS(clusterKey, clusterName, nodeID string, files TLSFiles) (server, client *tls.Config, err error) {
	var pool *x509.CertPool
	var leaf tls.Certificate
	if files.set() {
		if pool, leaf, err = files.load(); err != nil {
			return nil, nil, err
		}
	} else {
		ca, caKey, err := clusterCA(clusterKey, clusterName)
		if err != nil {
			return nil, nil, err
		}
		if leaf, err = nodeCert(ca, caKey, nodeID, time.Now()); err != nil {
			return nil, nil, err
		}
		pool = x509.NewCertPool()
		pool.AddCert(ca)
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{leaf},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{leaf},
		// Peers are dialled by address and a derived certificate names no
		// address (addresses change, the cluster key does not), so the chain
		// is verified here instead of by host name: trusted means signed by
		// this cluster's CA (as Consul without verify_server_hostname).
		InsecureSkipVerify: true,
		VerifyConnection:   verifyChain(pool, x509.ExtKeyUsageServerAuth),
	}
	return server, client, nil
}

func verifyChain(pool *x509.CertPool, usage x509.ExtKeyUsage) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the peer sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
			Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage},
		})
		return err
	}
}
