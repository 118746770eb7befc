package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// A full disk must not turn into a flapping cluster. Left to itself, a
// leader whose log store fails a write (ENOSPC) answers that write with a raw
// error, steps down, wins the next election (its log is as long as anyone's),
// fails the election's no-op entry and steps down again, once a heartbeat
// timeout: about a hundred elections a minute on one node, measured.
//
// The guard keeps a free-space reserve (--disk-reserve) on the data dir's
// file system. Below it, this node refuses every write of its own (API,
// poller, results) with ErrDiskFull before Raft sees it, and a leader hands
// leadership to a follower. The reserve is what Raft's own small writes
// (terms, votes, an election's no-op) need to go on working, so the cluster
// stays calm while the operator frees space. If the disk fills at once past
// the reserve (another process), the log store's ENOSPC trips the guard and
// becomes ErrDiskFull too, and the stable store delays this node's next term
// change while the disk stays full (doubling from electionBackoffMin to
// electionBackoffMax, and ending as soon as space is back), so it stands in
// an election a few times a minute, not every second.

// ErrDiskFull: this node's data dir is short of space; nothing was written.
var ErrDiskFull = errors.New("the node's disk is nearly full")

// DefaultDiskReserve is the free space kept on the data dir's file system.
const DefaultDiskReserve = 64 << 20

// diskCheckInterval is how often the guard reads the free space.
const diskCheckInterval = time.Second

const (
	electionBackoffMin = 2 * time.Second
	electionBackoffMax = 30 * time.Second
)

// diskGuard watches the free space of one directory's file system.
type diskGuard struct {
	dir     string
	reserve uint64
	logger  *slog.Logger
	// free reads the bytes available to this process; statfs in the agent.
	free func(dir string) (uint64, error)
	// onLow runs once each time the disk goes short.
	onLow func()

	short     atomic.Bool
	freeBytes atomic.Uint64

	mu      sync.Mutex
	cleared chan struct{} // closed and replaced when the disk is fine again
	backoff time.Duration
}

func newDiskGuard(dir string, reserve uint64, logger *slog.Logger) *diskGuard {
	return &diskGuard{dir: dir, reserve: reserve, logger: logger, free: freeSpace, cleared: make(chan struct{}), backoff: electionBackoffMin}
}

// check reads the free space and updates the state.
func (g *diskGuard) check() {
	free, err := g.free(g.dir)
	if err != nil {
		return // unknown: keep the last state (an unsupported platform never trips)
	}
	g.freeBytes.Store(free)
	g.set(free < g.reserve, "")
}

// tripped is called when a write failed for lack of space, whatever the
// last reading said.
func (g *diskGuard) tripped(cause error) {
	g.freeBytes.Store(0)
	g.set(true, cause.Error())
}

func (g *diskGuard) set(short bool, cause string) {
	if g.short.Swap(short) == short {
		return
	}
	if short {
		g.logger.Warn("disk nearly full: refusing writes until space is freed", "data_dir", g.dir,
			"free_bytes", g.freeBytes.Load(), "reserve_bytes", g.reserve, "cause", cause)
		if g.onLow != nil {
			g.onLow()
		}
		return
	}
	g.logger.Info("disk space is back: taking writes again", "data_dir", g.dir, "free_bytes", g.freeBytes.Load())
	g.mu.Lock()
	close(g.cleared)
	g.cleared = make(chan struct{})
	g.backoff = electionBackoffMin
	g.mu.Unlock()
}

// err is nil while there is room, else ErrDiskFull with the figures.
func (g *diskGuard) err() error {
	if !g.short.Load() {
		return nil
	}
	return fmt.Errorf("%w: %d MiB free in %s, below the reserve of %d MiB (--disk-reserve); free space on this node",
		ErrDiskFull, g.freeBytes.Load()>>20, g.dir, g.reserve>>20)
}

// waitBeforeTerm delays a term change while the disk is short: the next
// back-off step, or until space is back or stop closes.
func (g *diskGuard) waitBeforeTerm(stop <-chan struct{}) {
	if !g.short.Load() {
		return
	}
	g.mu.Lock()
	d, cleared := g.backoff, g.cleared
	g.backoff = min(2*g.backoff, electionBackoffMax)
	g.mu.Unlock()
	g.logger.Warn("disk full: delaying this node's next election", "delay", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-cleared:
	case <-stop:
	}
}

// run checks the disk every diskCheckInterval until stop closes.
func (g *diskGuard) run(stop <-chan struct{}) {
	t := time.NewTicker(diskCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			g.check()
		}
	}
}

// isNoSpace tells a write that failed for lack of space. raft's LogCache
// quotes the store's error into a new one, so the text is checked too.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), syscall.ENOSPC.Error())
}

// guardedLogs is the log store Raft writes through: a write that fails for
// lack of space trips the guard and answers ErrDiskFull, so the caller of
// Apply hears 503 disk_full rather than a raw I/O error.
type guardedLogs struct {
	raft.LogStore
	g *diskGuard
}

func (l guardedLogs) StoreLog(log *raft.Log) error {
	return l.StoreLogs([]*raft.Log{log})
}

func (l guardedLogs) StoreLogs(logs []*raft.Log) error {
	err := l.LogStore.StoreLogs(logs)
	if err != nil && isNoSpace(err) {
		l.g.tripped(err)
		return fmt.Errorf("%w: %v", ErrDiskFull, err)
	}
	return err
}

// guardedStable delays term changes while the disk is full (see above), and
// holds a write that failed for lack of space until there is room again:
// hashicorp/raft panics when it cannot save its term or vote, and a node
// that waits is better than one that crashes in a loop.
type guardedStable struct {
	raft.StableStore
	g    *diskGuard
	stop <-chan struct{}
}

// keyCurrentTerm is the key under which hashicorp/raft keeps its term.
const keyCurrentTerm = "CurrentTerm"

func (s guardedStable) SetUint64(key []byte, val uint64) error {
	if string(key) == keyCurrentTerm {
		s.g.waitBeforeTerm(s.stop)
	}
	return s.retry(func() error { return s.StableStore.SetUint64(key, val) })
}

func (s guardedStable) Set(key, val []byte) error {
	return s.retry(func() error { return s.StableStore.Set(key, val) })
}

func (s guardedStable) retry(write func() error) error {
	for {
		err := write()
		if err == nil || !isNoSpace(err) {
			return err
		}
		s.g.tripped(err)
		s.g.waitBeforeTerm(s.stop)
		select {
		case <-s.stop:
			return err
		default:
		}
	}
}

// handOffMinInterval spaces out the leadership hand-offs of a node whose
// free space hovers around the reserve.
const handOffMinInterval = 30 * time.Second

// handOffLeadership moves leadership to a follower when this leader's disk
// goes short: the cluster can go on writing through a node that has room.
// With no other voter it stays leader and refuses writes until space is back.
func (c *Cluster) handOffLeadership() {
	if c.raft == nil || c.raft.State() != raft.Leader || c.otherVoters() == 0 {
		return
	}
	now := time.Now()
	if last := c.lastHandOff.Load(); last != 0 && now.Sub(time.Unix(0, last)) < handOffMinInterval {
		return
	}
	c.lastHandOff.Store(now.UnixNano())
	go func() {
		c.logger.Warn("disk nearly full: transferring leadership to a follower")
		if err := c.raft.LeadershipTransfer().Error(); err != nil {
			c.logger.Warn("leadership transfer for a short disk failed", "error", err)
		}
	}()
}
