package cluster

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// hclogAdapter lets hashicorp/raft log through our slog.Logger so that every
// line of the process has one format and the same stable keys.
type hclogAdapter struct {
	l    *slog.Logger
	name string
	args []any
	// refusals takes raft's errors caused by a peer that refused us (ErrAuth:
	// another key or name, or TLS against an old node): raft repeats them
	// on every heartbeat and retry.
	refusals *peerLog
}

func newHCLog(l *slog.Logger, name string) hclog.Logger {
	refusals := newPeerLog(l.With("component", name), peerLogInterval)
	refusals.byAddr = true
	return &hclogAdapter{l: l, name: name, refusals: refusals}
}

func hclogToSlog(level hclog.Level) slog.Level {
	switch {
	case level <= hclog.Debug:
		return slog.LevelDebug
	case level == hclog.Info:
		return slog.LevelInfo
	case level == hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level >= hclog.Warn {
		if peer, ok := authRefusal(args); ok {
			a.refusals.warn(peer, msg, append(append([]any{}, a.args...), args...)...)
			return
		}
	}
	lvl := hclogToSlog(level)
	if !a.l.Enabled(context.Background(), lvl) {
		return
	}
	all := make([]any, 0, len(a.args)+len(args)+2)
	all = append(all, "component", a.name)
	all = append(all, a.args...)
	all = append(all, args...)
	a.l.Log(context.Background(), lvl, msg, all...)
}

// authRefusal reports whether raft's log arguments carry an error wrapping
// ErrAuth, and the peer's address if they name one.
func authRefusal(args []any) (string, bool) {
	refused := false
	peer := ""
	for i := 0; i+1 < len(args); i += 2 {
		switch v := args[i+1].(type) {
		case error:
			refused = refused || errors.Is(v, ErrAuth)
		case raft.Server:
			peer = string(v.Address)
		case raft.ServerAddress:
			peer = string(v)
		}
	}
	return peer, refused
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l slog.Level) bool { return a.l.Enabled(context.Background(), l) }
func (a *hclogAdapter) IsTrace() bool             { return false }
func (a *hclogAdapter) IsDebug() bool             { return a.enabled(slog.LevelDebug) }
func (a *hclogAdapter) IsInfo() bool              { return a.enabled(slog.LevelInfo) }
func (a *hclogAdapter) IsWarn() bool              { return a.enabled(slog.LevelWarn) }
func (a *hclogAdapter) IsError() bool             { return a.enabled(slog.LevelError) }
func (a *hclogAdapter) ImpliedArgs() []any        { return a.args }
func (a *hclogAdapter) Name() string              { return a.name }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{l: a.l, name: a.name, args: append(append([]any{}, a.args...), args...), refusals: a.refusals}
}

func (a *hclogAdapter) Named(name string) hclog.Logger {
	n := name
	if a.name != "" {
		n = a.name + "." + name
	}
	return &hclogAdapter{l: a.l, name: n, args: a.args, refusals: a.refusals}
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{l: a.l, name: name, args: a.args, refusals: a.refusals}
}

// SetLevel is ignored: the level is the process-wide slog level.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

func (a *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case a.IsDebug():
		return hclog.Debug
	case a.IsInfo():
		return hclog.Info
	case a.IsWarn():
		return hclog.Warn
	default:
		return hclog.Error
	}
}

func (a *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(nil), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &stdLogWriter{l: a.l, component: a.name}
}

// stdLogWriter turns the "[LEVEL] component: message" lines that memberlist
// (and raft's standard logger) print into slog records at the right level.
type stdLogWriter struct {
	l         *slog.Logger
	component string
	// refusals, when set, takes the lines about peers with another key or
	// cluster name (gossipRefusals).
	refusals *peerLog
}

func newStdLogger(l *slog.Logger, component string) *log.Logger {
	return log.New(&stdLogWriter{l: l, component: component}, "", 0)
}

// newGossipLogger is memberlist's logger: like newStdLogger, but refusals of
// peers with another key or name are rate-limited WARNs naming the peer.
func newGossipLogger(l *slog.Logger) *log.Logger {
	return log.New(&stdLogWriter{l: l, component: "memberlist",
		refusals: newPeerLog(l.With("component", "memberlist"), peerLogInterval)}, "", 0)
}

func (w *stdLogWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimSpace(p))
	level := slog.LevelInfo
	for prefix, lvl := range map[string]slog.Level{
		"[TRACE]": slog.LevelDebug - 4, "[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo,
		"[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError,
	} {
		if strings.HasPrefix(msg, prefix) {
			level = lvl
			msg = strings.TrimSpace(strings.TrimPrefix(msg, prefix))
			break
		}
	}
	if c, rest, ok := strings.Cut(msg, ": "); ok && !strings.Contains(c, " ") {
		msg = rest
	}
	if w.refusals != nil {
		lower := strings.ToLower(msg)
		for _, s := range gossipRefusals {
			if strings.Contains(lower, s) {
				w.refusals.warn(gossipFrom(msg), "refused gossip from a node with another --cluster-key or --cluster-name", "error", msg)
				return len(p), nil
			}
		}
	}
	w.l.Log(context.Background(), level, msg, "component", w.component)
	return len(p), nil
}

// peerLogInterval is how often at most a refused peer is logged, per address.
const peerLogInterval = time.Minute

// peerLog logs refusals of peers (another cluster key or name, a plaintext
// or foreign-CA connection) at WARN, at most once per interval per peer
// host, with how many were suppressed since. A node with another key retries
// every second; logging each attempt as an ERROR buried everything else and
// alarmed for what is a misconfigured peer, not a fault of this node.
type peerLog struct {
	logger *slog.Logger
	every  time.Duration
	now    func() time.Time
	// byAddr keys peers by their whole address rather than the host: for
	// addresses we dial (Raft's), whose ports are stable, unlike the source
	// ports of connections we accept.
	byAddr bool

	mu   sync.Mutex
	last map[string]*peerLogEntry
}

type peerLogEntry struct {
	at         time.Time
	suppressed int
}

// maxPeerLogEntries bounds the table: a scan from many addresses must not
// grow it without limit.
const maxPeerLogEntries = 1024

func newPeerLog(l *slog.Logger, every time.Duration) *peerLog {
	return &peerLog{logger: l, every: every, now: time.Now, last: map[string]*peerLogEntry{}}
}

// warn logs msg for the peer at addr (host:port) unless its host was logged
// within the interval.
func (p *peerLog) warn(addr, msg string, args ...any) {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil && !p.byAddr {
		host = h
	}
	now := p.now()
	p.mu.Lock()
	e := p.last[host]
	if e != nil && now.Sub(e.at) < p.every {
		e.suppressed++
		p.mu.Unlock()
		return
	}
	suppressed := 0
	if e != nil {
		suppressed = e.suppressed
	}
	if len(p.last) >= maxPeerLogEntries {
		for k, v := range p.last {
			if now.Sub(v.at) >= p.every {
				delete(p.last, k)
			}
		}
		if len(p.last) >= maxPeerLogEntries {
			p.mu.Unlock()
			return // a flood from many hosts: stay quiet rather than grow
		}
	}
	p.last[host] = &peerLogEntry{at: now}
	p.mu.Unlock()
	all := append([]any{"remote", addr}, args...)
	if suppressed > 0 {
		all = append(all, "suppressed", suppressed, "suppressed_over", p.every.String())
	}
	p.logger.Warn(msg, all...)
}

// gossipRefusals are memberlist's messages about a peer it could not read
// because it has another cluster key or cluster name (label). memberlist
// logs each at ERROR; they are routed through a peerLog instead.
// Lower case: they are matched against the lowered message.
var gossipRefusals = []string{
	"no installed keys could decrypt",
	"decrypt packet failed",
	"unacceptable label",
	"failed to receive and remove the stream label header",
	"message is not encrypted",
	"remote state is not encrypted",
}

// gossipFrom extracts the peer address memberlist appends as "from=addr".
func gossipFrom(msg string) string {
	i := strings.LastIndex(msg, "from=")
	if i < 0 {
		return ""
	}
	rest := msg[i+len("from="):]
	if j := strings.IndexAny(rest, " \t"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}
