package fsm

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/go-memdb"
)

// State is a consistent, read-only view of the state as of one applied index.
// It is cheap to take and never blocks writers; take a new one to see newer
// writes.
//
// Every record it returns is the stored object itself, shared with other
// readers and with later snapshots: callers must never modify one (copy it,
// change the copy, and Put the copy).
//
// Lists take a cursor: after is the last id of the previous page ("" for the
// first), limit <= 0 means no limit, and the returned cursor is the id to pass
// as after for the next page, or "" when there is none.
type State struct {
	txn       *memdb.Txn
	abandonCh <-chan struct{}
	arch      archView
	// archAt overrides the index the archive is read at: the applier reads
	// its own uncommitted writes. 0: this view's Index().
	archAt uint64
}

// archIndex is the Raft index at which s reads the archive.
func (s *State) archIndex() uint64 {
	if s.archAt != 0 {
		return s.archAt
	}
	return s.Index()
}

// Index is the Raft index of the last log applied in this view.
func (s *State) Index() uint64 {
	m := s.meta()
	return m.Index
}

// Term is the Raft term of the last log applied in this view (0 if unknown).
func (s *State) Term() uint64 { return s.meta().Term }

func (s *State) meta() meta {
	obj, err := s.txn.First(tableMeta, IndexID, metaKey)
	if err != nil || obj == nil {
		return meta{}
	}
	return *obj.(*meta)
}

// Txn is the read transaction under this view, for queries not offered here.
// Records read through it must not be modified either.
func (s *State) Txn() *memdb.Txn { return s.txn }

// AbandonCh is closed when Restore replaces the state this view reads; add it
// to a memdb.WatchSet next to the query's own watch channels.
func (s *State) AbandonCh() <-chan struct{} { return s.abandonCh }

// Count returns the number of records in table (0 for an unknown table).
func (s *State) Count(table string) int {
	if _, ok := tablesByName[table]; !ok {
		return 0
	}
	it := s.iter(table, IndexID)
	n := 0
	for obj := it.Next(); obj != nil; obj = it.Next() {
		n++
	}
	switch table {
	case TableDeliveries, TableAttempts:
		d, a := s.arch.count(archDelivery, s.archIndex())
		if table == TableDeliveries {
			return n + d
		}
		return n + a
	case TableOccurrences:
		o, _ := s.arch.count(archOccurrence, s.archIndex())
		return n + o
	}
	return n
}

// ---------------------------------------------------------------------------
// Generic helpers.

func (s *State) iter(table, index string, args ...any) memdb.ResultIterator {
	it, err := s.txn.Get(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("fsm: query %s.%s: %v", table, index, err)) // a bug in this package
	}
	return it
}

func (s *State) lowerBound(table, index string, args ...any) memdb.ResultIterator {
	it, err := s.txn.LowerBound(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("fsm: query %s.%s: %v", table, index, err))
	}
	return it
}

func get[T any](s *State, table, what string, args ...any) (*T, error) {
	obj, err := s.txn.First(table, IndexID, args...)
	if err != nil {
		panic(fmt.Sprintf("fsm: query %s.id: %v", table, err))
	}
	if obj == nil {
		return nil, notFound("", "%s not found", what)
	}
	return obj.(*T), nil
}

func first[T any](s *State, table, index, what string, args ...any) (*T, error) {
	obj, err := s.txn.First(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("fsm: query %s.%s: %v", table, index, err))
	}
	if obj == nil {
		return nil, notFound("", "%s not found", what)
	}
	return obj.(*T), nil
}

func keyOf[T any](r *T) string { return any(r).(record).key() }

// page collects up to limit records from it, in index order, skipping ids up
// to after and stopping at the first record for which in returns false.
func page[T any](it memdb.ResultIterator, after string, limit int, in func(*T) bool) ([]*T, string) {
	var out []*T
	for obj := it.Next(); obj != nil; obj = it.Next() {
		r := obj.(*T)
		if in != nil && !in(r) {
			break
		}
		if after != "" && keyOf(r) <= after {
			continue
		}
		if limit > 0 && len(out) == limit {
			return out, keyOf(out[len(out)-1])
		}
		out = append(out, r)
	}
	return out, ""
}

// list pages through table in id order, restricted to the rows whose index
// starts with prefix (nil: the whole table, by the id index).
func list[T any](s *State, table, index string, prefix []any, after string, limit int) ([]*T, string) {
	if prefix == nil {
		if after == "" {
			return page[T](s.iter(table, IndexID), "", limit, nil)
		}
		return page[T](s.lowerBound(table, IndexID, after), after, limit, nil)
	}
	// Keys of a non-unique index are the index values followed by the id, so
	// within one prefix the rows are in id order and after can be seeked to.
	if after == "" {
		return page[T](s.iter(table, index, prefix...), "", limit, nil)
	}
	ix := schema.Tables[table].Indexes[index].Indexer
	want, err := ix.FromArgs(prefix...)
	if err != nil {
		panic(fmt.Sprintf("fsm: query %s.%s: %v", table, index, err))
	}
	it := s.lowerBound(table, index, append(append([]any{}, prefix...), after)...)
	return page(it, after, limit, func(r *T) bool {
		ok, key, _ := ix.(memdb.SingleIndexer).FromObject(r)
		return ok && hasPrefix(key, want)
	})
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}

// until collects records from it, in index order, while in holds.
func until[T any](it memdb.ResultIterator, limit int, in func(*T) bool) []*T {
	var out []*T
	for obj := it.Next(); obj != nil; obj = it.Next() {
		r := obj.(*T)
		if !in(r) || (limit > 0 && len(out) == limit) {
			break
		}
		out = append(out, r)
	}
	return out
}

func all[T any](it memdb.ResultIterator) []*T {
	var out []*T
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*T))
	}
	return out
}

// ---------------------------------------------------------------------------
// Projects and tokens.

// Project returns the project name, or ErrNotFound.
func (s *State) Project(name string) (*Project, error) {
	return get[Project](s, TableProjects, fmt.Sprintf("project %q", name), name)
}

// Projects lists projects by name.
func (s *State) Projects(after string, limit int) ([]*Project, string) {
	return list[Project](s, TableProjects, IndexID, nil, after, limit)
}

// Token returns the token id, or ErrNotFound.
func (s *State) Token(id string) (*Token, error) {
	return get[Token](s, TableTokens, fmt.Sprintf("token %q", id), id)
}

// TokenByHash returns the token whose secret hashes to hash, or ErrNotFound.
func (s *State) TokenByHash(hash string) (*Token, error) {
	if hash == "" {
		return nil, notFound("", "token not found")
	}
	return first[Token](s, TableTokens, IndexHash, "token", hash)
}

// Tokens lists tokens by id: those restricted to project, or all tokens when
// project is "" (tokens valid for any project are listed only then).
func (s *State) Tokens(project, after string, limit int) ([]*Token, string) {
	return list[Token](s, TableTokens, IndexProject, prefixOf(project), after, limit)
}

func prefixOf(args ...string) []any {
	if args[0] == "" {
		return nil
	}
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = a
	}
	return out
}

// ---------------------------------------------------------------------------
// Endpoints.

// Endpoint returns the endpoint id, or ErrNotFound.
func (s *State) Endpoint(id string) (*Endpoint, error) {
	return get[Endpoint](s, TableEndpoints, fmt.Sprintf("endpoint %q", id), id)
}

// Endpoints lists the endpoints of project ("" = all projects) by id.
func (s *State) Endpoints(project, after string, limit int) ([]*Endpoint, string) {
	return list[Endpoint](s, TableEndpoints, IndexProject, prefixOf(project), after, limit)
}

// Idempotency returns the remembered answer of Idempotency-Key id
// ("<project>/<key>"), or ErrNotFound.
func (s *State) Idempotency(id string) (*IdempotencyRecord, error) {
	return get[IdempotencyRecord](s, TableIdempotency, fmt.Sprintf("idempotency key %q", id), id)
}

// ---------------------------------------------------------------------------
// Jobs.

// Job returns the job id, or ErrNotFound.
func (s *State) Job(id string) (*Job, error) {
	return get[Job](s, TableJobs, fmt.Sprintf("job %q", id), id)
}

// Jobs lists the jobs of project ("" = all projects) by id.
//
// It merges the project's per-status runs of the project_status index
// instead of reading a by-project index: every index of the jobs table costs
// heap for every stored job and a write on every fire, and listing all jobs of
// a project is rare next to both.
func (s *State) Jobs(project, after string, limit int) ([]*Job, string) {
	if project == "" {
		return list[Job](s, TableJobs, IndexID, nil, after, limit)
	}
	var out []*Job
	more := false
	for _, status := range JobStatuses {
		page, next := list[Job](s, TableJobs, IndexProjectStatus, []any{project, status}, after, limit)
		out = append(out, page...)
		more = more || next != ""
	}
	slices.SortFunc(out, func(a, b *Job) int { return strings.Compare(a.ID, b.ID) })
	if limit > 0 && len(out) > limit {
		out, more = out[:limit], true
	}
	if more && len(out) > 0 {
		return out, out[len(out)-1].ID
	}
	return out, ""
}

// JobsByStatus lists the jobs of project with status, by id.
func (s *State) JobsByStatus(project, status, after string, limit int) ([]*Job, string) {
	return list[Job](s, TableJobs, IndexProjectStatus, []any{project, status}, after, limit)
}

// JobByIdempotencyKey returns the job of project created with key, or
// ErrNotFound.
func (s *State) JobByIdempotencyKey(project, key string) (*Job, error) {
	if key == "" {
		return nil, notFound("idempotencyKey", "job not found")
	}
	return first[Job](s, TableJobs, IndexIdempotency, "job", project, key)
}

// JobsDue returns active jobs with 0 < NextFireAt <= before, earliest first
// (ties by id), at most limit (<= 0: no limit).
func (s *State) JobsDue(before Millis, limit int) []*Job {
	return until(s.iter(TableJobs, IndexNextFire), limit, func(j *Job) bool { return j.NextFireAt <= before })
}

// NextFireAt returns the earliest NextFireAt of the active jobs; false when no
// active job has one. The poller sleeps until then.
func (s *State) NextFireAt() (Millis, bool) {
	obj, err := s.txn.First(TableJobs, IndexNextFire)
	if err != nil || obj == nil {
		return 0, false
	}
	return obj.(*Job).NextFireAt, true
}

// ---------------------------------------------------------------------------
// Occurrences.

// Occurrence returns the occurrence id, or ErrNotFound. A finished
// occurrence is read from the archive.
func (s *State) Occurrence(id string) (*Occurrence, error) {
	o, err := get[Occurrence](s, TableOccurrences, fmt.Sprintf("occurrence %q", id), id)
	if err != nil {
		if i := s.arch.find(archOccurrence, id, s.archIndex()); i >= 0 {
			return s.arch.occurrence(i), nil
		}
	}
	return o, err
}

// OccurrenceByNumber returns occurrence number n of job, or ErrNotFound.
func (s *State) OccurrenceByNumber(jobID string, n int64) (*Occurrence, error) {
	o, err := first[Occurrence](s, TableOccurrences, IndexJobNumber,
		fmt.Sprintf("occurrence %d of job %q", n, jobID), jobID, n)
	if err != nil {
		if a := s.arch.occurrenceBy(jobID, n, "", s.archIndex()); a != nil {
			return a, nil
		}
	}
	return o, err
}

// OccurrenceByIdentity returns the occurrence of job with identity key, or
// ErrNotFound.
func (s *State) OccurrenceByIdentity(jobID, key string) (*Occurrence, error) {
	if key == "" {
		return nil, notFound("identityKey", "occurrence not found")
	}
	o, err := first[Occurrence](s, TableOccurrences, IndexIdentity,
		fmt.Sprintf("occurrence %q of job %q", key, jobID), jobID, key)
	if err != nil {
		if a := s.arch.occurrenceBy(jobID, 0, key, s.archIndex()); a != nil {
			return a, nil
		}
	}
	return o, err
}

// OccurrencesByJob lists the occurrences of job by number, starting after
// number afterNumber (0: from the first). next is the number to pass as
// afterNumber for the next page, 0 when there is none. Pending occurrences
// come from memdb and finished ones from the archive, merged by number.
func (s *State) OccurrencesByJob(jobID string, afterNumber int64, limit int) (out []*Occurrence, next int64) {
	var hot []*Occurrence
	it := s.lowerBound(TableOccurrences, IndexJobNumber, jobID, afterNumber)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		o := obj.(*Occurrence)
		if o.JobID != jobID {
			break
		}
		if o.Number <= afterNumber {
			continue
		}
		if limit > 0 && len(hot) > limit {
			break
		}
		hot = append(hot, o)
	}
	merged := mergeSorted(hot, s.arch.occurrences(jobID, "", afterNumber, "", s.archIndex(), pageProbe(limit)),
		func(a, b *Occurrence) int { return cmp.Compare(a.Number, b.Number) })
	return cutPage(merged, limit, func(o *Occurrence) int64 { return o.Number })
}

// OccurrencesByStatus lists the occurrences of job with status, by id:
// pending ones from memdb's job_status index, finished ones from the
// archive.
func (s *State) OccurrencesByStatus(jobID, status, after string, limit int) ([]*Occurrence, string) {
	probe := Occurrence{Status: status}
	if !probe.Terminal() {
		return list[Occurrence](s, TableOccurrences, IndexJobStatus, []any{jobID, status}, after, limit)
	}
	return cutPage(s.arch.occurrences(jobID, status, 0, after, s.archIndex(), pageProbe(limit)), limit,
		func(o *Occurrence) string { return o.ID })
}

// pageProbe is how many rows to read for a page of limit (<= 0: all): one
// more tells whether there is a next page.
func pageProbe(limit int) int {
	if limit <= 0 {
		return 0
	}
	return limit + 1
}

// cutPage cuts rows read with pageProbe to a page of limit and returns the
// cursor of the next page (its zero value when there is none).
func cutPage[T any, C any](rows []*T, limit int, cursor func(*T) C) ([]*T, C) {
	var none C
	if limit > 0 && len(rows) > limit {
		return rows[:limit], cursor(rows[limit-1])
	}
	return rows, none
}

// mergeSorted merges two slices sorted by cmp into one.
func mergeSorted[T any](a, b []*T, cmp func(x, y *T) int) []*T {
	out := make([]*T, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if cmp(a[0], b[0]) <= 0 {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// ---------------------------------------------------------------------------
// Events.

// Event returns the event id, or ErrNotFound.
func (s *State) Event(id string) (*Event, error) {
	return get[Event](s, TableEvents, fmt.Sprintf("event %q", id), id)
}

// Events lists the events of project ("" = all projects) by id.
func (s *State) Events(project, after string, limit int) ([]*Event, string) {
	return list[Event](s, TableEvents, IndexProject, prefixOf(project), after, limit)
}

// EventByIdempotencyKey returns the event of project published with key, or
// ErrNotFound.
func (s *State) EventByIdempotencyKey(project, key string) (*Event, error) {
	if key == "" {
		return nil, notFound("idempotencyKey", "event not found")
	}
	return first[Event](s, TableEvents, IndexIdempotency, "event", project, key)
}

// EventsDue returns scheduled events with ScheduledAt <= before, earliest
// first.
func (s *State) EventsDue(before Millis, limit int) []*Event {
	return until(s.iter(TableEvents, IndexDue), limit, func(e *Event) bool { return e.ScheduledAt <= before })
}

// ---------------------------------------------------------------------------
// Deliveries and attempts.

// Delivery returns the delivery id, or ErrNotFound. A succeeded delivery is
// read from the archive.
func (s *State) Delivery(id string) (*Delivery, error) {
	d, err := get[Delivery](s, TableDeliveries, fmt.Sprintf("delivery %q", id), id)
	if err != nil {
		if i := s.arch.find(archDelivery, id, s.archIndex()); i >= 0 {
			return s.arch.delivery(i), nil
		}
	}
	return d, err
}

// DeliveriesByStatus lists the deliveries of project with status, by id.
func (s *State) DeliveriesByStatus(project, status, after string, limit int) ([]*Delivery, string) {
	return s.deliveries(archQuery{DeliveryFilter: DeliveryFilter{Project: project, Status: status}}, after, limit)
}

// DeliveriesDue returns the active deliveries assigned to node with
// NextAttemptAt <= before, earliest first. In-flight deliveries are active
// and so included: the dispatcher tells them apart by Status.
func (s *State) DeliveriesDue(node string, before Millis, limit int) []*Delivery {
	return until(s.iter(TableDeliveries, IndexNodeDue, node), limit,
		func(d *Delivery) bool { return d.NextAttemptAt <= before })
}

// DueProjects returns the distinct projects that have active deliveries on
// node, in order, with one index seek per project (as AssignedNodes does).
func (s *State) DueProjects(node string) []string {
	var out []string
	prefix := appendString(nil, node)
	from := rawKey(prefix)
	for {
		obj := s.lowerBound(TableDeliveries, IndexNodeProjectDue, from).Next()
		if obj == nil {
			return out
		}
		d := obj.(*Delivery)
		if d.AssignedNode != node {
			return out
		}
		out = append(out, d.Project)
		// 0x00 0x02 sorts after every key of this project, before the next.
		from = append(appendStringPrefix(slices.Clone(prefix), d.Project), 0x00, 0x02)
	}
}

// ProjectDue iterates over the active deliveries of project on node,
// earliest due first (in-flight ones included, as in DeliveriesDue). Its
// WatchCh fires on any change to them.
func (s *State) ProjectDue(node, project string) memdb.ResultIterator {
	return s.iter(TableDeliveries, IndexNodeProjectDue, node, project)
}

// DeliveriesByNode returns the active deliveries assigned to node, earliest
// due first. (It reads the node_due index: a separate by-node index would be
// one more index write on every delivery change, the hottest write path.)
func (s *State) DeliveriesByNode(node string) []*Delivery {
	return all[Delivery](s.iter(TableDeliveries, IndexNodeDue, node))
}

// ExpiredLeases returns active deliveries whose lease ends at or before
// before, earliest first, at most limit (<= 0: all). It scans the active
// deliveries (node_due holds only those) rather than keeping a lease index:
// in steady state few deliveries are active, while an index would cost two
// more writes on every delivery, the hottest write path.
func (s *State) ExpiredLeases(before Millis, limit int) []*Delivery {
	var out []*Delivery
	for _, d := range all[Delivery](s.iter(TableDeliveries, IndexNodeDue)) {
		if d.LeaseUntil != 0 && d.LeaseUntil <= before {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b *Delivery) int {
		if c := cmp.Compare(a.LeaseUntil, b.LeaseUntil); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// DeliveriesByEndpoint lists the deliveries to endpoint, by id.
func (s *State) DeliveriesByEndpoint(endpointID, after string, limit int) ([]*Delivery, string) {
	if endpointID == "" {
		return nil, ""
	}
	return s.deliveries(archQuery{DeliveryFilter: DeliveryFilter{EndpointID: endpointID}}, after, limit)
}

// DeliveriesByJob lists the deliveries of job, by id.
func (s *State) DeliveriesByJob(jobID, after string, limit int) ([]*Delivery, string) {
	if jobID == "" {
		return nil, ""
	}
	return s.deliveries(archQuery{DeliveryFilter: DeliveryFilter{JobID: jobID}}, after, limit)
}

// DeliveriesByOccurrence returns the deliveries of occurrence, by id,
// succeeded ones included (which costs a pass over the archive: code on a hot
// path wants UnsettledDeliveriesByOccurrence).
func (s *State) DeliveriesByOccurrence(occurrenceID string) []*Delivery {
	if occurrenceID == "" {
		return nil
	}
	ds, _ := s.deliveries(archQuery{OccurrenceID: occurrenceID}, "", 0)
	return ds
}

// UnsettledDeliveriesByOccurrence returns the deliveries of occurrence that
// have not succeeded, by id: one index read, for the pipeline's checks.
func (s *State) UnsettledDeliveriesByOccurrence(occurrenceID string) []*Delivery {
	return all[Delivery](s.iter(TableDeliveries, IndexOccurrence, occurrenceID))
}

// DeliveriesByEvent lists the deliveries of event, by id.
func (s *State) DeliveriesByEvent(eventID, after string, limit int) ([]*Delivery, string) {
	if eventID == "" {
		return nil, ""
	}
	return s.deliveries(archQuery{EventID: eventID}, after, limit)
}

// SettledEvents returns events no longer scheduled (published or skipped)
// that settled at or before before, oldest first, at most limit.
func (s *State) SettledEvents(before Millis, limit int) []*Event {
	return until(s.iter(TableEvents, IndexTerminal), limit,
		func(e *Event) bool { return e.SettledAt() <= before })
}

// TerminalDeliveries returns the terminal deliveries still in memdb (dead
// letters and cancelled ones; succeeded ones are archived) completed at or
// before before, oldest first: what retention removes besides the archive.
func (s *State) TerminalDeliveries(before Millis, limit int) []*Delivery {
	return until(s.iter(TableDeliveries, IndexTerminal), limit,
		func(d *Delivery) bool { return d.CompletedAt <= before })
}

// Attempt returns attempt number n of delivery, or ErrNotFound.
func (s *State) Attempt(deliveryID string, n int) (*Attempt, error) {
	a, err := get[Attempt](s, TableAttempts, fmt.Sprintf("attempt %d of delivery %q", n, deliveryID), deliveryID, n)
	if err != nil {
		for _, x := range s.archivedAttempts(deliveryID) {
			if x.Number == n {
				return x, nil
			}
		}
	}
	return a, err
}

// Attempts returns the attempts of delivery, by number.
func (s *State) Attempts(deliveryID string) []*Attempt {
	// A prefix of the (delivery, number) id index: no separate index to write.
	hot := all[Attempt](s.iter(TableAttempts, IndexID, deliveryID))
	if len(hot) > 0 {
		return hot // an archived delivery's attempts moved with it
	}
	return s.archivedAttempts(deliveryID)
}

func (s *State) archivedAttempts(deliveryID string) []*Attempt {
	if i := s.arch.find(archDelivery, deliveryID, s.archIndex()); i >= 0 {
		return s.arch.attempts(i)
	}
	return nil
}

// AssignedNodes returns the distinct nodes that hold active deliveries, in
// order. It seeks past each node's deliveries instead of reading them, so it
// costs one index seek per node: the reassigner calls it on every pass to
// find deliveries stranded on nodes that are gone.
func (s *State) AssignedNodes() []string {
	var out []string
	var from rawKey
	for {
		var it memdb.ResultIterator
		var err error
		if from == nil {
			it, err = s.txn.Get(TableDeliveries, IndexNodeDue)
		} else {
			it, err = s.txn.LowerBound(TableDeliveries, IndexNodeDue, from)
		}
		if err != nil {
			panic(fmt.Sprintf("fsm: deliveries by node: %v", err))
		}
		obj := it.Next()
		if obj == nil {
			return out
		}
		node := obj.(*Delivery).AssignedNode
		out = append(out, node)
		// Every node_due key of node starts with its encoding, terminated by
		// 0x00 0x01; 0x00 0x02 sorts after all of them and before the next node.
		from = append(appendStringPrefix(nil, node), 0x00, 0x02)
	}
}

// ---------------------------------------------------------------------------
// Filtered delivery lists (the API's delivery history and dead-letter replay).

// DeliveryFilter selects deliveries; an empty field matches every delivery.
type DeliveryFilter struct {
	Project    string // "" = every project
	Status     string
	EndpointID string
	JobID      string
	// CreatedFrom and CreatedTo bound CreatedAt to [CreatedFrom, CreatedTo);
	// 0 leaves that side open.
	CreatedFrom Millis
	CreatedTo   Millis
}

func (f *DeliveryFilter) match(d *Delivery) bool {
	return (f.Project == "" || d.Project == f.Project) &&
		(f.Status == "" || d.Status == f.Status) &&
		(f.EndpointID == "" || d.EndpointID == f.EndpointID) &&
		(f.JobID == "" || d.JobID == f.JobID) &&
		(f.CreatedFrom == 0 || d.CreatedAt >= f.CreatedFrom) &&
		(f.CreatedTo == 0 || d.CreatedAt < f.CreatedTo)
}

// DeliveriesMatching lists the deliveries that match f, by id, with the
// usual after/limit cursor. It walks the narrowest index the filter names
// (job, then endpoint, then project and status) and checks the rest of the
// filter row by row. With only a project, it merges the project's per-status
// runs of the project_status index, which are each in id order, so a project
// never pays for the deliveries of other projects. Succeeded deliveries come
// from the archive, merged in by id.
func (s *State) DeliveriesMatching(f DeliveryFilter, after string, limit int) ([]*Delivery, string) {
	return s.deliveries(archQuery{DeliveryFilter: f}, after, limit)
}

func (s *State) deliveries(q archQuery, after string, limit int) ([]*Delivery, string) {
	var next func() *Delivery
	switch {
	case q.OccurrenceID != "":
		next = inIDOrder[Delivery](s, TableDeliveries, IndexOccurrence, []any{q.OccurrenceID}, after)
	case q.EventID != "":
		next = inIDOrder[Delivery](s, TableDeliveries, IndexEvent, []any{q.EventID}, after)
	case q.JobID != "":
		next = inIDOrder[Delivery](s, TableDeliveries, IndexJob, []any{q.JobID}, after)
	case q.EndpointID != "":
		next = inIDOrder[Delivery](s, TableDeliveries, IndexEndpoint, []any{q.EndpointID}, after)
	case q.Project != "" && q.Status != "":
		next = inIDOrder[Delivery](s, TableDeliveries, IndexProjectStatus, []any{q.Project, q.Status}, after)
	case q.Project != "":
		var runs []func() *Delivery
		for _, status := range s.deliveryStatuses(q.Project) {
			runs = append(runs, inIDOrder[Delivery](s, TableDeliveries, IndexProjectStatus, []any{q.Project, status}, after))
		}
		next = mergeByID(runs)
	default:
		next = inIDOrder[Delivery](s, TableDeliveries, IndexID, nil, after)
	}
	archived := s.arch.list(q, s.archIndex(), after, pageProbe(limit))
	next = mergeByID([]func() *Delivery{next, func() *Delivery {
		if len(archived) == 0 {
			return nil
		}
		d := archived[0]
		archived = archived[1:]
		return d
	}})
	var out []*Delivery
	for d := next(); d != nil; d = next() {
		if !q.match(d) {
			continue
		}
		if limit > 0 && len(out) == limit {
			return out, out[len(out)-1].ID
		}
		out = append(out, d)
	}
	return out, ""
}

// deliveryStatuses returns the statuses that deliveries of project have, in
// order, found by seeking past each one (as AssignedNodes does for nodes),
// so that a status added later is never silently left out of a listing.
func (s *State) deliveryStatuses(project string) []string {
	base := appendString(nil, project)
	var out []string
	from := rawKey(base)
	for {
		it := s.lowerBound(TableDeliveries, IndexProjectStatus, from)
		obj := it.Next()
		if obj == nil {
			return out
		}
		d := obj.(*Delivery)
		if d.Project != project {
			return out
		}
		out = append(out, d.Status)
		// 0x00 0x02 sorts after every key of this status and before the next.
		from = append(appendStringPrefix(append(rawKey(nil), base...), d.Status), 0x00, 0x02)
	}
}

// inIDOrder yields, one by one, the rows of table whose index key starts
// with prefix (nil: the whole table by id), from the first id after after.
// Within one prefix of a non-unique index the rows are in id order (memdb
// appends the id to the key), which is what makes after seekable.
func inIDOrder[T any](s *State, table, index string, prefix []any, after string) func() *T {
	var it memdb.ResultIterator
	switch {
	case after == "":
		it = s.iter(table, index, prefix...)
	default:
		it = s.lowerBound(table, index, append(append([]any{}, prefix...), after)...)
	}
	var want []byte
	var ix memdb.SingleIndexer
	if after != "" && prefix != nil {
		// LowerBound does not stop at the end of the prefix; we must.
		ix = schema.Tables[table].Indexes[index].Indexer.(memdb.SingleIndexer)
		var err error
		if want, err = schema.Tables[table].Indexes[index].Indexer.FromArgs(prefix...); err != nil {
			panic(fmt.Sprintf("fsm: query %s.%s: %v", table, index, err))
		}
	}
	done := false
	return func() *T {
		for !done {
			obj := it.Next()
			if obj == nil {
				done = true
				break
			}
			r := obj.(*T)
			if ix != nil {
				if ok, key, _ := ix.FromObject(r); !ok || !hasPrefix(key, want) {
					done = true
					break
				}
			}
			if after != "" && keyOf(r) <= after {
				continue
			}
			return r
		}
		return nil
	}
}

// mergeByID merges runs that are each in id order into one run in id order.
func mergeByID[T any](runs []func() *T) func() *T {
	heads := make([]*T, len(runs))
	for i, next := range runs {
		heads[i] = next()
	}
	return func() *T {
		best := -1
		for i, h := range heads {
			if h != nil && (best < 0 || keyOf(h) < keyOf(heads[best])) {
				best = i
			}
		}
		if best < 0 {
			return nil
		}
		r := heads[best]
		heads[best] = runs[best]()
		return r
	}
}
