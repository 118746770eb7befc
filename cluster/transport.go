package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The Raft port carries two kinds of internal streams: Raft's own RPCs and the
// forwarding RPCs (writes, read barriers, operator calls) that followers send
// to the leader. Every connection starts with a mutual challenge-response
// proving both ends hold the cluster key and share the cluster name, so a
// process of another cluster (or anyone else) can neither inject Raft traffic
// nor forward writes. The key itself never crosses the wire.
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
	m := hmac.New(sha256.New, []byte(clusterKey))
	m.Write([]byte("chime-internal-auth-v1"))
	return m.Sum(nil)
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

	raftCh chan net.Conn
	fwdCh  chan net.Conn

	closeOnce sync.Once
	closed    chan struct{}
}

func newMuxTransport(bind string, advertise string, clusterKey, clusterName string, logger *slog.Logger) (*muxTransport, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen on raft address %s: %w", bind, err)
	}
	var adv net.Addr = ln.Addr()
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("advertise raft address %q: %w", advertise, err)
		}
		adv = a
	} else if tcp, ok := ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft address %s binds every interface: set --advertise-raft-addr to an address the other nodes can reach", bind)
	}
	t := &muxTransport{
		ln: ln, advertise: adv, key: authKey(clusterKey), name: clusterName, logger: logger,
		raftCh: make(chan net.Conn), fwdCh: make(chan net.Conn), closed: make(chan struct{}),
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
	purpose, err := t.verifyClient(c)
	if err != nil {
		t.logger.Warn("refused internal connection", "remote", c.RemoteAddr().String(), "error", err)
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	ch := t.raftCh
	if purpose == purposeForward {
		ch = t.fwdCh
	}
	select {
	case ch <- c:
	case <-t.closed:
		c.Close()
	}
}

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

// dial opens an authenticated stream of the given purpose to a peer.
func (t *muxTransport) dial(ctx context.Context, addr string, purpose byte) (net.Conn, error) {
	d := net.Dialer{}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(handshakeTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetDeadline(deadline)
	if err := t.clientHandshake(c, purpose); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
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
		return err
	}
	reply := make([]byte, nonceLen+sha256.Size)
	if _, err := io.ReadFull(c, reply); err != nil {
		// The server closes the connection without a word when it refuses us.
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return ErrAuth
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
