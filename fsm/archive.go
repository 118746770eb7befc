package fsm

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// The archive holds finished history outside memdb: succeeded deliveries,
// each with its attempts, and finished occurrences.
//
// Why: at the budget's rate (1,700 fires a second) every fire leaves an
// occurrence, a delivery and an attempt behind. In memdb each of them costs a
// radix leaf, node and watch channel per index plus the decoded record's
// strings: about 90 heap objects a fire that the garbage collector marks on
// every cycle, and that a snapshot re-encodes one by one. Those costs grew
// with the history kept and showed as seconds-long stalls in the fire
// benchmark. Here a record is one pre-encoded blob in pointer-free chunks
// plus a fixed-size, pointer-free entry: the collector never looks inside,
// and a snapshot writes the bytes as they are.
//
// Placement is a function of the record alone, so every replica agrees
// whatever way it got its state (applying the log, or restoring a snapshot
// written by any version): a delivery is archived exactly when it has
// succeeded, an occurrence exactly when it is no longer pending. Nothing
// changes such a record any more on the hot path (retry and cancel refuse a
// succeeded delivery; only pending occurrences are completed, skipped or
// missed). A generic Put or Delete that names one (an endpoint's deletion,
// say) moves it back into memdb first and applies the rule again after.
// Dead letters, cancelled and held deliveries stay in memdb with all their
// indexes, since operators act on them.
//
// Isolation: every entry carries the Raft index that archived it and the one
// that removed it (0: present), so a State at index i sees exactly the
// entries archived at or before i and not removed by then, as memdb's
// snapshots do. The applier only appends past what any view captured and
// stores removals atomically; it releases emptied pages and chunks in copies
// of their tables, and a rebuild makes a new generation, so views taken
// before either keep what they captured.

// belongsInArchive is the placement rule: a delivery that has succeeded and
// an occurrence that is no longer pending live in the archive, every other
// record in memdb.
func belongsInArchive(rec record) bool {
	switch r := rec.(type) {
	case *Delivery:
		return r.Status == DeliverySucceeded
	case *Occurrence:
		return r.Terminal()
	}
	return false
}

// Kinds of archived record.
const (
	archDelivery   byte = 1
	archOccurrence byte = 2
)

// archiveChunk is the size of one blob chunk; a larger blob gets a chunk of
// its own.
const archiveChunk = 256 << 10

// archPage is how many entries one page holds. Retention removes the oldest
// records first, so pages and chunks empty out from the front and are
// released whole, without copying anything.
const archPage = 4096

// archiveCompactMin: the live entries are copied into a new generation once
// at least this many removed entries are still held (kept by a live one on
// their page, say an occurrence whose delivery is held for days) and they
// outnumber the live ones: the fallback that bounds memory to about twice
// the live records.
const archiveCompactMin = 4 * archPage

// archEntry locates and describes one archived record. It holds no
// pointers: filters compare hashes of the fields (a match is checked again
// on the decoded record, so a hash collision can never return a wrong row).
type archEntry struct {
	id                                        uint64 // hash of the id lookup key
	numKey, identKey                          uint64 // occurrences: hashes of their lookup keys
	project, job, endpoint, event, occurrence uint64
	status                                    uint64
	created, completed                        Millis
	number                                    int64  // occurrences
	archived                                  uint64 // Raft index that archived it
	removed                                   uint64 // Raft index that removed it, 0 if present; atomic
	chunk, off, n, attempts                   uint32
	kind                                      byte
}

func (e *archEntry) visibleAt(at uint64) bool {
	if e.archived > at {
		return false
	}
	r := atomic.LoadUint64(&e.removed)
	return r == 0 || r > at
}

// archGen is one generation of the archive's storage. Entry positions are
// absolute within a generation; pages[p/archPage][p%archPage] is entry p.
// Only the applier writes, and only past what views captured, except the
// page and chunk tables, which it copies before releasing an entry (views
// keep the tables they captured).
type archGen struct {
	pages  [][]archEntry // each archPage long; nil once released
	chunks [][]byte      // each full length; nil once released
	n      int           // entries appended
	used   int           // bytes used in the last chunk
	// byID finds a record by kind and id; byNumber and byIdentity an
	// occurrence by job and number or identity key.
	byID, byNumber, byIdentity hashIndex
	front                      int // entries before it are all removed
	dead                       int // removed entries at or after front (applier only)
	// minDone is the earliest completion time on each page (applier only):
	// retention skips the pages that hold nothing old enough.
	minDone []Millis
}

func (g *archGen) entry(i int) *archEntry { return &g.pages[i/archPage][i%archPage] }

// hashIndex maps the hash of a lookup key to an entry. A key whose hash an
// earlier key holds goes to clash, by the key itself; the caller checks a
// candidate against the record either way.
type hashIndex struct {
	m     map[uint64]int64
	clash map[string]int64
}

func newHashIndex(size int) hashIndex {
	return hashIndex{m: make(map[uint64]int64, size), clash: map[string]int64{}}
}

func (h *hashIndex) put(hash uint64, key func() string, i int) {
	if _, taken := h.m[hash]; taken {
		h.clash[key()] = int64(i)
		return
	}
	h.m[hash] = int64(i)
}

// drop forgets entry i under hash (and key, if it clashed).
func (h *hashIndex) drop(hash uint64, key func() string, i int) {
	if p, ok := h.m[hash]; ok && p == int64(i) {
		delete(h.m, hash)
		return
	}
	if len(h.clash) > 0 {
		if k := key(); h.clash[k] == int64(i) {
			delete(h.clash, k)
		}
	}
}

// candidates returns up to two entry positions that may hold key.
func (h *hashIndex) candidates(hash uint64, key string) (out [2]int) {
	out = [2]int{-1, -1} // never a valid position
	if i, ok := h.m[hash]; ok {
		out[0] = int(i)
	}
	if len(h.clash) > 0 {
		if i, ok := h.clash[key]; ok {
			out[1] = int(i)
		}
	}
	return out
}

// Lookup keys.
func idKey(kind byte, id string) string { return string(rune(kind)) + id }
func numberKey(job string, n int64) string {
	return "n" + job + "\x00" + strconv.FormatInt(n, 10)
}
func identityKey(job, key string) string { return "k" + job + "\x00" + key }

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
	return &archGen{byID: newHashIndex(size), byNumber: newHashIndex(0), byIdentity: newHashIndex(0)}
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
//
// Iterating a view is exact. A lookup by key goes through maps the applier
// keeps current, so a view still in use when a record it could see is
// removed (retention, an endpoint's deletion) no longer finds that record by
// key: as if it had read a moment later.
type archView struct {
	a      *archive
	gen    *archGen
	pages  [][]archEntry
	chunks [][]byte
	n      int
	front  int
}

func (v *archView) entry(i int) *archEntry { return &v.pages[i/archPage][i%archPage] }

func (a *archive) view() archView {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.viewLocked()
}

func (a *archive) viewLocked() archView {
	g := a.gen
	return archView{a: a, gen: g, pages: g.pages, chunks: g.chunks, n: g.n, front: g.front}
}

// blob returns entry i's encoded bytes: uvarint(len) id, uvarint(len)
// record, then for a delivery uvarint(len) attempt for each attempt.
func (v *archView) blob(i int) []byte {
	e := v.entry(i)
	return v.chunks[e.chunk][e.off : e.off+e.n]
}

// blobParts splits a blob into the id, the record and a delivery's attempt
// records. The blob was written by this process, so a malformed one is a bug.
func blobParts(b []byte) (id []byte, rec []byte, atts [][]byte) {
	next := func() []byte {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			panic("fsm: corrupt archive blob")
		}
		p := b[k : k+int(n)]
		b = b[k+int(n):]
		return p
	}
	id, rec = next(), next()
	for len(b) > 0 {
		atts = append(atts, next())
	}
	return id, rec, atts
}

func blobID(b []byte) []byte {
	n, k := binary.Uvarint(b)
	return b[k : k+int(n)]
}

// find returns the position of the record of kind with id visible at at,
// or -1.
func (v *archView) find(kind byte, id string, at uint64) int {
	if v.a == nil {
		return -1
	}
	key := idKey(kind, id)
	return v.lookup(&v.gen.byID, key, at, func(i int) bool {
		return v.entry(i).kind == kind && string(blobID(v.blob(i))) == id
	})
}

func (v *archView) lookup(h *hashIndex, key string, at uint64, is func(int) bool) int {
	hash := v.a.hash(key)
	v.a.mu.RLock()
	cands := h.candidates(hash, key)
	v.a.mu.RUnlock()
	for _, i := range cands {
		if i >= v.front && i < v.n && v.entry(i).visibleAt(at) && is(i) {
			return i
		}
	}
	return -1
}

// occurrenceBy finds an archived occurrence of job by number (key "") or by
// identity key.
func (v *archView) occurrenceBy(job string, n int64, key string, at uint64) *Occurrence {
	if v.a == nil {
		return nil
	}
	h, k := &v.gen.byNumber, numberKey(job, n)
	if key != "" {
		h, k = &v.gen.byIdentity, identityKey(job, key)
	}
	var found *Occurrence
	v.lookup(h, k, at, func(i int) bool {
		if v.entry(i).kind != archOccurrence {
			return false
		}
		o := v.occurrence(i)
		if o.JobID == job && ((key == "" && o.Number == n) || (key != "" && o.IdentityKey == key)) {
			found = o
			return true
		}
		return false
	})
	return found
}

func (v *archView) occurrence(i int) *Occurrence { return blobRecord[Occurrence](v.blob(i)) }

func (v *archView) delivery(i int) *Delivery { return blobRecord[Delivery](v.blob(i)) }

func (v *archView) attempts(i int) []*Attempt {
	_, _, atts := blobParts(v.blob(i))
	out := make([]*Attempt, 0, len(atts))
	for _, b := range atts {
		out = append(out, decodeArchived[Attempt](b))
	}
	return out
}

// blobRecord decodes the record of a blob.
func blobRecord[T any](blob []byte) *T {
	_, rec, _ := blobParts(blob)
	return decodeArchived[T](rec)
}

// decodeArchived decodes bytes this process encoded, so a failure is a bug.
func decodeArchived[T any](b []byte) *T {
	v := new(T)
	if err := DecodeBody(b, v); err != nil {
		panic(fmt.Sprintf("fsm: archived %T does not decode: %v", v, err))
	}
	return v
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
	out := decodeAll(v, v.smallest(limit, func(e *archEntry) bool {
		return e.kind == archDelivery && (project == 0 || e.project == project) && (job == 0 || e.job == job) &&
			(endpoint == 0 || e.endpoint == endpoint) && (event == 0 || e.event == event) &&
			(occ == 0 || e.occurrence == occ) &&
			(q.CreatedFrom == 0 || e.created >= q.CreatedFrom) && (q.CreatedTo == 0 || e.created < q.CreatedTo) &&
			e.visibleAt(at)
	}, func(i int) ([]byte, bool) {
		id := blobID(v.blob(i))
		return id, after == "" || string(id) > after
	}), (*archView).delivery)
	// A hash collision may have let a row through; the decoded record says.
	return slices.DeleteFunc(out, func(d *Delivery) bool { return !q.match(d) })
}

// occurrences returns the archived occurrences of job visible at at, in
// number order after afterNumber, or (status set) in id order after after;
// at most limit (<= 0: all).
func (v *archView) occurrences(job, status string, afterNumber int64, after string, at uint64, limit int) []*Occurrence {
	if v.a == nil || job == "" {
		return nil
	}
	jh, sh := v.a.hash(job), v.a.hash(status)
	match := func(e *archEntry) bool {
		return e.kind == archOccurrence && e.job == jh && (sh == 0 || e.status == sh) && e.visibleAt(at)
	}
	var out []*Occurrence
	if status == "" {
		var num [8]byte
		out = decodeAll(v, v.smallest(limit, match, func(i int) ([]byte, bool) {
			n := v.entry(i).number
			binary.BigEndian.PutUint64(num[:], uint64(n)^1<<63) // sorts as the signed number
			return bytes.Clone(num[:]), n > afterNumber
		}), (*archView).occurrence)
	} else {
		out = decodeAll(v, v.smallest(limit, match, func(i int) ([]byte, bool) {
			id := blobID(v.blob(i))
			return id, after == "" || string(id) > after
		}), (*archView).occurrence)
	}
	return slices.DeleteFunc(out, func(o *Occurrence) bool { return o.JobID != job || (status != "" && o.Status != status) })
}

// smallest returns, in order of their sort keys, the positions of the
// visible entries that match, whose key passes, with the limit smallest
// keys (<= 0: all), in one pass over the entries.
func (v *archView) smallest(limit int, match func(*archEntry) bool, key func(int) ([]byte, bool)) []int {
	best := &idHeap{}
	for i := v.front; i < v.n; i++ {
		if !match(v.entry(i)) {
			continue
		}
		k, ok := key(i)
		if !ok {
			continue
		}
		if limit > 0 && best.Len() == limit {
			if bytes.Compare(k, best.c[0].id) >= 0 {
				continue
			}
			best.c[0] = idCand{k, i}
			heap.Fix(best, 0)
			continue
		}
		heap.Push(best, idCand{k, i})
	}
	out := make([]int, best.Len())
	for k := len(out) - 1; k >= 0; k-- {
		out[k] = heap.Pop(best).(idCand).i
	}
	return out
}

func decodeAll[T any](v *archView, at []int, decode func(*archView, int) *T) []*T {
	out := make([]*T, len(at))
	for k, i := range at {
		out[k] = decode(v, i)
	}
	return out
}

// count returns the records of kind and (for deliveries) their attempts
// visible at at.
func (v *archView) count(kind byte, at uint64) (records, attempts int) {
	for i := v.front; i < v.n; i++ {
		if e := v.entry(i); e.kind == kind && e.visibleAt(at) {
			records++
			attempts += int(e.attempts)
		}
	}
	return records, attempts
}

// idCand is a candidate row of a list; idHeap keeps the largest key on top
// so that the smallest limit keys can be kept in one pass.
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

// encodeBlob encodes a record (and a delivery's attempts) as the archive
// stores them. The record encodings are exactly a snapshot's, so a snapshot
// copies them.
func encodeBlob(id string, rec any, atts []*Attempt) ([]byte, error) {
	b, err := marshal(nil, rec)
	if err != nil {
		return nil, err
	}
	parts := [][]byte{[]byte(id), b}
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

// deliveryEntry and occurrenceEntry describe a record for its entry.
func (a *archive) deliveryEntry(d *Delivery, attempts int) archEntry {
	return archEntry{kind: archDelivery, id: a.hash(idKey(archDelivery, d.ID)),
		project: a.hash(d.Project), job: a.hash(d.JobID), endpoint: a.hash(d.EndpointID),
		event: a.hash(d.EventID), occurrence: a.hash(d.OccurrenceID), created: d.CreatedAt, completed: d.CompletedAt,
		attempts: uint32(attempts)}
}

func (a *archive) occurrenceEntry(o *Occurrence) archEntry {
	e := archEntry{kind: archOccurrence, id: a.hash(idKey(archOccurrence, o.ID)),
		numKey: a.hash(numberKey(o.JobID, o.Number)), project: a.hash(o.Project), job: a.hash(o.JobID),
		status: a.hash(o.Status), created: o.ScheduledFor, completed: o.CompletedAt, number: o.Number}
	if o.IdentityKey != "" {
		e.identKey = a.hash(identityKey(o.JobID, o.IdentityKey))
	}
	return e
}

// add appends entry e with blob, archived at Raft index index.
func (a *archive) add(e archEntry, blob []byte, index uint64) {
	e.archived, e.n = index, uint32(len(blob))
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen.append(e, blob)
}

// append stores e and its blob and indexes them.
func (g *archGen) append(e archEntry, blob []byte) {
	if len(g.chunks) == 0 || g.used+len(blob) > len(g.chunks[len(g.chunks)-1]) {
		g.chunks = append(g.chunks, make([]byte, max(archiveChunk, len(blob))))
		g.used = 0
	}
	e.chunk, e.off = uint32(len(g.chunks)-1), uint32(g.used)
	copy(g.chunks[e.chunk][g.used:], blob)
	g.used += len(blob)
	i := g.n
	if i%archPage == 0 {
		g.pages = append(g.pages, make([]archEntry, archPage))
	}
	*g.entry(i) = e
	g.n++
	if p := i / archPage; p == len(g.minDone) {
		g.minDone = append(g.minDone, e.completed)
	} else {
		g.minDone[p] = min(g.minDone[p], e.completed)
	}
	g.eachKey(&e, blob, func(h *hashIndex, hash uint64, key func() string) { h.put(hash, key, i) })
}

// eachKey calls f with every lookup index that holds e (whose blob is blob),
// e's hash there and its key. The key is decoded only if f asks for it, which
// it does only when the hash is shared with another key.
func (g *archGen) eachKey(e *archEntry, blob []byte, f func(h *hashIndex, hash uint64, key func() string)) {
	f(&g.byID, e.id, func() string { return idKey(e.kind, string(blobID(blob))) })
	if e.kind != archOccurrence {
		return
	}
	var o *Occurrence
	occ := func() *Occurrence {
		if o == nil {
			o = blobRecord[Occurrence](blob)
		}
		return o
	}
	f(&g.byNumber, e.numKey, func() string { return numberKey(occ().JobID, occ().Number) })
	if e.identKey != 0 {
		f(&g.byIdentity, e.identKey, func() string { return identityKey(occ().JobID, occ().IdentityKey) })
	}
}

// remove marks entry i removed at Raft index index, forgets its keys, and
// releases the pages and chunks that hold only removed entries now.
func (a *archive) remove(i int, index uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.gen
	e := g.entry(i)
	atomic.StoreUint64(&e.removed, index)
	g.dead++
	g.eachKey(e, g.chunks[e.chunk][e.off:e.off+e.n], func(h *hashIndex, hash uint64, key func() string) { h.drop(hash, key, i) })
	front := g.front
	for front < g.n && atomic.LoadUint64(&g.entry(front).removed) != 0 {
		front++
		g.dead--
	}
	if front == g.front {
		return
	}
	// Release whole pages and chunks before the new front, in copies of the
	// tables: views that captured the old tables may still read them.
	pages, chunks := g.pages, g.chunks
	for p := g.front / archPage; p < front/archPage; p++ {
		if pages[p] != nil {
			if &pages[0] == &g.pages[0] {
				pages = slices.Clone(g.pages)
			}
			pages[p] = nil
		}
	}
	keep := len(chunks) - 1 // the chunk being filled
	if front < g.n {
		keep = int(g.entry(front).chunk)
	}
	for c := 0; c < keep; c++ {
		if chunks[c] != nil {
			if &chunks[0] == &g.chunks[0] {
				chunks = slices.Clone(g.chunks)
			}
			chunks[c] = nil
		}
	}
	g.pages, g.chunks, g.front = pages, chunks, front
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
	if g.dead >= archiveCompactMin && g.dead > g.n-g.front-g.dead {
		a.compact()
	}
}

// compact copies the live entries into a new generation. Views taken before
// keep the old one, which is freed when the last of them goes.
func (a *archive) compact() {
	a.mu.RLock()
	old := a.gen
	a.mu.RUnlock()
	g := newArchGen(old.n - old.front - old.dead)
	for i := old.front; i < old.n; i++ {
		if e := *old.entry(i); e.removed == 0 {
			g.append(e, old.chunks[e.chunk][e.off:e.off+e.n])
		}
	}
	a.mu.Lock()
	a.gen = g
	a.mu.Unlock()
}

// ---------------------------------------------------------------------------
// The applier's side.

// archivedAt returns the archive position of the record of kind with id as
// the applier sees it, or -1.
func (a *applier) archivedAt(kind byte, id string) int {
	v := a.arch.view()
	return v.find(kind, id, math.MaxUint64)
}

// archiveDelivery moves delivery d, succeeded, out of memdb (where it is
// stored as cur, nil if it is not) into the archive, with every attempt it
// has there and extra (the attempt that just succeeded, if any).
func (a *applier) archiveDelivery(cur, d *Delivery, extra ...*Attempt) {
	atts := append(all[Attempt](a.state().iter(TableAttempts, IndexID, d.ID)), extra...)
	for _, x := range atts[:len(atts)-len(extra)] {
		a.mustDelete(TableAttempts, x)
	}
	if cur != nil {
		a.mustDelete(TableDeliveries, cur)
	}
	a.addToArchive(a.arch.deliveryEntry(d, len(atts)), d.ID, d, atts, TableDeliveries, d.Project)
}

// archiveOccurrence stores o, no longer pending, in the archive instead of
// memdb (where it is stored as cur, nil if it is not).
func (a *applier) archiveOccurrence(cur, o *Occurrence) {
	if cur != nil {
		a.mustDelete(TableOccurrences, cur)
	}
	a.addToArchive(a.arch.occurrenceEntry(o), o.ID, o, nil, TableOccurrences, o.Project)
}

func (a *applier) addToArchive(e archEntry, id string, rec any, atts []*Attempt, table, project string) {
	blob, err := encodeBlob(id, rec, atts)
	if err != nil {
		panic(fmt.Sprintf("fsm: archive %s %q at raft index %d: %v", table, id, a.index, err))
	}
	a.arch.add(e, blob, a.index)
	if a.track {
		a.archChanges = append(a.archChanges, Change{Table: table, Op: OpUpdated, ID: id, Project: project, Object: rec})
	}
}

// storeOccurrence stores o where the placement rule says: memdb while it
// is pending, the archive after.
func (a *applier) storeOccurrence(cur, o *Occurrence) {
	if belongsInArchive(o) {
		a.archiveOccurrence(cur, o)
		return
	}
	a.mustInsert(TableOccurrences, o)
}

// unarchiveFor moves an archived record back into memdb (a delivery with its
// attempts) when a generic Put or Delete names it or one of its attempts (an
// endpoint's deletion, a test's fixture): the write then works on memdb
// alone, as if the record had never left, and rearchive applies the
// placement rule again afterwards. It reports whether it moved one.
func (a *applier) unarchiveFor(t *tableDef, id string) bool {
	kind, rid := archDelivery, id
	switch t.name {
	case TableDeliveries:
	case TableOccurrences:
		kind = archOccurrence
	case TableAttempts:
		args, err := t.idArgs(id)
		if err != nil {
			return false
		}
		rid, _ = args[0].(string)
	default:
		return false
	}
	table := TableDeliveries
	if kind == archOccurrence {
		table = TableOccurrences
	}
	if rid == "" || a.first(table, IndexID, rid) != nil {
		return false
	}
	v := a.arch.view()
	i := v.find(kind, rid, math.MaxUint64)
	if i < 0 {
		return false
	}
	a.arch.remove(i, a.index)
	var rec record
	if kind == archOccurrence {
		rec = v.occurrence(i)
	} else {
		rec = v.delivery(i)
		for _, x := range v.attempts(i) {
			a.mustInsert(TableAttempts, x)
		}
	}
	if a.track {
		a.archChanges = append(a.archChanges, Change{Table: table, Op: opUnarchived, ID: rid, Project: rec.projectName(), Object: rec})
	}
	a.mustInsert(table, rec)
	return true
}

// rearchive applies the placement rule to the record a generic write just
// stored or changed in memdb (id in table t; an attempt's delivery for an
// attempt).
func (a *applier) rearchive(t *tableDef, id string) {
	switch t.name {
	case TableAttempts:
		args, err := t.idArgs(id)
		if err != nil {
			return
		}
		id, _ = args[0].(string)
		fallthrough
	case TableDeliveries:
		if d, _ := a.first(TableDeliveries, IndexID, id).(*Delivery); d != nil && belongsInArchive(d) {
			a.archiveDelivery(d, d)
		}
	case TableOccurrences:
		if o, _ := a.first(TableOccurrences, IndexID, id).(*Occurrence); o != nil && belongsInArchive(o) {
			a.archiveOccurrence(o, o)
		}
	}
}

// pruneArchive removes the archived records completed at or before before:
// every succeeded delivery, and every occurrence that no unfinished delivery
// in memdb refers to. Like placement, this is a function of the state, not
// of the order things were archived in, so replicas agree.
//
// A record without a completion time is never removed, as memdb's terminal
// index never held one. Pages whose earliest completion is after before are
// skipped whole, so a prune reads only the old end of the archive.
func (a *applier) pruneArchive(before Millis) {
	if before <= 0 {
		return
	}
	v := a.arch.view()
	minDone := v.gen.minDone // the applier's own field
	for i := v.front; i < v.n; i++ {
		if i%archPage == 0 && minDone[i/archPage] > before {
			i += archPage - 1
			continue
		}
		e := v.entry(i)
		if atomic.LoadUint64(&e.removed) != 0 || e.completed == 0 || e.completed > before {
			continue
		}
		if e.kind == archOccurrence && !a.allDeliveriesTerminal(string(blobID(v.blob(i)))) {
			continue
		}
		a.arch.remove(i, a.index)
	}
}

// writeRecords writes the archived records visible at at to a snapshot as
// the ordinary records they are (a delivery followed by its attempts), in
// archive order: any node, older ones included, reads them like any other.
func (v *archView) writeRecords(w *bufio.Writer, at uint64) error {
	if v.a == nil {
		return nil
	}
	for i := v.front; i < v.n; i++ {
		e := v.entry(i)
		if !e.visibleAt(at) {
			continue
		}
		_, rec, atts := blobParts(v.blob(i))
		table := TableDeliveries
		if e.kind == archOccurrence {
			table = TableOccurrences
		}
		w.WriteByte(tablesByName[table].num)
		writeUvarint(w, uint64(len(rec)))
		w.Write(rec)
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
