package cluster

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// A full disk (issue 12, item 12). Before, the first write that failed
// answered 500, and the cluster then flapped through about 115 elections a
// minute: hashicorp/raft steps a leader down when it cannot store a log
// entry, every new leader's first act is to store one (its no-op), and the
// poller and dispatchers kept writing. Now every node watches the free space
// under its data dir:
//
//   - below DiskReserve it refuses writes before Raft sees them (503
//     disk_full with Retry-After), including the poller's and dispatchers'
//     on the leader, so nothing makes Raft fail a store; a store that fails
//     with ENOSPC all the same is reported the same way, never as a 500;
//   - /v1/ready says so (the node is not ready: it cannot take a write);
//   - it backs off: a leader hands leadership to another voter, and the node
//     stands for election far less often (its Raft heartbeat and election
//     timeouts are raised diskBackoff times, through raft.ReloadConfig), so
//     a node that cannot write does not keep winning elections it cannot
//     serve, and nodes that all lack space do not flap;
//   - once space is back above the reserve, the timeouts return and writes
//     are taken again, with no restart.

// ErrDiskFull: the node has too little free disk space to store a write.
// Nothing was written.
var ErrDiskFull = errors.New("disk full")

// DiskReserve is the free space under the data dir below which a node takes
// no write: enough for Raft to finish what is in flight and for a snapshot's
// metadata, far less than a snapshot itself (size the disk, see
// docs/operations.md).
const DiskReserve = 64 << 20

// DiskRetryAfter is the Retry-After of a refusal for a full disk: space
// comes back by an operator's hand, not in a second.
const DiskRetryAfter = 30 * time.Second

const (
	diskCheckInterval = time.Second
	diskBackoff       = 10
	maxBackoffTimeout = 30 * time.Second
)

// diskGuard is a node's view of its own disk.
type diskGuard struct {
	full atomic.Bool
	free atomic.Uint64

	mu        sync.Mutex
	backedOff bool
	saved     raft.ReloadableConfig
}

// freeSpace is the free space for unprivileged writes on the data dir's
// filesystem (Config.FreeSpace in tests).
func (c *Cluster) freeSpace() (uint64, error) {
	if c.cfg.FreeSpace != nil {
		return c.cfg.FreeSpace()
	}
	return statfsFree(c.cfg.DataDir)
}

// diskErr is ErrDiskFull, with the figures, while the disk is below the
// reserve; nil otherwise.
func (c *Cluster) diskErr() error {
	if !c.disk.full.Load() {
		return nil
	}
	return fmt.Errorf("%w: %d MiB free under the data dir, writes need %d MiB; free space or grow the disk",
		ErrDiskFull, c.disk.free.Load()>>20, DiskReserve>>20)
}

// watchDisk checks the free space every diskCheckInterval until shutdown.
func (c *Cluster) watchDisk() {
	t := time.NewTicker(diskCheckInterval)
	defer t.Stop()
	for {
		c.checkDisk()
		select {
		case <-c.shutdownCh:
			return
		case <-t.C:
		}
	}
}

func (c *Cluster) checkDisk() {
	free, err := c.freeSpace()
	if err != nil {
		return // unknown: never refuse writes on a guess
	}
	c.disk.free.Store(free)
	full := free < DiskReserve
	if c.disk.full.Swap(full) == full {
		return
	}
	if full {
		c.logger.Error("disk almost full: refusing writes and backing off from leadership until space is freed",
			"free_mib", free>>20, "reserve_mib", DiskReserve>>20, "data_dir", c.cfg.DataDir)
	} else {
		c.logger.Info("disk space is back: taking writes again", "free_mib", free>>20)
	}
	c.backOff(full)
}

// backOff raises (or restores) this node's Raft timeouts, and hands
// leadership away when it leads and has no space.
func (c *Cluster) backOff(on bool) {
	c.disk.mu.Lock()
	defer c.disk.mu.Unlock()
	if on == c.disk.backedOff {
		return
	}
	if on {
		rc := c.raft.ReloadableConfig()
		c.disk.saved = rc
		rc.HeartbeatTimeout = min(rc.HeartbeatTimeout*diskBackoff, max(maxBackoffTimeout, rc.HeartbeatTimeout))
		rc.ElectionTimeout = min(rc.ElectionTimeout*diskBackoff, max(maxBackoffTimeout, rc.ElectionTimeout))
		if err := c.raft.ReloadConfig(rc); err != nil {
			c.logger.Warn("cannot raise the raft timeouts for a full disk", "error", err)
			return
		}
		if c.raft.State() == raft.Leader && c.otherVoters() > 0 {
			c.raft.LeadershipTransfer() // answered by raft; a failure leaves us leader, refusing writes
		}
	} else if err := c.raft.ReloadConfig(c.disk.saved); err != nil {
		c.logger.Warn("cannot restore the raft timeouts", "error", err)
		return
	}
	c.disk.backedOff = on
}

// isNoSpace recognises a store that failed for want of space (bolt returns
// the write's *PathError; some paths only keep the text).
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), syscall.ENOSPC.Error())
}
