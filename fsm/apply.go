package fsm

import (
	"fmt"
	"math"

	"github.com/hashicorp/go-memdb"
)

// applier applies commands into one write transaction. Every handler checks
// everything before it writes anything, so a command that fails with a domain
// error leaves no trace and the other commands of the transaction stand.
type applier struct {
	txn   *memdb.Txn
	arch  *archive
	index uint64
	// track: the change feed listens; archChanges then collects what the
	// archive took in or gave up, which memdb's change tracking cannot see.
	track       bool
	archChanges []Change
	// eventIDs counts the lifecycle event ids derived in the log entry being
	// applied (see lifecycle).
	eventIDs map[string]int
	// endpoints caches each project's endpoints for lifecycle events during
	// one command (see subscribers).
	endpoints map[string][]*Endpoint
	// usage holds the quota usage rows this transaction changed (quota.go);
	// flushUsage stores them before the commit.
	usage map[string]*Usage
}

func (a *applier) command(data []byte, nested bool) *Result {
	t, err := TypeOf(data)
	if err != nil {
		panic(fmt.Sprintf("fsm: empty command at raft index %d", a.index))
	}
	body := data[1:]
	res := &Result{Index: a.index}
	switch t {
	case CmdBatch:
		if nested {
			res.Err = invalid("", "a batch cannot contain a batch")
			return res
		}
		var b Batch
		a.decode(t, body, &b)
		if b.Guard != nil {
			if res.Err = errOf(a.checkGuard(b.Guard)); res.Err != nil {
				return res
			}
		}
		res.Results = make([]*Result, len(b.Commands))
		var failed *Error
		for i, c := range b.Commands {
			if failed != nil && b.StopOnError {
				res.Results[i] = &Result{Index: a.index, Err: conflict("", "skipped: an earlier command of the batch failed (%s)", failed.Message)}
				continue
			}
			res.Results[i] = a.command(c, true)
			if failed == nil {
				failed = firstError(res.Results[i])
			}
		}
	case CmdBootstrap:
		var b Bootstrap
		a.decode(t, body, &b)
		a.bootstrap(&b)
	case CmdProjectCreate:
		var b ProjectCreate
		a.decode(t, body, &b)
		res.Err = errOf(a.projectCreate(&b))
	case CmdProjectDelete:
		var b ProjectDelete
		a.decode(t, body, &b)
		res.Err = errOf(a.deleteRecord(tablesByName[TableProjects], b.Name, 0))
	case CmdPut:
		var b Put
		a.decode(t, body, &b)
		res.Err = errOf(a.put(&b))
	case CmdDelete:
		var b Delete
		a.decode(t, body, &b)
		def, ok := tablesByName[b.Table]
		if !ok {
			res.Err = invalid("table", "unknown table %q", b.Table)
			break
		}
		res.Err = errOf(a.deleteRecord(def, b.ID, b.IfIndex))
	case CmdFire:
		var b Fire
		a.decode(t, body, &b)
		res.Results = a.fire(&b)
	case CmdDeliveryResults:
		var b DeliveryResults
		a.decode(t, body, &b)
		res.Results = a.deliveryResults(&b)
	case CmdAssign:
		var b Assign
		a.decode(t, body, &b)
		res.Results = a.assign(&b)
	case CmdPrune:
		var b Prune
		a.decode(t, body, &b)
		res = a.prune(&b)
	case CmdDeliveryControl:
		var b DeliveryControl
		a.decode(t, body, &b)
		res.Results = a.deliveryControl(&b)
	case CmdOccurrenceControl:
		var b OccurrenceControl
		a.decode(t, body, &b)
		res.Results = a.occurrenceControl(&b)
	default:
		if h := ext.commands[t]; h != nil { // none in the default build
			res.Err = errOf(h(a, body))
			break
		}
		if t&IgnorableFlag != 0 {
			res.Ignored = true
			return res
		}
		panic(fmt.Sprintf("fsm: unknown command type %d (0x%02x) at raft index %d: "+
			"this node is older than the one that wrote it; stopping rather than letting replicas diverge",
			uint8(t), uint8(t), a.index))
	}
	return res
}

// errOf keeps a nil *Error a nil error.
// firstError is r's domain error, or that of its first failed item.
func firstError(r *Result) *Error {
	if e, ok := r.Err.(*Error); ok {
		return e
	}
	for _, sub := range r.Results {
		if e := firstError(sub); e != nil {
			return e
		}
	}
	return nil
}

func errOf(e *Error) error {
	if e == nil {
		return nil
	}
	return e
}

func (a *applier) decode(t CommandType, body []byte, v any) {
	if err := DecodeBody(body, v); err != nil {
		panic(fmt.Sprintf("fsm: corrupt %s command at raft index %d: %v", t, a.index, err))
	}
}

// mustInsert and mustDelete fail only on a schema or indexer bug. A failing
// memdb call may leave the transaction half-written, so stop.
func (a *applier) mustInsert(table string, obj any) {
	if r, ok := obj.(sharer); ok {
		r.shareStrings()
	}
	if countedTable(table) {
		a.recount(table, obj, false)
	}
	if err := a.txn.Insert(table, obj); err != nil {
		panic(fmt.Sprintf("fsm: insert into %s at raft index %d: %v", table, a.index, err))
	}
}

func (a *applier) mustDelete(table string, obj any) {
	if countedTable(table) {
		a.recount(table, obj, true)
	}
	if err := a.txn.Delete(table, obj); err != nil {
		panic(fmt.Sprintf("fsm: delete from %s at raft index %d: %v", table, a.index, err))
	}
}

func (a *applier) first(table, index string, args ...any) record {
	obj, err := a.txn.First(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("fsm: lookup %s.%s at raft index %d: %v", table, index, a.index, err))
	}
	if obj == nil {
		return nil
	}
	return obj.(record)
}

func (a *applier) bootstrap(b *Bootstrap) {
	if a.first(TableProjects, IndexID, DefaultProject) != nil {
		return
	}
	p := &Project{Name: DefaultProject, CreatedAt: b.At, UpdatedAt: b.At}
	p.setIndexes(a.index, a.index)
	a.mustInsert(TableProjects, p)
}

func (a *applier) projectCreate(b *ProjectCreate) *Error {
	p := b.Project // a copy: the decoded body is not shared with anyone
	if p.Name == "" {
		return invalid("name", "name is required")
	}
	if a.first(TableProjects, IndexID, p.Name) != nil {
		return conflict("name", "project %q already exists", p.Name)
	}
	p.setIndexes(a.index, a.index)
	a.mustInsert(TableProjects, &p)
	return nil
}

// checkGuard: g's record exists and was last modified at g.IfIndex.
func (a *applier) checkGuard(g *Guard) *Error {
	t, ok := tablesByName[g.Table]
	if !ok {
		return invalid("guard.table", "unknown table %q", g.Table)
	}
	_, e := a.recordAt(t, g.ID, g.IfIndex)
	return e
}

func (a *applier) put(b *Put) *Error {
	t, ok := tablesByName[b.Table]
	if !ok {
		return invalid("table", "unknown table %q", b.Table)
	}
	// A record that does not decode is refused, not fatal: every replica
	// refuses it the same way, so they cannot diverge.
	rec, err := t.decode(b.Record)
	if err != nil {
		return invalid("", "%s record does not decode: %v", t.singular, err)
	}
	if e := t.validate(rec); e != nil {
		return e
	}

	_, idKey, err := t.schema.Indexes[IndexID].Indexer.(memdb.SingleIndexer).FromObject(rec)
	if err != nil {
		panic(fmt.Sprintf("fsm: %s id index at raft index %d: %v", t.name, a.index, err))
	}
	existing := a.first(t.name, IndexID, rawKey(idKey))
	if existing == nil && a.unarchiveFor(t, rec.key()) {
		existing = a.first(t.name, IndexID, rawKey(idKey))
	}
	switch {
	case b.IfAbsent && existing != nil:
		return conflict("", "%s %q already exists", t.singular, rec.key())
	case b.IfIndex != 0 && existing == nil:
		return notFound("", "%s %q not found", t.singular, rec.key())
	case b.IfIndex != 0:
		if _, mod := existing.indexes(); mod != b.IfIndex {
			return conflict("", "%s %q was modified at index %d, not %d", t.singular, rec.key(), mod, b.IfIndex)
		}
	}

	if p := rec.projectName(); t.projectRequired || (t.projectOptional && p != "") {
		if p == "" {
			return invalid("project", "project is required")
		}
		if a.first(TableProjects, IndexID, p) == nil {
			return notFound("project", "project %q not found", p)
		}
	}

	for _, u := range t.unique {
		ok, key, err := t.schema.Indexes[u.index].Indexer.(memdb.SingleIndexer).FromObject(rec)
		if err != nil {
			panic(fmt.Sprintf("fsm: %s.%s index at raft index %d: %v", t.name, u.index, a.index, err))
		}
		if !ok {
			continue
		}
		if other := a.first(t.name, u.index, rawKey(key)); other != nil && other.key() != rec.key() {
			return conflict(u.field, "%s %s already used by %s %q", t.singular, u.what, t.singular, other.key())
		}
	}
	if o, ok := rec.(*Occurrence); ok { // the unique rules again, against finished occurrences
		v := a.arch.view()
		if other := v.occurrenceBy(o.JobID, o.Number, "", math.MaxUint64); other != nil && other.ID != o.ID {
			return conflict("number", "occurrence number within its job already used by occurrence %q", other.ID)
		}
		if o.IdentityKey != "" {
			if other := v.occurrenceBy(o.JobID, 0, o.IdentityKey, math.MaxUint64); other != nil && other.ID != o.ID {
				return conflict("identityKey", "occurrence identity key within its job already used by occurrence %q", other.ID)
			}
		}
	}

	if e := a.putQuota(existing, rec); e != nil {
		return e
	}

	created := a.index
	if existing != nil {
		created, _ = existing.indexes()
	}
	rec.setIndexes(created, a.index)
	a.mustInsert(t.name, rec)
	a.rearchive(t, rec.key())
	a.putRaises(existing, rec, b.Initiator)
	return nil
}

// putRaises raises the lifecycle event of an API write: any change of a job,
// and an endpoint being disabled. Writes without an initiator (tokens, the
// bootstrap) raise nothing.
func (a *applier) putRaises(existing, rec record, initiator string) {
	switch r := rec.(type) {
	case *Job:
		if initiator != "" {
			old, _ := existing.(*Job)
			a.jobChanged(old, r, initiator)
		}
	case *Endpoint:
		a.endpoints = nil // the subscriber set may have changed
		if old, _ := existing.(*Endpoint); initiator != "" && old != nil && old.Enabled && !r.Enabled {
			a.endpointDisabled(r.UpdatedAt, r, initiator)
		}
	}
}

// recordAt is t's record id, which must exist and, unless ifIndex is 0,
// have been last modified at ifIndex.
func (a *applier) recordAt(t *tableDef, id string, ifIndex uint64) (record, *Error) {
	args, err := t.idArgs(id)
	if err != nil {
		return nil, invalid("id", "%v", err)
	}
	existing := a.first(t.name, IndexID, args...)
	if existing == nil {
		return nil, notFound("", "%s %q not found", t.singular, id)
	}
	if _, mod := existing.indexes(); ifIndex != 0 && mod != ifIndex {
		return nil, conflict("", "%s %q was modified at index %d, not %d", t.singular, id, mod, ifIndex)
	}
	return existing, nil
}

func (a *applier) deleteRecord(t *tableDef, id string, ifIndex uint64) *Error {
	a.unarchiveFor(t, id)
	existing, e := a.recordAt(t, id, ifIndex)
	if e != nil {
		return e
	}
	if t.name == TableProjects {
		if e := a.projectDeletable(id); e != nil {
			return e
		}
	}
	a.mustDelete(t.name, existing)
	a.rearchive(t, id)
	if t.name == TableProjects {
		a.deleteProjectQuota(id)
	}
	if t.name == TableEndpoints {
		a.endpoints = nil // the subscriber set changed
		if b, _ := a.first(TableBreakers, IndexID, BreakerKeyEndpoint(id)).(*Breaker); b != nil {
			a.mustDelete(TableBreakers, b)
		}
	}
	return nil
}

// projectDeletable refuses to delete the default project or one that still
// owns records, so that nothing is left pointing at a missing project.
func (a *applier) projectDeletable(name string) *Error {
	if name == DefaultProject {
		return conflict("name", "the %q project cannot be deleted", DefaultProject)
	}
	for _, t := range tableDefs {
		if t.projectIndex != "" && a.first(t.name, t.projectIndex, name) != nil {
			return conflict("name", "project %q still has %s; delete them first", name, t.name)
		}
	}
	return nil
}
