package fsm

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/hashicorp/go-memdb"
)

// Table names.
const (
	TableProjects    = "projects"
	TableTokens      = "tokens"
	TableEndpoints   = "endpoints"
	TableJobs        = "jobs"
	TableOccurrences = "occurrences"
	TableEvents      = "events"
	TableDeliveries  = "deliveries"
	TableAttempts    = "attempts"
	TableIdempotency = "idempotency"
	// TableBreakers: see breaker.go.
)

// Index names, for custom queries through State.Txn. Which table has which
// index is listed in tableDefs below.
const (
	IndexID            = "id"
	IndexHash          = "hash"
	IndexProject       = "project"
	IndexProjectStatus = "project_status"
	IndexNextFire      = "next_fire"
	IndexIdempotency   = "idempotency"
	IndexJobNumber     = "job_number"
	IndexIdentity      = "identity"
	IndexJobStatus     = "job_status"
	IndexTerminal      = "terminal"
	IndexDue           = "due"
	IndexNodeDue       = "node_due"
	IndexEndpoint      = "endpoint"
	IndexJob           = "job"
	IndexOccurrence    = "occurrence"
	IndexEvent         = "event"
	IndexExpires       = "expires"
	// IndexNodeProjectDue orders a node's active deliveries by project, then
	// due time: the dispatcher serves each project's queue in turn, so one
	// project's backlog never hides another's due deliveries.
	IndexNodeProjectDue = "node_project_due"
)

// tableMeta holds one row: the Raft index and term of the last applied log.
// It lives in memdb so that a read transaction's index always matches its
// data. It is not written as records into snapshots (the header carries it).
const tableMeta = "meta"

type meta struct {
	Key   string
	Index uint64
	Term  uint64
}

const metaKey = "applied"

// ---------------------------------------------------------------------------
// Index keys.
//
// All indexes use our own typed indexer rather than memdb's reflection-based
// ones: it is faster, it sorts integers and times correctly (memdb's
// IntFieldIndex does not order negatives), and its string encoding is
// self-delimiting even when a string contains NUL, so compound keys never
// collide and a full key is never a prefix of another full key.

// appendString appends s escaped (0x00 → 0x00 0xFF) and terminated by
// 0x00 0x01, which keeps byte order equal to string order.
func appendString(b []byte, s string) []byte {
	b = appendStringPrefix(b, s)
	return append(b, 0x00, 0x01)
}

func appendStringPrefix(b []byte, s string) []byte {
	if strings.IndexByte(s, 0) < 0 {
		return append(b, s...)
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			b = append(b, 0x00, 0xFF)
		} else {
			b = append(b, s[i])
		}
	}
	return b
}

// appendInt appends v as big-endian with the sign bit flipped, so that
// negative, zero and positive values sort in numeric order.
func appendInt(b []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(v)^(1<<63))
}

// rawKey, passed as the only argument of a lookup, is used as the index key
// verbatim. Put uses it to check unique indexes with the key built from the
// new record itself.
type rawKey []byte

type part[T any] struct {
	obj func(*T, []byte) []byte
	// size is how many bytes obj appends (barring escaped 0x00 bytes).
	size func(*T) int
	arg  func([]byte, any) ([]byte, error)
	// prefix encodes a partial last argument for "<index>_prefix" lookups;
	// nil when the kind does not support it.
	prefix func([]byte, any) ([]byte, error)
}

func argString(b []byte, a any) ([]byte, error) {
	s, ok := a.(string)
	if !ok {
		return nil, fmt.Errorf("argument must be a string: %#v", a)
	}
	return appendString(b, s), nil
}

func argStringPrefix(b []byte, a any) ([]byte, error) {
	s, ok := a.(string)
	if !ok {
		return nil, fmt.Errorf("argument must be a string: %#v", a)
	}
	return appendStringPrefix(b, s), nil
}

func argInt(b []byte, a any) ([]byte, error) {
	switch v := a.(type) {
	case Millis:
		return appendInt(b, int64(v)), nil
	case int64:
		return appendInt(b, v), nil
	case int:
		return appendInt(b, int64(v)), nil
	case int32:
		return appendInt(b, int64(v)), nil
	}
	return nil, fmt.Errorf("argument must be an integer or Millis: %#v", a)
}

func str[T any](get func(*T) string) part[T] {
	return part[T]{
		obj:    func(o *T, b []byte) []byte { return appendString(b, get(o)) },
		size:   func(o *T) int { return len(get(o)) + 2 },
		arg:    argString,
		prefix: argStringPrefix,
	}
}

func millis[T any](get func(*T) Millis) part[T] {
	return part[T]{
		obj:  func(o *T, b []byte) []byte { return appendInt(b, int64(get(o))) },
		size: func(*T) int { return 8 },
		arg:  argInt,
	}
}

func integer[T any](get func(*T) int64) part[T] {
	return part[T]{
		obj:  func(o *T, b []byte) []byte { return appendInt(b, get(o)) },
		size: func(*T) int { return 8 },
		arg:  argInt,
	}
}

// indexer builds a key from its parts, in order. With a condition, records
// that do not satisfy it are left out of the index.
//
// Lookups may pass fewer arguments than parts: the key is then a prefix of
// the full keys, and since memdb's Get seeks by prefix, Get(table, "a_b", a)
// returns every row with that a. Arguments beyond the parts are encoded as
// strings: memdb appends the primary id to the keys of a non-unique index,
// so LowerBound(table, "project", p, afterID) starts a page after afterID.
type indexer[T any] struct {
	parts []part[T]
	when  func(*T) bool
	// withID: memdb appends the record's id key to this index's keys (it is
	// not unique), so room is made for it.
	withID bool
}

func (x *indexer[T]) FromObject(raw any) (bool, []byte, error) {
	o, ok := raw.(*T)
	if !ok {
		return false, nil, fmt.Errorf("unexpected object type %T", raw)
	}
	if x.when != nil && !x.when(o) {
		return false, nil, nil
	}
	// The key lives as long as the record: sized exactly, it takes its own
	// size class instead of whatever append's doubling left (a 40-byte key
	// grown from 32 took 64), which is most of a stored job's margin under
	// the 2 KiB budget.
	n := 0
	for _, p := range x.parts {
		n += p.size(o)
	}
	if x.withID {
		n += len(any(o).(record).key()) + 2
	}
	b := make([]byte, 0, n)
	for _, p := range x.parts {
		b = p.obj(o, b)
	}
	return true, b, nil
}

func (x *indexer[T]) FromArgs(args ...any) ([]byte, error) {
	if len(args) == 1 {
		if k, ok := args[0].(rawKey); ok {
			return k, nil
		}
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("no arguments")
	}
	var b []byte
	var err error
	for i, a := range args {
		if i < len(x.parts) {
			b, err = x.parts[i].arg(b, a)
		} else {
			b, err = argString(b, a)
		}
		if err != nil {
			return nil, fmt.Errorf("argument %d: %w", i, err)
		}
	}
	return b, nil
}

func (x *indexer[T]) PrefixFromArgs(args ...any) ([]byte, error) {
	if len(args) == 0 || len(args) > len(x.parts) {
		return nil, fmt.Errorf("want 1 to %d arguments, got %d", len(x.parts), len(args))
	}
	var b []byte
	var err error
	for i, a := range args {
		enc := x.parts[i].arg
		if i == len(args)-1 && x.parts[i].prefix != nil {
			enc = x.parts[i].prefix
		}
		if b, err = enc(b, a); err != nil {
			return nil, fmt.Errorf("argument %d: %w", i, err)
		}
	}
	return b, nil
}

func index[T any](name string, unique bool, when func(*T) bool, parts ...part[T]) *memdb.IndexSchema {
	return &memdb.IndexSchema{
		Name:         name,
		Unique:       unique,
		AllowMissing: when != nil,
		Indexer:      &indexer[T]{parts: parts, when: when, withID: !unique},
	}
}

// ---------------------------------------------------------------------------
// Tables.

// uniqueRule is a unique secondary index that Put checks before inserting:
// memdb itself does not enforce uniqueness, it would silently repoint the key.
type uniqueRule struct {
	index string
	what  string // for the message: "<singular> <what> already used by …"
	field string // Error.Field
}

type tableDef struct {
	name     string
	singular string
	// num is the snapshot record type of the table's rows. Append-only: never
	// renumber or reuse (0 is the end marker, 0x80 the ignorable bit).
	num    byte
	schema *memdb.TableSchema
	unique []uniqueRule
	// projectRequired: the record must name an existing project. Tokens may
	// name none ("any project"); projects and attempts have no project field.
	projectRequired bool
	projectOptional bool
	// projectIndex is an index whose keys start with the project, when a
	// project may not be deleted while the table has rows of it.
	projectIndex string
	recordType   reflect.Type // pointer type stored in memdb
	decode       func([]byte) (record, error)
	idArgs       func(id string) ([]any, error)
	validate     func(record) *Error
}

func decodeRecord[T any, P interface {
	*T
	record
}](b []byte) (record, error) {
	p := P(new(T))
	if err := DecodeBody(b, p); err != nil {
		return nil, err
	}
	return p, nil
}

func stringID(id string) ([]any, error) { return []any{id}, nil }

func attemptIDArgs(id string) ([]any, error) {
	i := strings.LastIndexByte(id, '/')
	if i <= 0 {
		return nil, fmt.Errorf("attempt id %q is not \"deliveryID/number\"", id)
	}
	n, err := strconv.Atoi(id[i+1:])
	if err != nil {
		return nil, fmt.Errorf("attempt id %q is not \"deliveryID/number\"", id)
	}
	return []any{id[:i], n}, nil
}

func requireKey(field string) func(record) *Error {
	return func(r record) *Error {
		if r.key() == "" {
			return invalid(field, "%s is required", field)
		}
		return nil
	}
}

// 0 means unset; negative times are valid (and long due), so they stay in.
func activeJob(j *Job) bool { return j.Status == JobActive && j.NextFireAt != 0 }

var tableDefs = []*tableDef{
	{
		name: TableProjects, singular: "project", num: 1,
		schema: &memdb.TableSchema{Name: TableProjects, Indexes: indexes(
			index(IndexID, true, nil, str(func(r *Project) string { return r.Name })),
		)},
		recordType: reflect.TypeFor[*Project](),
		decode:     decodeRecord[Project],
		idArgs:     stringID,
		validate:   requireKey("name"),
	},
	{
		name: TableTokens, singular: "token", num: 2, projectOptional: true,
		projectIndex: IndexProject,
		schema: &memdb.TableSchema{Name: TableTokens, Indexes: indexes(
			index(IndexID, true, nil, str(func(r *Token) string { return r.ID })),
			index(IndexHash, true, nil, str(func(r *Token) string { return r.Hash })),
			index(IndexProject, false, func(r *Token) bool { return r.Project != "" },
				str(func(r *Token) string { return r.Project })),
		)},
		unique:     []uniqueRule{{IndexHash, "hash", "hash"}},
		recordType: reflect.TypeFor[*Token](),
		decode:     decodeRecord[Token],
		idArgs:     stringID,
		validate: func(r record) *Error {
			if r.key() == "" {
				return invalid("id", "id is required")
			}
			if r.(*Token).Hash == "" {
				return invalid("hash", "token hash is required")
			}
			return nil
		},
	},
	{
		name: TableEndpoints, singular: "endpoint", num: 3, projectRequired: true,
		projectIndex: IndexProject,
		schema: &memdb.TableSchema{Name: TableEndpoints, Indexes: indexes(
			index(IndexID, true, nil, str(func(r *Endpoint) string { return r.ID })),
			index(IndexProject, false, nil, str(func(r *Endpoint) string { return r.Project })),
		)},
		recordType: reflect.TypeFor[*Endpoint](),
		decode:     decodeRecord[Endpoint],
		idArgs:     stringID,
		validate:   requireKey("id"),
	},
	{
		name: TableJobs, singular: "job", num: 4, projectRequired: true,
		projectIndex: IndexProjectStatus,
		schema: &memdb.TableSchema{Name: TableJobs, Indexes: indexes(
			index(IndexID, true, nil, str(func(r *Job) string { return r.ID })),
			index(IndexProjectStatus, false, nil,
				str(func(r *Job) string { return r.Project }),
				str(func(r *Job) string { return r.Status })),
			index(IndexNextFire, true, activeJob,
				millis(func(r *Job) Millis { return r.NextFireAt }),
				str(func(r *Job) string { return r.ID })),
			index(IndexIdempotency, true, func(r *Job) bool { return r.IdempotencyKey != "" },
				str(func(r *Job) string { return r.Project }),
				str(func(r *Job) string { return r.IdempotencyKey })),
		)},
		unique:     []uniqueRule{{IndexIdempotency, "idempotency key", "idempotencyKey"}},
		recordType: reflect.TypeFor[*Job](),
		decode:     decodeRecord[Job],
		idArgs:     stringID,
		validate:   requireKey("id"),
	},
	{
		name: TableOccurrences, singular: "occurrence", num: 5, projectRequired: true,
		schema: &memdb.TableSchema{Name: TableOccurrences, Indexes: indexes(
			index(IndexID, true, nil, str(func(r *Occurrence) string { return r.ID })),
			index(IndexJobNumber, true, nil,
				str(func(r *Occurrence) string { return r.JobID }),
				integer(func(r *Occurrence) int64 { return r.Number })),
			index(IndexIdentity, true, func(r *Occurrence) bool { return r.IdentityKey != "" },
				str(func(r *Occurrence) string { return r.JobID }),
				str(func(r *Occurrence) string { return r.IdentityKey })),
			// Pending occurrences only: the poller reads them on every fire,
			// while finished ones are the bulk of the table and are listed
			// by status rarely (OccurrencesByStatus scans the job's then).
			index(IndexJobStatus, false, func(r *Occurrence) bool { return !r.Terminal() },
				str(func(r *Occurrence) string { return r.JobID }),
				str(func(r *Occurrence) string { return r.Status })),
		)},
		unique: []uniqueRule{
			{IndexJobNumber, "number within its job", "number"},
			{IndexIdentity, "identity key within its job", "identityKey"},
		},
		recordType: reflect.TypeFor[*Occurrence](),
		decode:     decodeRecord[Occurrence],
		idArgs:     stringID,
		validate:   requireKey("id"),
	},
	{
		name: TableEvents, singular: "event", num: 6, projectRequired: true,
		projectIndex: IndexProject,
		schema: &memdb.TableSchema{Name: TableEvents, Indexes: indexes(
			index(IndexID, true, nil, str(func(r *Event) string { return r.ID })),
			index(IndexProject, false, nil, str(func(r *Event) string { return r.Project })),
			index(IndexDue, true, func(r *Event) bool { return r.Status == EventScheduled },
				millis(func(r *Event) Millis { return r.ScheduledAt }),
				str(func(r *Event) string { return r.ID })),
			index(IndexIdempotency, true, func(r *Event) bool { return r.IdempotencyKey != "" },
				str(func(r *Event) string { return r.Project }),
				str(func(r *Event) string { return r.IdempotencyKey })),
			index(IndexTerminal, false, func(r *Event) bool { return r.Status != EventScheduled },
				millis(func(r *Event) Millis { return r.SettledAt() })),
		)},
		unique:     []uniqueRule{{IndexIdempotency, "idempotency key", "idempotencyKey"}},
		recordType: reflect.TypeFor[*Event](),
		decode:     decodeRecord[Event],
		idArgs:     stringID,
		validate:   requireKey("id"),
	},
	{
		name: TableDeliveries, singular: "delivery", num: 7, projectRequired: true,
		schema: &memdb.TableSchema{Name: TableDeliveries, Indexes: indexes(
			index(IndexID, true, nil, str(func(r *Delivery) string { return r.ID })),
			index(IndexProjectStatus, false, nil,
				str(func(r *Delivery) string { return r.Project }),
				str(func(r *Delivery) string { return r.Status })),
			index(IndexNodeDue, false, (*Delivery).Active,
				str(func(r *Delivery) string { return r.AssignedNode }),
				millis(func(r *Delivery) Millis { return r.NextAttemptAt })),
			index(IndexNodeProjectDue, false, (*Delivery).Active,
				str(func(r *Delivery) string { return r.AssignedNode }),
				str(func(r *Delivery) string { return r.Project }),
				millis(func(r *Delivery) Millis { return r.NextAttemptAt })),
			index(IndexEndpoint, false, func(r *Delivery) bool { return r.EndpointID != "" },
				str(func(r *Delivery) string { return r.EndpointID })),
			index(IndexJob, false, func(r *Delivery) bool { return r.JobID != "" },
				str(func(r *Delivery) string { return r.JobID })),
			index(IndexOccurrence, false, func(r *Delivery) bool { return r.OccurrenceID != "" },
				str(func(r *Delivery) string { return r.OccurrenceID })),
			index(IndexEvent, false, func(r *Delivery) bool { return r.EventID != "" },
				str(func(r *Delivery) string { return r.EventID })),
			index(IndexTerminal, false, func(r *Delivery) bool { return r.Terminal() && r.CompletedAt != 0 },
				millis(func(r *Delivery) Millis { return r.CompletedAt })),
		)},
		recordType: reflect.TypeFor[*Delivery](),
		decode:     decodeRecord[Delivery],
		idArgs:     stringID,
		validate:   requireKey("id"),
	},
	{
		name: TableAttempts, singular: "attempt", num: 8,
		schema: &memdb.TableSchema{Name: TableAttempts, Indexes: indexes(
			index(IndexID, true, nil,
				str(func(r *Attempt) string { return r.DeliveryID }),
				integer(func(r *Attempt) int64 { return int64(r.Number) })),
		)},
		recordType: reflect.TypeFor[*Attempt](),
		decode:     decodeRecord[Attempt],
		idArgs:     attemptIDArgs,
		validate: func(r record) *Error {
			if r.(*Attempt).DeliveryID == "" {
				return invalid("deliveryId", "deliveryId is required")
			}
			return nil
		},
	},
	{
		// Not owned by a project (its id names one): a project whose only
		// traces are remembered answers can still be deleted.
		name: TableIdempotency, singular: "idempotency key", num: 9,
		schema: &memdb.TableSchema{Name: TableIdempotency, Indexes: indexes(
			index(IndexID, true, nil, str(func(r *IdempotencyRecord) string { return r.ID })),
			index(IndexExpires, false, nil, millis(func(r *IdempotencyRecord) Millis { return r.ExpiresAt })),
		)},
		recordType: reflect.TypeFor[*IdempotencyRecord](),
		decode:     decodeRecord[IdempotencyRecord],
		idArgs:     stringID,
		validate: func(r record) *Error {
			switch rec := r.(*IdempotencyRecord); {
			case rec.ID == "":
				return invalid("id", "id is required")
			case rec.ExpiresAt == 0:
				return invalid("expiresAt", "an idempotency record needs an expiry")
			}
			return nil
		},
	},
	limitsTable, // quota.go
	usageTable,
	{
		// Ignorable snapshot record type: an older node skips breakers
		// (see breaker.go for why that is safe).
		name: TableBreakers, singular: "breaker", num: snapshotIgnorable | 0x10,
		schema: &memdb.TableSchema{Name: TableBreakers, Indexes: indexes(
			index(IndexID, true, nil, str(func(r *Breaker) string { return r.Key })),
		)},
		recordType: reflect.TypeFor[*Breaker](),
		decode:     decodeRecord[Breaker],
		idArgs:     stringID,
		validate:   requireKey("key"),
	},
}

var (
	tablesByName = map[string]*tableDef{}
	tablesByNum  = map[byte]*tableDef{}
	schema       = &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{}}
)

func init() {
	for _, t := range tableDefs {
		// A table whose rows older nodes may skip has the ignorable bit
		// (quota.go's); 0x81 is the chime_next build's extra record.
		if t.num == 0 || t.num == snapshotIgnorable|1 || tablesByNum[t.num] != nil {
			panic(fmt.Sprintf("fsm: bad record type %d for table %s", t.num, t.name))
		}
		tablesByName[t.name] = t
		tablesByNum[t.num] = t
		schema.Tables[t.name] = t.schema
	}
	schema.Tables[tableMeta] = &memdb.TableSchema{Name: tableMeta, Indexes: indexes(
		index(IndexID, true, nil, str(func(m *meta) string { return m.Key })),
	)}
	for _, ts := range ext.tables { // none in the default build
		schema.Tables[ts.Name] = ts
	}
	if err := schema.Validate(); err != nil {
		panic("fsm: invalid schema: " + err.Error())
	}
}

func indexes(list ...*memdb.IndexSchema) map[string]*memdb.IndexSchema {
	m := make(map[string]*memdb.IndexSchema, len(list))
	for _, ix := range list {
		m[ix.Name] = ix
	}
	return m
}

// Tables returns the names of the replicated tables in snapshot order.
func Tables() []string {
	names := make([]string, len(tableDefs))
	for i, t := range tableDefs {
		names[i] = t.name
	}
	return names
}

func newDB() *memdb.MemDB {
	db, err := memdb.NewMemDB(schema)
	if err != nil {
		panic("fsm: " + err.Error()) // the schema is validated in init
	}
	return db
}
