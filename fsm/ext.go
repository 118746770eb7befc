package fsm

import "github.com/hashicorp/go-memdb"

// extensions is what a build tag may add to the state machine without
// touching the code below: tables, command types and snapshot record types.
// The default build adds nothing (ext_default.go); the chime_next build (next.go)
// adds an ignorable command and an ignorable snapshot record, which the
// rolling-upgrade test (e2e/upgrade_test.go) uses to play a newer version.
type extensions struct {
	tables   []*memdb.TableSchema
	commands map[CommandType]func(a *applier, body []byte) *Error
	// snapshotRecords lists the extra records to write after the tables'.
	snapshotRecords func(s *State) ([]extRecord, error)
	// restore inserts one extra record read from a snapshot.
	restore map[byte]func(txn *memdb.Txn, body []byte) error
}

// extRecord is one extra snapshot record: its type and its value.
type extRecord struct {
	typ byte
	rec any
}
