package fsm

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
)

// The archive holds succeeded deliveries, each with its attempts, outside
// memdb.
//
// Why: at the budget's rate (1,700 fires a second) every fire leaves a
// delivery and an attempt behind. In memdb each of them costs a radix leaf,
// node and watch channel per index plus the decoded record's strings: about
// 60 heap objects a fire that the garbage collector marks on every cycle,
// and that a snapshot re-encodes one by one. Those costs grew with the
// history kept and showed as seconds-long stalls in the fire benchmark. Here
// a delivery is one pre-encoded blob in pointer-free chunks plus a fixed-size,
// pointer-free entry: the collector never looks inside, and a snapshot writes
// the bytes as they are.
//
// Only succeeded deliveries move here, because nothing changes one any more
// (retry and cancel refuse it); only deletion (an endpoint deleted, retention)
// touches it. Dead letters, cancelled and held deliveries stay in memdb with
// all their indexes, since operators act on them.
//
// Isolation: every entry carries the Raft index that archived it and the one
// that removed it (0: present), so a State at index i sees exactly the
// entries archived at or before i and not removed by then, as memdb's
// snapshots do. The applier only appends past what any view captured and
// stores removals atomically; reclaiming space builds a new generation that
// views taken before it never see.
//
// The archive is per-node state built deterministically from the log, like
// memdb: the same commands give every replica the same entries.

// archiveChunk is the size of one blob chunk; a larger blob gets a chunk of
// its own.
const archiveChunk = 256 << 10

// archiveCompactMin: space is reclaimed once at least this many entries are
// removed and they outnumber the live ones.
const archiveCompactMin = 4096

// archEntry locates and describes one archived delivery. It holds no
// pointers: filters compare hashes of the fields (a match is checked again
// on the decoded record, so a hash collision can never return a wrong row).
type archEntry struct {
	id, project, job, endpoint, event, occurrence uint64
	created, completed                            Millis
	archived                                      uint64 // Raft index that archived it
	removed                                       uint64 // Raft index that removed it, 0 if present; atomic
	chunk, off, n, attempts                       uint32
}

func (e *archEntry) visibleAt(at uint64) bool {
	if e.archived > at {
		return false
	}
	r := atomic.LoadUint64(&e.removed)
	return r == 0 || r > at
}

// archGen is one generation of the archive's storage.
type archGen struct {
	entries []archEntry
	chunks  [][]byte // each full length; only the applier writes, past what views saw
	used    int      // bytes used in the last chunk
	byID    map[uint64]uint32
	clash   map[string]uint32 // ids whose hash an earlier id already holds
	front   int               // entries before it are all removed
	dead    int               // removed entries (applier only)
}

type archive struct {
	seed maphash.Seed
	// hashOf replaces the hash in tests, to make every id collide.
	hashOf func(string) uint64
	mu     sync.RWMutex // guards gen, and the slice headers and maps inside it
	gen    *archGen
}

func newArchive() *archive {
	return &archive{seed: maphash.MakeSeed(), gen: newArchGen(0)}
}

func newArchGen(size int) *archGen {
	return &archGen{byID: make(map[uint64]uint32, size), clash: map[string]uint32{}}
}

func (a *archive) hash(s string) uint64 {
	if s == "" {
		return 0
	}
	if a.hashOf != nil {
		return a.hashOf(s)
	}
	return maphash.String(a.seed, s)
}

// archView is what one State sees of the archive: the entries captured when
// it was made, read at the State's index.
type archView struct {
	a       *archive
	gen     *archGen
	entries []archEntry
	chunks  [][]byte
	front   int
}

func (a *archive) view() archView {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.viewLocked()
}

func (a *archive) viewLocked() archView {
	g := a.gen
	return archView{a: a, gen: g, entries: g.entries, chunks: g.chunks, front: g.front}
}

// blob returns entry i's encoded bytes: uvarint(len) id, uvarint(len)
// delivery, then uvarint(len) attempt for each attempt.
func (v *archView) blob(i int) []byte {
	e := &v.entries[i]
	return v.chunks[e.chunk][e.off : e.off+e.n]
}

// blobParts splits a blob into the id, the delivery record and the attempt
// records. The blob was written by this process, so a malformed one is a bug.
func blobParts(b []byte) (id []byte, del []byte, atts [][]byte) {
	next := func() []byte {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			panic("fsm: corrupt archive blob")
		}
		p := b[k : k+int(n)]
		b = b[k+int(n):]
		return p
	}
	id, del = next(), next()
	for len(b) > 0 {
		atts = append(atts, next())
	}
	return id, del, atts
}

func blobID(b []byte) []byte {
	n, k := binary.Uvarint(b)
	return b[k : k+int(n)]
}

// find returns the index of the entry with id visible at at, or -1.
func (v *archView) find(id string, at uint64) int {
	if v.a == nil {
		return -1
	}
	h := v.a.hash(id)
	v.a.mu.RLock()
	i, ok := v.gen.byID[h]
	j, clashed := v.gen.clash[id]
	v.a.mu.RUnlock()
	for _, c := range []struct {
		i  uint32
		ok bool
	}{{i, ok}, {j, clashed}} {
		if c.ok && int(c.i) < len(v.entries) && v.entries[c.i].visibleAt(at) && string(blobID(v.blob(int(c.i)))) == id {
			return int(c.i)
		}
	}
	return -1
}

func (v *archView) delivery(i int) *Delivery {
	_, del, _ := blobParts(v.blob(i))
	d := new(Delivery)
	if err := DecodeBody(del, d); err != nil {
		panic(fmt.Sprintf("fsm: archived delivery does not decode: %v", err))
	}
	return d
}

func (v *archView) attempts(i int) []*Attempt {
	_, _, atts := blobParts(v.blob(i))
	out := make([]*Attempt, 0, len(atts))
	for _, b := range atts {
		a := new(Attempt)
		if err := DecodeBody(b, a); err != nil {
			panic(fmt.Sprintf("fsm: archived attempt does not decode: %v", err))
		}
		out = append(out, a)
	}
	return out
}

// archQuery selects archived deliveries; empty fields match all.
type archQuery struct {
	DeliveryFilter
	EventID      string
	OccurrenceID string
}

func (q *archQuery) match(d *Delivery) bool {
	return q.DeliveryFilter.match(d) && (q.EventID == "" || d.EventID == q.EventID) &&
		(q.OccurrenceID == "" || d.OccurrenceID == q.OccurrenceID)
}

// list returns the matching deliveries visible at at with ids after after,
// in id order, at most limit of them (<= 0: all).
func (v *archView) list(q archQuery, at uint64, after string, limit int) []*Delivery {
	if v.a == nil || (q.Status != "" && q.Status != DeliverySucceeded) {
		return nil
	}
	h := v.a.hash
	project, job, endpoint, event, occ := h(q.Project), h(q.JobID), h(q.EndpointID), h(q.EventID), h(q.OccurrenceID)
	best := &idHeap{}
	for i := v.front; i < len(v.entries); i++ {
		e := &v.entries[i]
		if (project != 0 && e.project != project) || (job != 0 && e.job != job) ||
			(endpoint != 0 && e.endpoint != endpoint) || (event != 0 && e.event != event) ||
			(occ != 0 && e.occurrence != occ) ||
			(q.CreatedFrom != 0 && e.created < q.CreatedFrom) || (q.CreatedTo != 0 && e.created >= q.CreatedTo) ||
			!e.visibleAt(at) {
			continue
		}
		id := blobID(v.blob(i))
		if after != "" && string(id) <= after {
			continue
		}
		if limit > 0 && best.Len() == limit {
			if bytes.Compare(id, best.c[0].id) >= 0 {
				continue
			}
			best.c[0] = idCand{id, i}
			heap.Fix(best, 0)
			continue
		}
		heap.Push(best, idCand{id, i})
	}
	out := make([]*Delivery, best.Len())
	for k := len(out) - 1; k >= 0; k-- {
		out[k] = v.delivery(heap.Pop(best).(idCand).i)
	}
	// A hash collision may have let a row through; the decoded record says.
	kept := out[:0]
	for _, d := range out {
		if q.match(d) {
			kept = append(kept, d)
		}
	}
	return kept
}

// count returns the deliveries and attempts visible at at.
func (v *archView) count(at uint64) (deliveries, attempts int) {
	for i := v.front; i < len(v.entries); i++ {
		if e := &v.entries[i]; e.visibleAt(at) {
			deliveries++
			attempts += int(e.attempts)
		}
	}
	return deliveries, attempts
}

// idCand is a candidate row of a list; idHeap keeps the largest id on top so
// that the smallest limit ids can be kept in one pass.
type idCand struct {
	id []byte
	i  int
}

type idHeap struct{ c []idCand }

func (h *idHeap) Len() int           { return len(h.c) }
func (h *idHeap) Less(i, j int) bool { return bytes.Compare(h.c[i].id, h.c[j].id) > 0 }
func (h *idHeap) Swap(i, j int)      { h.c[i], h.c[j] = h.c[j], h.c[i] }
func (h *idHeap) Push(x any)         { h.c = append(h.c, x.(idCand)) }
func (h *idHeap) Pop() any {
	x := h.c[len(h.c)-1]
	h.c = h.c[:len(h.c)-1]
	return x
}

// ---------------------------------------------------------------------------
// Writes; the applier's goroutine only.

// encodeBlob encodes d and its attempts as the archive stores them. The
// record encodings are exactly a snapshot's, so a snapshot copies them.
func encodeBlob(d *Delivery, atts []*Attempt) ([]byte, error) {
	del, err := marshal(nil, d)
	if err != nil {
		return nil, err
	}
	parts := [][]byte{[]byte(d.ID), del}
	for _, a := range atts {
		b, err := marshal(nil, a)
		if err != nil {
			return nil, err
		}
		parts = append(parts, b)
	}
	return joinParts(parts), nil
}

func joinParts(parts [][]byte) []byte {
	n := 0
	for _, p := range parts {
		n += binary.MaxVarintLen32 + len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = binary.AppendUvarint(out, uint64(len(p)))
		out = append(out, p...)
	}
	return out
}

// add archives d (already succeeded) with its attempts at Raft index index.
func (a *archive) add(d *Delivery, blob []byte, attempts int, index uint64) {
	e := archEntry{
		id: a.hash(d.ID), project: a.hash(d.Project), job: a.hash(d.JobID), endpoint: a.hash(d.EndpointID),
		event: a.hash(d.EventID), occurrence: a.hash(d.OccurrenceID), created: d.CreatedAt, completed: d.CompletedAt,
		archived: index, attempts: uint32(attempts), n: uint32(len(blob)),
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.gen
	if len(g.chunks) == 0 || g.used+len(blob) > len(g.chunks[len(g.chunks)-1]) {
		g.chunks = append(g.chunks, make([]byte, max(archiveChunk, len(blob))))
		g.used = 0
	}
	e.chunk, e.off = uint32(len(g.chunks)-1), uint32(g.used)
	copy(g.chunks[e.chunk][g.used:], blob)
	g.used += len(blob)
	i := uint32(len(g.entries))
	g.entries = append(g.entries, e)
	if _, taken := g.byID[e.id]; taken {
		g.clash[d.ID] = i
	} else {
		g.byID[e.id] = i
	}
}

// remove marks entry i removed at Raft index index.
func (a *archive) remove(i int, index uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.gen
	atomic.StoreUint64(&g.entries[i].removed, index)
	g.dead++
	for g.front < len(g.entries) && atomic.LoadUint64(&g.entries[g.front].removed) != 0 {
		g.front++
	}
}

// prune removes every entry completed at or before before, at Raft index
// index, and returns how many. It is a set operation, independent of the
// order entries were archived in, so replicas restored from snapshots written
// in another order still agree.
func (a *archive) prune(before Millis, index uint64) int {
	v := a.view()
	n := 0
	for i := v.front; i < len(v.entries); i++ {
		if e := &v.entries[i]; atomic.LoadUint64(&e.removed) == 0 && e.completed <= before {
			a.remove(i, index)
			n++
		}
	}
	return n
}

// maybeCompact reclaims the space of removed entries once they outnumber the
// live ones. FSM.ApplyBatch calls it only after committing: a view whose
// memdb index predates a removal must still find the removed entry, and
// FSM.State captures memdb and the archive under the archive's read lock, so
// no view can pair a pre-commit index with the compacted generation.
func (a *archive) maybeCompact() {
	a.mu.RLock()
	g := a.gen
	a.mu.RUnlock()
	if g.dead >= archiveCompactMin && g.dead > len(g.entries)-g.dead {
		a.compact()
	}
}

// compact copies the live entries into a new generation. Views taken before
// keep the old one, which is freed when the last of them goes.
func (a *archive) compact() {
	a.mu.RLock()
	old := a.gen
	a.mu.RUnlock()
	live := len(old.entries) - old.dead
	g := newArchGen(live)
	g.entries = make([]archEntry, 0, live)
	for i := old.front; i < len(old.entries); i++ {
		e := old.entries[i]
		if e.removed != 0 {
			continue
		}
		b := old.chunks[e.chunk][e.off : e.off+e.n]
		if len(g.chunks) == 0 || g.used+len(b) > len(g.chunks[len(g.chunks)-1]) {
			g.chunks = append(g.chunks, make([]byte, max(archiveChunk, len(b))))
			g.used = 0
		}
		e.chunk, e.off = uint32(len(g.chunks)-1), uint32(g.used)
		copy(g.chunks[e.chunk][g.used:], b)
		g.used += len(b)
		idx := uint32(len(g.entries))
		g.entries = append(g.entries, e)
		if _, taken := g.byID[e.id]; taken {
			g.clash[string(blobID(b))] = idx
		} else {
			g.byID[e.id] = idx
		}
	}
	a.mu.Lock()
	a.gen = g
	a.mu.Unlock()
}

// ---------------------------------------------------------------------------
// The applier's side.

// archived returns the archive position of delivery id as the applier sees
// it, or -1.
func (a *applier) archived(id string) int {
	v := a.arch.view()
	return v.find(id, math.MaxUint64)
}

// archive moves delivery cur, now succeeded as d with its last attempt att,
// out of memdb and into the archive, with every attempt it had.
func (a *applier) archive(cur, d *Delivery, att *Attempt) {
	atts := append(all[Attempt](a.state().iter(TableAttempts, IndexID, d.ID)), att)
	for _, x := range atts[:len(atts)-1] {
		a.mustDelete(TableAttempts, x)
	}
	a.mustDelete(TableDeliveries, cur)
	blob, err := encodeBlob(d, atts)
	if err != nil {
		panic(fmt.Sprintf("fsm: archive delivery %q at raft index %d: %v", d.ID, a.index, err))
	}
	a.arch.add(d, blob, len(atts), a.index)
	if a.track {
		a.archChanges = append(a.archChanges, Change{Table: TableDeliveries, Op: OpUpdated, ID: d.ID, Project: d.Project, Object: d})
	}
}

// unarchiveFor moves an archived delivery back into memdb, with its
// attempts, when a generic Put or Delete names it or one of its attempts (an
// endpoint's deletion, a restore of old history): every write then works on
// memdb alone, as if the delivery had never left. It reports whether it
// moved one.
func (a *applier) unarchiveFor(t *tableDef, id string) bool {
	var deliveryID string
	switch t.name {
	case TableDeliveries:
		deliveryID = id
	case TableAttempts:
		args, err := t.idArgs(id)
		if err != nil {
			return false
		}
		deliveryID, _ = args[0].(string)
	default:
		return false
	}
	if deliveryID == "" || a.first(TableDeliveries, IndexID, deliveryID) != nil {
		return false
	}
	v := a.arch.view()
	i := v.find(deliveryID, math.MaxUint64)
	if i < 0 {
		return false
	}
	d := v.delivery(i)
	atts := v.attempts(i)
	a.arch.remove(i, a.index)
	if a.track {
		a.archChanges = append(a.archChanges, Change{Table: TableDeliveries, Op: opUnarchived, ID: d.ID, Project: d.Project, Object: d})
	}
	a.mustInsert(TableDeliveries, d)
	for _, x := range atts {
		a.mustInsert(TableAttempts, x)
	}
	return true
}

// writeRecords writes the archived deliveries visible at at to a snapshot,
// each as its delivery record followed by its attempt records, in archive
// order.
func (v *archView) writeRecords(w *bufio.Writer, at uint64) error {
	if v.a == nil {
		return nil
	}
	for i := v.front; i < len(v.entries); i++ {
		if !v.entries[i].visibleAt(at) {
			continue
		}
		_, del, atts := blobParts(v.blob(i))
		w.WriteByte(tablesByName[TableDeliveries].num)
		writeUvarint(w, uint64(len(del)))
		w.Write(del)
		for _, b := range atts {
			w.WriteByte(tablesByName[TableAttempts].num)
			writeUvarint(w, uint64(len(b)))
			if _, err := w.Write(b); err != nil {
				return fmt.Errorf("fsm: write snapshot: %w", err)
			}
		}
	}
	return nil
}
