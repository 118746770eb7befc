package cluster

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// The Raft port carries two kinds of internal streams: Raft's own RPCs and the
// forwarding RPCs (writes, read barriers, operator calls) that followers send
// to the leader. Every connection is mutual TLS 1.3 with certificates of the
// cluster's derived CA (tls.go), which gives confidentiality and integrity;
// inside it a mutual challenge-response proves both ends hold the cluster key
// and share the cluster name, so a process of another cluster (or anyone
// else) can neither inject Raft traffic nor forward writes. The key itself
// never crosses the wire. (Versions before TLS ran the challenge-response in
// plaintext; --tls-mode upgrade still accepts and dials that.)
//
//	client → server  "CHM1" purpose(1) clientNonce(16) nameLen(1) name
//	server → client  serverNonce(16) HMAC(k, "s"|cN|sN|name)
//	client → server  HMAC(k, "c"|cN|sN|name|purpose)
const (
	handshakeMagic   = "CHM1"
	purposeRaft      = byte('R')
	purposeForward   = byte('F')
	nonceLen         = 16
	handshakeTimeout = 5 * time.Second
)

// ErrAuth means the peer does not share our cluster key or cluster name.
var ErrAuth = errors.New("cluster authentication failed: the peer has another --cluster-key or --cluster-name")

// authKey derives the key used for the transport handshake from the operator's
// cluster key. It is separate from the gossip encryption key so that one
// leaking does not give the other.
func authKey(clusterKey string) []byte {
	return deriveKey(clusterKey, "chime-internal-auth-v1")
}

func handshakeMAC(key []byte, role byte, cn, sn []byte, name string, purpose byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte{role})
	m.Write(cn)
	m.Write(sn)
	m.Write([]byte(name))
	if role == 'c' {
		m.Write([]byte{purpose})
	}
	return m.Sum(nil)
}

// muxTransport listens on the Raft address, authenticates each incoming
// connection and hands it to Raft or to the forwarding server by its purpose.
type muxTransport struct {
	ln        net.Listener
	advertise net.Addr
	key       []byte
	name      string
	logger    *slog.Logger

	mode TLSMode
	// legacy plays a node of the version before TLS (plaintext only); set by
	// tests of the rolling upgrade, never by configuration.
	legacy               bool
	serverTLS, clientTLS *tls.Config
	// refusals logs refused peers at most once a minute per host.
	refusals *peerLog

	plainMu sync.Mutex
	// plainPeers (upgrade mode) are the addresses that closed the
	// connection on our TLS hello, as a version before TLS does, and until
	// when to dial them in plaintext first.
	plainPeers map[string]time.Time

	raftCh chan net.Conn
	fwdCh  chan net.Conn

	closeOnce sync.Once
	closed    chan struct{}
}

type transportConfig struct {
	Bind, Advertise string
	ClusterKey      string
	ClusterName     string
	NodeID          string
	TLSFiles        TLSFiles
	Mode            TLSMode
	Legacy          bool
	Logger          *slog.Logger
}

// plainPeerTTL is how long a peer that refused our TLS hello is dialled in
// plaintext first before TLS is tried again (it may have been upgraded).
const plainPeerTTL = 30 * time.Second

// tlsRecordHandshake is the first byte of every TLS ClientHello; the
// plaintext handshake starts with handshakeMagic ("C").
const tlsRecordHandshake = 0x16

var (
	// errPeerClosed: the peer closed the connection on our handshake.
	errPeerClosed = errors.New("the peer closed the connection")
	// errClosedOnTLSHello: the peer closed the connection on our TLS hello,
	// as a version without TLS does.
	errClosedOnTLSHello = errors.New("the peer closed the connection on the TLS hello")
	// errPlaintextRefused: a plaintext handshake reached a node in TLS
	// mode on.
	errPlaintextRefused = errors.New("plaintext connection refused (this node has --tls-mode on): the peer runs a version without TLS, or is not a chime node")
)

func newMuxTransport(cfg transportConfig) (*muxTransport, error) {
	mode := cfg.Mode
	if mode == "" {
		mode = TLSOn
	}
	var serverTLS, clientTLS *tls.Config
	if !cfg.Legacy {
		var err error
		if serverTLS, clientTLS, err = transportTLS(cfg.ClusterKey, cfg.ClusterName, cfg.NodeID, cfg.TLSFiles); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("listen on raft address %s: %w", cfg.Bind, err)
	}
	var adv net.Addr = ln.Addr()
	if cfg.Advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("advertise raft address %q: %w", cfg.Advertise, err)
		}
		adv = a
	} else if tcp, ok := ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft address %s binds every interface: set --advertise-raft-addr to an address the other nodes can reach", cfg.Bind)
	}
	t := &muxTransport{
		ln: ln, advertise: adv, key: authKey(cfg.ClusterKey), name: cfg.ClusterName, logger: cfg.Logger,
		mode: mode, legacy: cfg.Legacy, serverTLS: serverTLS, clientTLS: clientTLS,
		refusals:   newPeerLog(cfg.Logger, peerLogInterval),
		plainPeers: map[string]time.Time{},
		raftCh:     make(chan net.Conn), fwdCh: make(chan net.Conn), closed: make(chan struct{}),
	}
	go t.acceptLoop()
	return t, nil
}

func (t *muxTransport) acceptLoop() {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			t.logger.Error("raft listener failed", "error", err)
			return
		}
		go t.serverHandshake(c)
	}
}

func (t *muxTransport) serverHandshake(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	conn, purpose, err := t.acceptConn(c)
	if err != nil {
		t.refusals.warn(c.RemoteAddr().String(), "refused internal connection", "error", err)
		c.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	ch := t.raftCh
	if purpose == purposeForward {
		ch = t.fwdCh
	}
	select {
	case ch <- conn:
	case <-t.closed:
		conn.Close()
	}
}

// acceptConn runs the server side of the handshake: TLS (sniffed from the
// first byte) unless this node plays the version before TLS, then the HMAC
// handshake inside it.
func (t *muxTransport) acceptConn(c net.Conn) (net.Conn, byte, error) {
	if t.legacy {
		p, err := t.verifyClient(c)
		return c, p, err
	}
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil {
		return nil, 0, fmt.Errorf("read hello: %w", err)
	}
	pc := &peekedConn{Conn: c, r: br}
	var conn net.Conn = pc
	switch {
	case first[0] == tlsRecordHandshake:
		tc := tls.Server(pc, t.serverTLS)
		if err := tc.Handshake(); err != nil {
			return nil, 0, fmt.Errorf("%w: TLS: %v", ErrAuth, err)
		}
		conn = tc
	case t.mode != TLSUpgrade:
		return nil, 0, errPlaintextRefused
	}
	p, err := t.verifyClient(conn)
	return conn, p, err
}

// peekedConn is a connection whose first bytes were read ahead to tell TLS
// from plaintext.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (t *muxTransport) verifyClient(c net.Conn) (byte, error) {
	hdr := make([]byte, len(handshakeMagic)+1+nonceLen+1)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return 0, fmt.Errorf("read hello: %w", err)
	}
	if string(hdr[:4]) != handshakeMagic {
		return 0, errors.New("not a chime internal connection")
	}
	purpose := hdr[4]
	if purpose != purposeRaft && purpose != purposeForward {
		return 0, fmt.Errorf("unknown stream purpose %q", purpose)
	}
	cn := hdr[5 : 5+nonceLen]
	name := make([]byte, hdr[len(hdr)-1])
	if _, err := io.ReadFull(c, name); err != nil {
		return 0, fmt.Errorf("read cluster name: %w", err)
	}
	if string(name) != t.name {
		return 0, fmt.Errorf("peer belongs to cluster %q, we are %q", name, t.name)
	}
	sn := make([]byte, nonceLen)
	if _, err := rand.Read(sn); err != nil {
		return 0, err
	}
	if _, err := c.Write(append(sn, handshakeMAC(t.key, 's', cn, sn, t.name, 0)...)); err != nil {
		return 0, err
	}
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, got); err != nil {
		return 0, fmt.Errorf("read client proof: %w", err)
	}
	if !hmac.Equal(got, handshakeMAC(t.key, 'c', cn, sn, t.name, purpose)) {
		return 0, ErrAuth
	}
	return purpose, nil
}

// dial opens an authenticated stream of the given purpose to a peer: mutual
// TLS, then the HMAC handshake inside it. In upgrade mode a peer that closes
// the connection on the TLS hello is dialled again in plaintext.
func (t *muxTransport) dial(ctx context.Context, addr string, purpose byte) (net.Conn, error) {
	if t.legacy {
		return t.dialWith(ctx, addr, purpose, false)
	}
	plainFirst := t.mode == TLSUpgrade && t.isPlainPeer(addr)
	if plainFirst {
		c, err := t.dialWith(ctx, addr, purpose, false)
		if err == nil || !errors.Is(err, errPeerClosed) {
			return c, err
		}
		// It closed on our plaintext hello: it was upgraded meanwhile.
		t.setPlainPeer(addr, false)
	}
	c, err := t.dialWith(ctx, addr, purpose, true)
	if err != nil && t.mode == TLSUpgrade && !plainFirst && errors.Is(err, errClosedOnTLSHello) {
		t.logger.Info("peer closed the connection on the TLS hello; speaking plaintext to it (--tls-mode upgrade)", "raft_addr", addr)
		t.setPlainPeer(addr, true)
		return t.dialWith(ctx, addr, purpose, false)
	}
	return c, err
}

func (t *muxTransport) isPlainPeer(addr string) bool {
	t.plainMu.Lock()
	defer t.plainMu.Unlock()
	until, ok := t.plainPeers[addr]
	return ok && time.Now().Before(until)
}

func (t *muxTransport) setPlainPeer(addr string, plain bool) {
	t.plainMu.Lock()
	defer t.plainMu.Unlock()
	if plain {
		t.plainPeers[addr] = time.Now().Add(plainPeerTTL)
	} else {
		delete(t.plainPeers, addr)
	}
}

func (t *muxTransport) dialWith(ctx context.Context, addr string, purpose byte, useTLS bool) (net.Conn, error) {
	d := net.Dialer{}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(handshakeTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = raw.SetDeadline(deadline)
	c := raw
	if useTLS {
		tc := tls.Client(raw, t.clientTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			if peerClosed(err) {
				return nil, fmt.Errorf("connect to %s: %w (it may run a version without TLS: roll it with --tls-mode upgrade first)", addr, errClosedOnTLSHello)
			}
			if tlsRefusal(err) {
				return nil, fmt.Errorf("connect to %s: %w: TLS: %v", addr, ErrAuth, err)
			}
			return nil, fmt.Errorf("connect to %s: TLS: %w", addr, err)
		}
		c = tc
	}
	if err := t.clientHandshake(c, purpose); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// tlsRefusal tells a TLS failure over certificates: theirs not of our CA,
// or ours refused by them (an alert).
func tlsRefusal(err error) bool {
	var uae x509.UnknownAuthorityError
	var cve *tls.CertificateVerificationError
	var alert tls.AlertError
	if errors.As(err, &uae) || errors.As(err, &cve) || errors.As(err, &alert) {
		return true
	}
	// crypto/tls reports an alert from the peer as a net.OpError with this
	// Op (its alert type is unexported).
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// peerClosed tells a connection closed or reset by the peer.
func peerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

func (t *muxTransport) clientHandshake(c net.Conn, purpose byte) error {
	cn := make([]byte, nonceLen)
	if _, err := rand.Read(cn); err != nil {
		return err
	}
	hello := make([]byte, 0, 4+1+nonceLen+1+len(t.name))
	hello = append(hello, handshakeMagic...)
	hello = append(hello, purpose)
	hello = append(hello, cn...)
	hello = append(hello, byte(len(t.name)))
	hello = append(hello, t.name...)
	if _, err := c.Write(hello); err != nil {
		if peerClosed(err) || tlsRefusal(err) {
			return fmt.Errorf("%w (%w: %v)", ErrAuth, errPeerClosed, err)
		}
		return err
	}
	reply := make([]byte, nonceLen+sha256.Size)
	if _, err := io.ReadFull(c, reply); err != nil {
		// The server closes the connection without a word when it refuses
		// us; a TLS server that refused our certificate says so in an alert.
		if peerClosed(err) || tlsRefusal(err) {
			return fmt.Errorf("%w (%w: %v)", ErrAuth, errPeerClosed, err)
		}
		return err
	}
	sn := reply[:nonceLen]
	if !hmac.Equal(reply[nonceLen:], handshakeMAC(t.key, 's', cn, sn, t.name, 0)) {
		return ErrAuth
	}
	_, err := c.Write(handshakeMAC(t.key, 'c', cn, sn, t.name, purpose))
	return err
}

func (t *muxTransport) Close() error {
	var err error
	t.closeOnce.Do(func() {
		close(t.closed)
		err = t.ln.Close()
	})
	return err
}

// raftLayer is the raft.StreamLayer view of the transport.
type raftLayer struct{ t *muxTransport }

func (l raftLayer) Accept() (net.Conn, error) { return l.t.accept(l.t.raftCh, nil) }
func (l raftLayer) Close() error              { return l.t.Close() }
func (l raftLayer) Addr() net.Addr            { return l.t.advertise }
func (l raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.t.dial(ctx, string(addr), purposeRaft)
}

// forwardListener is the net.Listener the internal forwarding HTTP server
// serves on. Closing it stops its Accept (http.Server.Close waits for that)
// but leaves the socket, which the transport owns, to Raft.
type forwardListener struct {
	t      *muxTransport
	once   sync.Once
	closed chan struct{}
}

func newForwardListener(t *muxTransport) *forwardListener {
	return &forwardListener{t: t, closed: make(chan struct{})}
}

func (l *forwardListener) Accept() (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
	}
	return l.t.accept(l.t.fwdCh, l.closed)
}

func (l *forwardListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *forwardListener) Addr() net.Addr { return l.t.advertise }

func (t *muxTransport) accept(ch chan net.Conn, stop <-chan struct{}) (net.Conn, error) {
	select {
	case c := <-ch:
		return c, nil
	case <-t.closed:
		return nil, net.ErrClosed
	case <-stop:
		return nil, net.ErrClosed
	}
}
