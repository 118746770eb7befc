package fsm

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-memdb"
)

// The change feed is this node's view of what Apply writes, for live
// dashboards and scripts (GET /v1/stream). It is local and not replicated:
// every node feeds its own subscribers from its own applies, so a stream works
// on any node. Memdb tracks a transaction's changes only while someone
// listens, so a node without subscribers pays one atomic load per batch.
//
// A subscriber never slows Apply down: a batch is offered to its buffered
// channel without waiting, and a subscriber whose buffer is full is dropped
// with Reset set; so is every subscriber when Restore replaces the state.
// A dropped subscriber must re-read what it shows (its channel is closed).

// Change operations.
const (
	OpCreated = "created"
	OpUpdated = "updated"
	OpDeleted = "deleted"
)

// MaxSubscribers bounds the feed's subscribers on one node.
const MaxSubscribers = 256

// ErrTooManySubscribers is returned by Subscribe beyond MaxSubscribers.
var ErrTooManySubscribers = errors.New("too many change-feed subscribers on this node")

// feedTables are the tables the feed reports: the objects a dashboard shows.
// Tokens, projects and attempts (seen through their delivery) are left out.
var feedTables = map[string]bool{
	TableJobs: true, TableOccurrences: true, TableDeliveries: true, TableEndpoints: true, TableEvents: true,
}

// Change is one record written by an applied batch. Object is the record
// after the change (before it, for a deletion) and must not be modified.
type Change struct {
	Table   string
	Op      string
	ID      string
	Project string
	Object  any
}

// ChangeBatch is what one applied batch of logs changed; Index is the batch's
// last Raft index.
type ChangeBatch struct {
	Index   uint64
	Changes []Change
}

// Subscription receives change batches on C until it is closed, by Close or
// by the feed (then Reset reports why the subscriber must re-read).
type Subscription struct {
	C     <-chan ChangeBatch
	c     chan ChangeBatch
	feed  *feed
	reset atomic.Pointer[string]
}

// Reset returns why the feed dropped the subscription ("" if it did not).
func (s *Subscription) Reset() string {
	if r := s.reset.Load(); r != nil {
		return *r
	}
	return ""
}

// Close ends the subscription; safe to call more than once.
func (s *Subscription) Close() { s.feed.drop(s, "") }

type feed struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
	n    atomic.Int32
}

// Subscribe starts a subscription whose channel holds up to buffer batches.
func (f *FSM) Subscribe(buffer int) (*Subscription, error) {
	f.feed.mu.Lock()
	defer f.feed.mu.Unlock()
	if len(f.feed.subs) >= MaxSubscribers {
		return nil, ErrTooManySubscribers
	}
	if f.feed.subs == nil {
		f.feed.subs = map[*Subscription]struct{}{}
	}
	c := make(chan ChangeBatch, max(buffer, 1))
	s := &Subscription{C: c, c: c, feed: &f.feed}
	f.feed.subs[s] = struct{}{}
	f.feed.n.Store(int32(len(f.feed.subs)))
	return s, nil
}

func (fd *feed) active() bool { return fd.n.Load() > 0 }

func (fd *feed) drop(s *Subscription, why string) {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	fd.dropLocked(s, why)
}

func (fd *feed) dropLocked(s *Subscription, why string) {
	if _, ok := fd.subs[s]; !ok {
		return
	}
	delete(fd.subs, s)
	fd.n.Store(int32(len(fd.subs)))
	if why != "" {
		s.reset.Store(&why)
	}
	close(s.c)
}

// opUnarchived marks, in the applier's archive changes, a delivery moved
// back from the archive into memdb; it is never published.
const opUnarchived = "unarchived"

// publish offers the feed tables' changes of a committed transaction. arch
// lists the deliveries the archive took in (OpUpdated) or gave back
// (opUnarchived) in it: memdb sees a delivery leave for the archive as a
// deletion and one coming back as a creation, which are neither to a
// subscriber.
func (fd *feed) publish(index uint64, changes memdb.Changes, arch []Change) {
	moved := make(map[string]*Change, len(arch))
	for i := range arch {
		moved[arch[i].ID] = &arch[i]
	}
	var out []Change
	for _, ch := range changes {
		if !feedTables[ch.Table] || (ch.Before == nil && ch.After == nil) {
			continue // created and deleted within the batch: nothing to show
		}
		c := Change{Table: ch.Table, Op: OpUpdated, Object: ch.After}
		switch {
		case ch.Created():
			c.Op = OpCreated
		case ch.Deleted():
			c.Op, c.Object = OpDeleted, ch.Before
		}
		r := c.Object.(record)
		c.ID, c.Project = r.key(), r.projectName()
		if m := moved[c.ID]; m != nil && ch.Table == TableDeliveries {
			switch {
			case c.Op == OpDeleted && m.Op == OpUpdated: // archived
				c.Op, c.Object = OpUpdated, m.Object
			case c.Op == OpCreated && m.Op == opUnarchived: // back in memdb, perhaps changed
				c.Op = OpUpdated
			}
			delete(moved, c.ID)
		}
		out = append(out, c)
	}
	for _, m := range arch {
		if moved[m.ID] == nil {
			continue
		}
		c := m
		if c.Op == OpUpdated {
			c.Op = OpCreated // created and archived within the batch
		} else {
			c.Op = OpDeleted // taken back and deleted within the batch
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return
	}
	b := ChangeBatch{Index: index, Changes: out}
	fd.mu.Lock()
	defer fd.mu.Unlock()
	for s := range fd.subs {
		select {
		case s.c <- b:
		default:
			fd.dropLocked(s, "the subscriber fell behind")
		}
	}
}

// resetAll drops every subscriber (the state was replaced).
func (fd *feed) resetAll(why string) {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	for s := range fd.subs {
		fd.dropLocked(s, why)
	}
}
