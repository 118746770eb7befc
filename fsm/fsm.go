package fsm

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// Result is what Apply returns for a command log (raft hands it back through
// ApplyFuture.Response on the node that submitted the command).
type Result struct {
	Index   uint64    // the Raft index of the log
	Err     error     // a domain *Error, or nil
	Ignored bool      // an unknown ignorable command, skipped
	Results []*Result // for a batch: one per sub-command, in order
}

// store is one generation of state. Restore replaces the whole generation
// and closes the old one's abandonCh.
type store struct {
	db        *memdb.MemDB
	arch      *archive
	abandonCh chan struct{}
}

func newStore(db *memdb.MemDB, arch *archive) *store {
	return &store{db: db, arch: arch, abandonCh: make(chan struct{})}
}

// FSM is Chime's replicated state machine; it implements raft.FSM and
// raft.BatchingFSM.
type FSM struct {
	logger *slog.Logger
	store  atomic.Pointer[store]

	applied  atomic.Uint64
	restores atomic.Uint64 // how many times Restore replaced the state
	mu       sync.Mutex    // guards notify and waiting
	notify   chan struct{} // closed (and replaced) when applied advances, if waiting
	waiting  bool

	feed feed // local change feed (feed.go)
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New returns an FSM with empty state. A nil logger means slog.Default().
func New(logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.Default()
	}
	f := &FSM{logger: logger, notify: make(chan struct{})}
	f.store.Store(newStore(newDB(), newArchive()))
	return f
}

// Apply applies one committed log. It returns a *Result for a command log and
// nil for other log types. It panics on a command it cannot apply safely (an
// unknown type without IgnorableFlag, or a body that does not decode): every
// replica would otherwise continue with a different state.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies logs in one memdb transaction, which is where most of
// the write throughput comes from. Logs that are not commands (configuration,
// no-op) get a nil response but still advance the applied index.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	if len(logs) == 0 {
		return out
	}
	st := f.store.Load()
	txn := st.db.Txn(true)
	track := f.feed.active()
	if track {
		txn.TrackChanges()
	}
	a := applier{txn: txn, arch: st.arch, track: track}
	defer func() {
		txn.Abort() // no-op after Commit; releases the writer lock on panic
		if r := recover(); r != nil {
			// Also in the structured log, which may be all an operator reads.
			f.logger.Error("fsm: refusing to apply log; stopping the node", "raft_index", a.index, "error", r)
			panic(r)
		}
	}()
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		a.index, a.eventIDs = l.Index, nil
		out[i] = a.command(l.Data, false)
	}
	a.flushUsage()
	last := logs[len(logs)-1]
	a.mustInsert(tableMeta, &meta{Key: metaKey, Index: last.Index, Term: last.Term})
	txn.Commit()
	st.arch.maybeCompact() // after the commit: see maybeCompact
	f.setApplied(last.Index)
	if track {
		f.feed.publish(last.Index, txn.Changes(), a.archChanges)
	}
	return out
}

// AppliedIndex returns the index of the last log applied (or restored).
// Raft does not hand barrier and no-op logs of its own to the FSM, so this can
// trail raft's applied index by such entries.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

func (f *FSM) setApplied(index uint64) {
	f.applied.Store(index)
	f.mu.Lock()
	if f.waiting {
		close(f.notify)
		f.notify = make(chan struct{})
		f.waiting = false
	}
	f.mu.Unlock()
}

// WaitForIndex returns nil once AppliedIndex() >= index, or ctx.Err() when
// ctx ends first.
func (f *FSM) WaitForIndex(ctx context.Context, index uint64) error {
	for {
		if f.applied.Load() >= index {
			return nil
		}
		f.mu.Lock()
		// Checked again under the lock: setApplied stores before it locks, so
		// either we see the new index here or it sees waiting and wakes us.
		if f.applied.Load() >= index {
			f.mu.Unlock()
			return nil
		}
		ch := f.notify
		f.waiting = true
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// State returns a consistent read-only view of the current state.
func (f *FSM) State() *State {
	st := f.store.Load()
	// memdb and the archive are captured together under the archive's read
	// lock, which the archive's compaction waits for (see maybeCompact).
	st.arch.mu.RLock()
	defer st.arch.mu.RUnlock()
	return &State{txn: st.db.Txn(false), abandonCh: st.abandonCh, arch: st.arch.viewLocked()}
}

// AbandonCh is closed when Restore replaces the current state: watchers on
// memdb channels of the old state would otherwise never fire. Add it to every
// memdb.WatchSet (State.AbandonCh gives the one of a given view).
func (f *FSM) AbandonCh() <-chan struct{} { return f.store.Load().abandonCh }

// Snapshot captures the current state in O(1); the work happens in Persist.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{state: f.State()}, nil
}

// Restore replaces the state with the snapshot read from rc. The new state is
// built aside and swapped in only when the whole stream was read, so a bad or
// truncated snapshot leaves the current state untouched. rc is not closed
// (raft closes it).
// Restores counts the times Restore has replaced the state since this FSM
// was made: a caller that sees it change while it wrote and read back knows
// its read-back came from another state.
func (f *FSM) Restores() uint64 { return f.restores.Load() }

func (f *FSM) Restore(rc io.ReadCloser) error {
	db, arch, hdr, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	old := f.store.Swap(newStore(db, arch))
	f.restores.Add(1)
	close(old.abandonCh)
	f.setApplied(hdr.Index)
	f.feed.resetAll("the state was restored from a snapshot")
	f.logger.Info("fsm: restored snapshot", "raft_index", hdr.Index, "counts", hdr.Counts)
	return nil
}
