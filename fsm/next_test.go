//go:build chime_next

package fsm

import (
	"bytes"
	"log/slog"
	"testing"
)

// The chime_next build's heartbeat (next.go): applied, counted, written into
// a snapshot as an ignorable record and restored from it.
func TestNextHeartbeatSnapshot(t *testing.T) {
	h := newHarness(t)
	for i := range 3 {
		h.ok(must(t)(NextHeartbeatCommand("n1", Millis(1000+i))))
	}
	got := h.f.State().NextHeartbeats()
	if got.Count != 3 || got.Node != "n1" || got.At != 1002 || got.Index != 3 {
		t.Fatalf("heartbeats %+v", got)
	}
	var snap bytes.Buffer
	if err := WriteSnapshot(&snap, h.f.State()); err != nil {
		t.Fatal(err)
	}
	_, recs := records(t, snap.Bytes())
	if len(recs) != 1 || recs[0][0] != 0x81 {
		t.Fatalf("snapshot records %x, want one of type 0x81", recs)
	}
	dst := New(slog.New(slog.DiscardHandler))
	if err := restore(dst, snap.Bytes()); err != nil {
		t.Fatal(err)
	}
	if r := dst.State().NextHeartbeats(); r != got {
		t.Fatalf("restored %+v, want %+v", r, got)
	}
}
