//go:build chime_next

// This file is built only with -tags chime_next, and only the rolling-upgrade
// test (e2e/upgrade_test.go) builds that: it turns Chime into a stand-in for
// a newer version, which adds what a real release may add without breaking
// older nodes, an ignorable command type and an ignorable snapshot record.
// The default build does not contain it.

package fsm

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// CmdNextHeartbeat is applied every few seconds by the leader of a chime_next
// build (cmd/chime/next.go). It has IgnorableFlag: an older node skips it.
const CmdNextHeartbeat CommandType = IgnorableFlag | 1 // 0x81

// NextHeartbeat is the body of CmdNextHeartbeat.
type NextHeartbeat struct {
	Node string `msgpack:"node,omitempty"` // the leader that sent it
	At   Millis `msgpack:"at,omitempty"`
}

// NextHeartbeats is what the heartbeats leave in the state: how many were
// applied and the last one. It is one row of its own table, written into
// snapshots as a record of type snapshotNextHeartbeats, which an older node
// skips.
type NextHeartbeats struct {
	Key   string `msgpack:"key,omitempty"`
	Count uint64 `msgpack:"count,omitempty"`
	Node  string `msgpack:"node,omitempty"`
	At    Millis `msgpack:"at,omitempty"`
	Index uint64 `msgpack:"idx,omitempty"` // the Raft index of the last one
}

const (
	tableNextHeartbeats         = "next_heartbeats"
	nextHeartbeatsKey           = "heartbeats"
	snapshotNextHeartbeats byte = snapshotIgnorable | 1 // 0x81
)

var ext = extensions{
	tables: []*memdb.TableSchema{{Name: tableNextHeartbeats, Indexes: indexes(
		index(IndexID, true, nil, str(func(r *NextHeartbeats) string { return r.Key })),
	)}},
	commands: map[CommandType]func(*applier, []byte) *Error{CmdNextHeartbeat: applyNextHeartbeat},
	snapshotRecords: func(s *State) ([]extRecord, error) {
		h, err := s.nextHeartbeats()
		if err != nil || h == nil {
			return nil, err
		}
		return []extRecord{{typ: snapshotNextHeartbeats, rec: h}}, nil
	},
	restore: map[byte]func(*memdb.Txn, []byte) error{snapshotNextHeartbeats: func(txn *memdb.Txn, b []byte) error {
		var h NextHeartbeats
		if err := DecodeBody(b, &h); err != nil {
			return err
		}
		if h.Key != nextHeartbeatsKey {
			return fmt.Errorf("heartbeats record has key %q", h.Key)
		}
		return txn.Insert(tableNextHeartbeats, &h)
	}},
}

func init() { commandNames[CmdNextHeartbeat] = "next_heartbeat" }

// NextHeartbeatCommand is a CmdNextHeartbeat from node at time at.
func NextHeartbeatCommand(node string, at Millis) ([]byte, error) {
	return Encode(CmdNextHeartbeat, &NextHeartbeat{Node: node, At: at})
}

func applyNextHeartbeat(a *applier, body []byte) *Error {
	var b NextHeartbeat
	a.decode(CmdNextHeartbeat, body, &b)
	h := NextHeartbeats{Key: nextHeartbeatsKey}
	obj, err := a.txn.First(tableNextHeartbeats, IndexID, nextHeartbeatsKey)
	if err != nil {
		panic(fmt.Sprintf("fsm: lookup %s at raft index %d: %v", tableNextHeartbeats, a.index, err))
	}
	if obj != nil {
		h = *obj.(*NextHeartbeats) // a copy: stored objects are never changed in place
	}
	h.Count++
	h.Node, h.At, h.Index = b.Node, b.At, a.index
	a.mustInsert(tableNextHeartbeats, &h)
	return nil
}

// NextHeartbeats returns what the heartbeats left in this state (zero if none
// was applied, or if the state was restored from a snapshot without them).
func (s *State) NextHeartbeats() NextHeartbeats {
	h, err := s.nextHeartbeats()
	if err != nil || h == nil {
		return NextHeartbeats{}
	}
	return *h
}

func (s *State) nextHeartbeats() (*NextHeartbeats, error) {
	obj, err := s.txn.First(tableNextHeartbeats, IndexID, nextHeartbeatsKey)
	if err != nil || obj == nil {
		return nil, err
	}
	return obj.(*NextHeartbeats), nil
}
