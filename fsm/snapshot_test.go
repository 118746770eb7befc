package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
)

type memSink struct {
	bytes.Buffer
	fail              bool
	closed, cancelled bool
}

func (s *memSink) ID() string { return "test" }
func (s *memSink) Close() error {
	s.closed = true
	return nil
}
func (s *memSink) Cancel() error {
	s.cancelled = true
	return nil
}
func (s *memSink) Write(p []byte) (int, error) {
	if s.fail {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}

func snapshotOf(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func restore(f *FSM, b []byte) error {
	return f.Restore(io.NopCloser(bytes.NewReader(b)))
}

// filled returns an FSM with every table filled and its snapshot.
func filled(t *testing.T) (*harness, []byte) {
	h := newHarness(t)
	fill(t, h)
	return h, snapshotOf(t, h.f)
}

func TestSnapshotRoundTrip(t *testing.T) {
	h, snap := filled(t)
	src := h.f.State()
	for _, table := range Tables() {
		if src.Count(table) < 2 {
			t.Fatalf("fixture has fewer than 2 %s", table)
		}
		for _, row := range dump(src)[table] {
			allFieldsSet(t, table, row)
		}
	}

	// Writes after the snapshot was taken are not in it.
	snapBefore, _ := h.f.Snapshot()
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "later"})))
	sink := &memSink{}
	if err := snapBefore.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sink.Bytes(), snap) {
		t.Fatal("snapshot is not isolated from later writes, or not deterministic")
	}

	dst := New(slog.New(slog.DiscardHandler))
	old := dst.AbandonCh()
	oldState := dst.State()
	if err := restore(dst, snap); err != nil {
		t.Fatal(err)
	}
	sameState(t, dst.State(), src)
	if dst.AppliedIndex() != src.Index() || dst.State().Index() != src.Index() || dst.State().Term() != 3 {
		t.Fatalf("restored index %d/%d term %d, want %d/3", dst.AppliedIndex(), dst.State().Index(), dst.State().Term(), src.Index())
	}
	select {
	case <-old:
	default:
		t.Fatal("AbandonCh of the replaced state not closed")
	}
	select {
	case <-oldState.AbandonCh():
	default:
		t.Fatal("State.AbandonCh of the replaced state not closed")
	}
	select {
	case <-dst.AbandonCh():
		t.Fatal("new AbandonCh already closed")
	default:
	}

	// The restored state is a working store: indexes were rebuilt and it
	// accepts writes at the next index.
	if j := dst.State().JobsDue(0, 0); len(j) != 1 || j[0].ID != "job-2" {
		t.Fatalf("JobsDue on restored state = %v", j)
	}
	res := dst.Apply(logAt(src.Index()+1, must(t)(ProjectDeleteCommand("p2")))).(*Result)
	if !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("delete p2 on restored state: %v", res.Err)
	}

	hdr, err := ReadSnapshotHeader(bytes.NewReader(snap))
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Version != SnapshotVersion || hdr.Index != src.Index() || hdr.Counts[TableJobs] != 3 || hdr.Counts[TableAttempts] != 3 {
		t.Fatalf("header = %+v", hdr)
	}
}

func TestPersistCancelsOnError(t *testing.T) {
	h, _ := filled(t)
	snap, _ := h.f.Snapshot()
	sink := &memSink{fail: true}
	if err := snap.Persist(sink); err == nil {
		t.Fatal("Persist succeeded on a failing sink")
	}
	if !sink.cancelled || sink.closed {
		t.Fatalf("sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
}

// records splits a snapshot into its header part and its records (each with
// its type byte and length), without the end marker.
func records(t *testing.T, snap []byte) (head []byte, recs [][]byte) {
	r := bytes.NewReader(snap)
	if _, err := ReadSnapshotHeader(r); err != nil {
		t.Fatal(err)
	}
	head = snap[:len(snap)-r.Len()]
	for {
		start := len(snap) - r.Len()
		typ, _ := r.ReadByte()
		n, _ := binary.ReadUvarint(r)
		if typ == 0 {
			return head, recs
		}
		r.Seek(int64(n), io.SeekCurrent)
		recs = append(recs, snap[start:len(snap)-r.Len()])
	}
}

func rawRecord(typ byte, body []byte) []byte {
	b := []byte{typ}
	b = binary.AppendUvarint(b, uint64(len(body)))
	return append(b, body...)
}

func TestRestoreRejects(t *testing.T) {
	h, snap := filled(t)
	head, recs := records(t, snap)
	end := []byte{0, 0}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	withHeader := func(hdr SnapshotHeader) []byte {
		hb, _ := marshal(nil, &hdr)
		return join([]byte(snapshotMagic), binary.AppendUvarint(nil, uint64(len(hb))), hb, end)
	}

	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"empty", nil, "not a Chime snapshot"},
		{"bad magic", append([]byte("CHIMEXXX"), snap[8:]...), "not a Chime snapshot"},
		{"truncated in header", snap[:len(head)-3], "unexpected EOF"},
		{"truncated after header", head, "truncated after 0 records"},
		{"truncated in a record", snap[:len(head)+len(recs[0])+len(recs[1])/2], "truncated after 1 records"},
		{"truncated before end marker", snap[:len(snap)-2], "no end marker"},
		{"truncated in end marker", snap[:len(snap)-1], "no end marker"},
		{"unknown record type", join(head, recs[0], rawRecord(0x7e, []byte{0x80}), end),
			"snapshot record type 126 (0x7e) is unknown"},
		{"newer version", withHeader(SnapshotHeader{Version: SnapshotVersion + 1}),
			"snapshot version 2 is newer than this node supports (1)"},
		{"no version", withHeader(SnapshotHeader{Index: 4}), "no version"},
		{"count mismatch", join(head, join(recs[1:]...), end), "its header says"},
		{"corrupt record", join(head, rawRecord(1, []byte{0xc1}), end), "snapshot record 0 (projects)"},
		{"huge record length", join(head, []byte{1}, binary.AppendUvarint(nil, 1<<40)), "bytes long"},
		{"bad end marker", join(head, join(recs...), []byte{0, 5}), "end marker has length 5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := h.f.State()
			abandon := h.f.AbandonCh()
			idx := h.f.AppliedIndex()
			err := restore(h.f, tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
			sameState(t, h.f.State(), before)
			if h.f.AppliedIndex() != idx {
				t.Fatal("applied index changed by a failed restore")
			}
			select {
			case <-abandon:
				t.Fatal("failed restore abandoned the current state")
			default:
			}
		})
	}
}

func TestRestoreSkipsIgnorableRecords(t *testing.T) {
	h, snap := filled(t)
	head, recs := records(t, snap)
	data := bytes.Join([][]byte{
		head,
		rawRecord(0x80|0x11, []byte("whatever a newer node stores here")),
		bytes.Join(recs[:4], nil),
		rawRecord(0xff, nil),
		bytes.Join(recs[4:], nil),
		{0, 0},
	}, nil)
	dst := New(slog.New(slog.DiscardHandler))
	if err := restore(dst, data); err != nil {
		t.Fatal(err)
	}
	sameState(t, dst.State(), h.f.State())
}

func TestReadSnapshotHeaderFromPlainReader(t *testing.T) {
	_, snap := filled(t)
	// A reader without ReadByte must work and leave the stream at the records.
	r := struct{ io.Reader }{bytes.NewReader(snap)}
	hdr, err := ReadSnapshotHeader(r)
	if err != nil || hdr.Counts[TableProjects] != 3 {
		t.Fatalf("header %+v, %v", hdr, err)
	}
	typ := make([]byte, 1)
	if _, err := io.ReadFull(r, typ); err != nil || typ[0] != 1 {
		t.Fatalf("first record type = %v, %v", typ, err)
	}
}
