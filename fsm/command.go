package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// CommandType is the first byte of every command in the Raft log.
type CommandType uint8

// IgnorableFlag marks a command type that an older node, which does not know
// it, may skip. Any other unknown type stops the node (see FSM.Apply).
const IgnorableFlag CommandType = 0x80

// Command types. The numbers are written into the Raft log and must mean the
// same thing forever: append new types at the end, never renumber or reuse
// one. 0 is never valid, so a zeroed buffer is not mistaken for a command.
const (
	CmdBatch           CommandType = 1  // Batch
	CmdBootstrap       CommandType = 2  // Bootstrap
	CmdProjectCreate   CommandType = 3  // ProjectCreate
	CmdProjectDelete   CommandType = 4  // ProjectDelete
	CmdPut             CommandType = 5  // Put
	CmdDelete          CommandType = 6  // Delete
	CmdFire            CommandType = 7  // Fire: a poller tick or a manual trigger
	CmdDeliveryResults CommandType = 8  // DeliveryResults
	CmdAssign          CommandType = 9  // Assign: reassignment after node loss or lease expiry
	CmdPrune           CommandType = 10 // Prune: retention
	// CmdDeliveryControl: retry, cancel or release deliveries (DeliveryControl).
	CmdDeliveryControl CommandType = 11
	// CmdOccurrenceControl: complete or skip occurrences (OccurrenceControl).
	CmdOccurrenceControl CommandType = 12
)

var commandNames = map[CommandType]string{
	CmdBatch:             "batch",
	CmdBootstrap:         "bootstrap",
	CmdProjectCreate:     "project_create",
	CmdProjectDelete:     "project_delete",
	CmdPut:               "put",
	CmdDelete:            "delete",
	CmdFire:              "fire",
	CmdDeliveryResults:   "delivery_results",
	CmdAssign:            "assign",
	CmdPrune:             "prune",
	CmdDeliveryControl:   "delivery_control",
	CmdOccurrenceControl: "occurrence_control",
}

func (t CommandType) String() string {
	if n, ok := commandNames[t]; ok {
		return n
	}
	return fmt.Sprintf("unknown(0x%02x)", uint8(t))
}

// Batch applies its sub-commands in order, in one memdb transaction, each
// with its own result. A sub-command's domain error does not undo the others.
// Batches do not nest.
type Batch struct {
	Commands [][]byte `msgpack:"cmds,omitempty"`
	// Guard, when set, is checked before anything is applied: unless its
	// record exists at exactly its index, the batch applies nothing and
	// fails as a whole (ErrConflict or ErrNotFound). The API guards a write
	// made under an Idempotency-Key with the key's claim, so a write whose
	// claim was released or taken over meanwhile can never apply.
	Guard *Guard `msgpack:"guard,omitempty"`
	// StopOnError: a sub-command runs only if every one before it
	// succeeded; the rest fail with ErrConflict ("skipped").
	StopOnError bool `msgpack:"stop,omitempty"`
}

// Guard names one record and the ModifyIndex it must still have.
type Guard struct {
	Table   string `msgpack:"table,omitempty"`
	ID      string `msgpack:"id,omitempty"`
	IfIndex uint64 `msgpack:"if,omitempty"`
}

// Bootstrap creates the default project unless it exists.
type Bootstrap struct {
	At Millis `msgpack:"at,omitempty"`
}

// ProjectCreate creates a project; ErrConflict if it exists.
type ProjectCreate struct {
	Project Project `msgpack:"project,omitempty"`
}

// ProjectDelete deletes an empty project other than the default one.
type ProjectDelete struct {
	Name string `msgpack:"name,omitempty"`
}

// Put inserts or replaces one record of Table (msgpack of that table's record
// type), checked against the stored one: IfAbsent requires that none exists,
// a non-zero IfIndex requires that the stored ModifyIndex equals it.
type Put struct {
	Table    string `msgpack:"table,omitempty"`
	Record   []byte `msgpack:"rec,omitempty"`
	IfIndex  uint64 `msgpack:"ifidx,omitempty"`
	IfAbsent bool   `msgpack:"ifabsent,omitempty"`
	// Initiator is the token id behind a write through the API; a job or
	// endpoint written with one raises its lifecycle event (lifecycle.go).
	Initiator string `msgpack:"by,omitempty"`
}

// Delete removes one record by id ("deliveryID/number" for attempts, see
// AttemptID); a non-zero IfIndex must equal the stored ModifyIndex.
type Delete struct {
	Table   string `msgpack:"table,omitempty"`
	ID      string `msgpack:"id,omitempty"`
	IfIndex uint64 `msgpack:"ifidx,omitempty"`
}

// PutOptions are the optimistic-concurrency conditions of a Put.
type PutOptions struct {
	IfIndex   uint64
	IfAbsent  bool
	Initiator string // the token id of the API caller, for lifecycle events
}

// ---------------------------------------------------------------------------
// Encoding.

// configure is the package's only msgpack encoder configuration. Sorted map
// keys make the same value always encode to the same bytes; compact integers
// keep the log and snapshots small. (Reset clears these flags, so every use
// goes through here.) msgpack sorts only map[string]string, map[string]bool and
// map[string]any: commands and records use no other map type (a test checks).
func configure(enc *msgpack.Encoder) *msgpack.Encoder {
	enc.SetSortMapKeys(true)
	enc.UseCompactInts(true)
	return enc
}

type pooledEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := &pooledEncoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}}

// marshal returns prefix followed by the msgpack encoding of v.
func marshal(prefix []byte, v any) ([]byte, error) {
	e := encoders.Get().(*pooledEncoder)
	e.buf.Reset()
	e.buf.Write(prefix)
	configure(e.enc)
	err := e.enc.Encode(v)
	var out []byte
	if err == nil {
		out = bytes.Clone(e.buf.Bytes())
	}
	if e.buf.Cap() <= 64<<10 { // do not pin huge buffers in the pool
		encoders.Put(e)
	}
	return out, err
}

// Encode returns the command [t][msgpack of body].
func Encode(t CommandType, body any) ([]byte, error) {
	if t == 0 {
		return nil, errors.New("fsm: command type 0 is invalid")
	}
	b, err := marshal([]byte{byte(t)}, body)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode %s: %w", t, err)
	}
	return b, nil
}

// DecodeBody decodes msgpack bytes (a command body without its type byte, or
// a record) into v. Unknown fields are ignored, so newer encoders' additions
// do not break older decoders.
func DecodeBody(b []byte, v any) error {
	return msgpack.Unmarshal(b, v)
}

// Decode checks that cmd has type want and decodes its body into v.
func Decode(cmd []byte, want CommandType, v any) error {
	t, err := TypeOf(cmd)
	if err != nil {
		return err
	}
	if t != want {
		return fmt.Errorf("fsm: command is %s, not %s", t, want)
	}
	return DecodeBody(cmd[1:], v)
}

// TypeOf returns the type byte of an encoded command.
func TypeOf(b []byte) (CommandType, error) {
	if len(b) == 0 {
		return 0, errors.New("fsm: empty command")
	}
	return CommandType(b[0]), nil
}

// ---------------------------------------------------------------------------
// Typed constructors.

// BatchCommand wraps commands into one CmdBatch. Batches do not nest.
func BatchCommand(cmds ...[]byte) ([]byte, error) {
	for i, c := range cmds {
		t, err := TypeOf(c)
		if err != nil {
			return nil, fmt.Errorf("fsm: batch command %d: %w", i, err)
		}
		if t == CmdBatch {
			return nil, fmt.Errorf("fsm: batch command %d is a batch; batches do not nest", i)
		}
	}
	return Encode(CmdBatch, &Batch{Commands: cmds})
}

// BootstrapCommand creates the default project at time at, unless it exists.
func BootstrapCommand(at Millis) ([]byte, error) {
	return Encode(CmdBootstrap, &Bootstrap{At: at})
}

// ProjectCreateCommand creates p (CreateIndex/ModifyIndex are set by Apply).
func ProjectCreateCommand(p Project) ([]byte, error) {
	return Encode(CmdProjectCreate, &ProjectCreate{Project: p})
}

// ProjectDeleteCommand deletes the project name.
func ProjectDeleteCommand(name string) ([]byte, error) {
	return Encode(CmdProjectDelete, &ProjectDelete{Name: name})
}

// PutCommand stores rec, a record of table's type (value or pointer: *Job or
// Job for TableJobs, …), under the conditions in opts.
func PutCommand(table string, rec any, opts PutOptions) ([]byte, error) {
	t, ok := tablesByName[table]
	if !ok {
		return nil, fmt.Errorf("fsm: unknown table %q", table)
	}
	rt := reflect.TypeOf(rec)
	if rt != t.recordType && rt != t.recordType.Elem() {
		return nil, fmt.Errorf("fsm: table %s stores %v, not %v", table, t.recordType.Elem(), rt)
	}
	body, err := marshal(nil, rec)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode %s record: %w", table, err)
	}
	return Encode(CmdPut, &Put{Table: table, Record: body, IfIndex: opts.IfIndex, IfAbsent: opts.IfAbsent, Initiator: opts.Initiator})
}

// DeleteCommand deletes the record id of table (see AttemptID for attempts).
func DeleteCommand(table, id string, ifIndex uint64) ([]byte, error) {
	if _, ok := tablesByName[table]; !ok {
		return nil, fmt.Errorf("fsm: unknown table %q", table)
	}
	return Encode(CmdDelete, &Delete{Table: table, ID: id, IfIndex: ifIndex})
}
