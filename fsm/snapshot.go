package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// Snapshot stream:
//
//	"CHIMESNP" uvarint(len) msgpack(SnapshotHeader)
//	{ recordType uvarint(len) msgpack(record) }   one per row, table by table
//	0x00 0x00                                     end marker
//
// recordType is the table's number (tableDef.num; append-only like command
// types). A type with bit 0x80 set may be skipped by a node that does not know
// it; any other unknown type fails the restore. A stream that ends before the
// end marker is truncated and fails the restore.
const (
	snapshotMagic = "CHIMESNP"
	// SnapshotVersion is the snapshot format this build writes and the newest
	// it reads. Raise it only for a change an older node cannot read safely.
	SnapshotVersion uint32 = 1

	snapshotIgnorable byte = 0x80
	snapshotEnd       byte = 0x00

	maxHeaderLen = 1 << 20
	maxRecordLen = 1 << 28 // a corrupt length must not allocate gigabytes
)

// SnapshotHeader opens every snapshot.
type SnapshotHeader struct {
	Version uint32         `msgpack:"v,omitempty"`
	Index   uint64         `msgpack:"idx,omitempty"`  // Raft index of the state
	Term    uint64         `msgpack:"term,omitempty"` // its term, 0 if unknown
	Counts  map[string]int `msgpack:"counts,omitempty"`
}

// WriteSnapshot streams the state of s to w. It is buffered and flushed here;
// the state is never held in memory as a whole.
func WriteSnapshot(w io.Writer, s *State) error {
	bw, ok := w.(*bufio.Writer)
	if !ok {
		bw = bufio.NewWriterSize(w, 256<<10)
	}
	hdr := SnapshotHeader{Version: SnapshotVersion, Index: s.Index(), Term: s.Term(), Counts: map[string]int{}}
	for _, t := range tableDefs {
		hdr.Counts[t.name] = s.Count(t.name)
	}
	hb, err := marshal(nil, &headerWire{hdr.Version, hdr.Index, hdr.Term, sortedCounts(hdr.Counts)})
	if err != nil {
		return fmt.Errorf("fsm: encode snapshot header: %w", err)
	}
	bw.WriteString(snapshotMagic)
	writeUvarint(bw, uint64(len(hb)))
	bw.Write(hb)

	var buf bytes.Buffer
	enc := configure(msgpack.NewEncoder(&buf))
	for _, t := range tableDefs {
		it := s.iter(t.name, IndexID)
		for obj := it.Next(); obj != nil; obj = it.Next() {
			buf.Reset()
			if err := enc.Encode(obj); err != nil {
				return fmt.Errorf("fsm: encode %s %q for snapshot: %w", t.singular, obj.(record).key(), err)
			}
			bw.WriteByte(t.num)
			writeUvarint(bw, uint64(buf.Len()))
			if _, err := bw.Write(buf.Bytes()); err != nil {
				return fmt.Errorf("fsm: write snapshot: %w", err) // bufio keeps the first error
			}
		}
	}
	// Archived records go out as the delivery, attempt and occurrence
	// records they are (their bytes are kept encoded), so any node, older
	// ones included, reads them like any other row.
	if err := s.arch.writeRecords(bw, s.archIndex()); err != nil {
		return err
	}
	if ext.snapshotRecords != nil { // nil in the default build
		recs, err := ext.snapshotRecords(s)
		if err != nil {
			return fmt.Errorf("fsm: snapshot: %w", err)
		}
		for _, r := range recs {
			buf.Reset()
			if err := enc.Encode(r.rec); err != nil {
				return fmt.Errorf("fsm: encode record type 0x%02x for snapshot: %w", r.typ, err)
			}
			bw.WriteByte(r.typ)
			writeUvarint(bw, uint64(buf.Len()))
			bw.Write(buf.Bytes())
		}
	}
	bw.WriteByte(snapshotEnd)
	writeUvarint(bw, 0)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("fsm: write snapshot: %w", err)
	}
	return nil
}

// headerWire is SnapshotHeader as written. msgpack sorts the keys of
// map[string]string, map[string]bool and map[string]any only, so Counts is
// sorted by hand: the same state always gives the same snapshot bytes.
type headerWire struct {
	Version uint32       `msgpack:"v,omitempty"`
	Index   uint64       `msgpack:"idx,omitempty"`
	Term    uint64       `msgpack:"term,omitempty"`
	Counts  sortedCounts `msgpack:"counts,omitempty"`
}

type sortedCounts map[string]int

func (c sortedCounts) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeMapLen(len(c)); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(c)) {
		if err := enc.EncodeString(k); err != nil {
			return err
		}
		if err := enc.EncodeInt(int64(c[k])); err != nil {
			return err
		}
	}
	return nil
}

func writeUvarint(w *bufio.Writer, v uint64) {
	var b [binary.MaxVarintLen64]byte
	w.Write(b[:binary.PutUvarint(b[:], v)])
}

type byteReader struct{ io.Reader }

func (r byteReader) ReadByte() (byte, error) {
	var b [1]byte
	_, err := io.ReadFull(r.Reader, b[:])
	return b[0], err
}

// ReadSnapshotHeader reads the magic and header at the start of a snapshot and
// leaves r positioned at the first record. It fails for a snapshot of a newer
// format version than this build knows (the header is returned all the same).
func ReadSnapshotHeader(r io.Reader) (SnapshotHeader, error) {
	var hdr SnapshotHeader
	var magic [len(snapshotMagic)]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || string(magic[:]) != snapshotMagic {
		return hdr, errors.New("fsm: not a Chime snapshot (bad magic)")
	}
	br, ok := r.(io.ByteReader)
	if !ok {
		br = byteReader{r}
	}
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return hdr, fmt.Errorf("fsm: snapshot header: %w", unexpectedEOF(err))
	}
	if n > maxHeaderLen {
		return hdr, fmt.Errorf("fsm: snapshot header length %d is too large", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return hdr, fmt.Errorf("fsm: snapshot header: %w", unexpectedEOF(err))
	}
	if err := DecodeBody(b, &hdr); err != nil {
		return hdr, fmt.Errorf("fsm: snapshot header: %w", err)
	}
	if hdr.Version == 0 {
		return hdr, errors.New("fsm: snapshot header has no version")
	}
	if hdr.Version > SnapshotVersion {
		return hdr, fmt.Errorf("snapshot version %d is newer than this node supports (%d)", hdr.Version, SnapshotVersion)
	}
	return hdr, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readSnapshot builds a new memdb from a snapshot stream. Nothing is shared
// with the current state, so an error leaves that untouched.
func readSnapshot(r io.Reader) (*memdb.MemDB, *archive, SnapshotHeader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	hdr, err := ReadSnapshotHeader(br)
	if err != nil {
		return nil, nil, hdr, err
	}
	arch := newArchive()
	// Succeeded deliveries (with their attempts) and finished occurrences
	// are collected here and archived at the end, in the order the snapshot
	// gives them: the placement rule of archive.go, whichever node wrote it.
	var settled []*restoredRecord
	settledByID := map[string]*restoredRecord{}
	db := newDB()
	txn := db.Txn(true)
	defer txn.Abort()
	counts := make(map[string]int, len(tableDefs))
	var buf []byte
	for n := 0; ; n++ {
		typ, err := br.ReadByte()
		if err != nil {
			return nil, nil, hdr, truncated(n, err)
		}
		size, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, nil, hdr, truncated(n, err)
		}
		if typ == snapshotEnd {
			if size != 0 {
				return nil, nil, hdr, fmt.Errorf("fsm: snapshot end marker has length %d", size)
			}
			break
		}
		if size > maxRecordLen {
			return nil, nil, hdr, fmt.Errorf("fsm: snapshot record %d is %d bytes long, more than the %d allowed", n, size, maxRecordLen)
		}
		if restore := ext.restore[typ]; restore != nil { // none in the default build
			if uint64(cap(buf)) < size {
				buf = make([]byte, size)
			}
			buf = buf[:size]
			if _, err := io.ReadFull(br, buf); err != nil {
				return nil, nil, hdr, truncated(n, err)
			}
			if err := restore(txn, buf); err != nil {
				return nil, nil, hdr, fmt.Errorf("fsm: snapshot record %d (type 0x%02x): %w", n, typ, err)
			}
			continue
		}
		t := tablesByNum[typ]
		if t == nil {
			if typ&snapshotIgnorable == 0 {
				return nil, nil, hdr, fmt.Errorf("fsm: snapshot record type %d (0x%02x) is unknown to this node and not ignorable; upgrade this node", typ, typ)
			}
			if _, err := br.Discard(int(size)); err != nil {
				return nil, nil, hdr, truncated(n, err)
			}
			continue
		}
		if uint64(cap(buf)) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := io.ReadFull(br, buf); err != nil { // the decoder copies, so buf is reused
			return nil, nil, hdr, truncated(n, err)
		}
		rec, err := t.decode(buf)
		if err != nil {
			return nil, nil, hdr, fmt.Errorf("fsm: snapshot record %d (%s): %w", n, t.name, err)
		}
		counts[t.name]++
		switch r := rec.(type) {
		case *Delivery:
			if belongsInArchive(r) && settledByID[r.ID] == nil {
				rd := &restoredRecord{entry: arch.deliveryEntry(r, 0), parts: [][]byte{[]byte(r.ID), bytes.Clone(buf)}}
				settled = append(settled, rd)
				settledByID[r.ID] = rd
				continue
			}
		case *Occurrence:
			if belongsInArchive(r) {
				settled = append(settled, &restoredRecord{entry: arch.occurrenceEntry(r), parts: [][]byte{[]byte(r.ID), bytes.Clone(buf)}})
				continue
			}
		case *Attempt:
			// Deliveries precede their attempts in every snapshot (by
			// table, or archived ones each followed by its own).
			if rd := settledByID[r.DeliveryID]; rd != nil {
				rd.parts = append(rd.parts, bytes.Clone(buf))
				rd.entry.attempts++
				continue
			}
		}
		if r, ok := rec.(sharer); ok {
			r.shareStrings()
		}
		if err := txn.Insert(t.name, rec); err != nil {
			return nil, nil, hdr, fmt.Errorf("fsm: snapshot record %d (%s %q): %w", n, t.singular, rec.key(), err)
		}
	}
	for _, t := range tableDefs {
		if want, ok := hdr.Counts[t.name]; ok && want != counts[t.name] {
			return nil, nil, hdr, fmt.Errorf("fsm: snapshot has %d %s, its header says %d", counts[t.name], t.name, want)
		}
	}
	// Quota counts are derived from the records (a snapshot of an older
	// version has none); the rate buckets come from the snapshot.
	if err := rebuildUsage(txn); err != nil {
		return nil, nil, hdr, fmt.Errorf("fsm: restore quota usage: %w", err)
	}
	if err := txn.Insert(tableMeta, &meta{Key: metaKey, Index: hdr.Index, Term: hdr.Term}); err != nil {
		return nil, nil, hdr, fmt.Errorf("fsm: restore: %w", err)
	}
	for _, rd := range settled {
		// Index 0: visible at the snapshot's index and every later one.
		arch.add(rd.entry, joinParts(rd.parts), 0)
	}
	txn.Commit()
	return db, arch, hdr, nil
}

type restoredRecord struct {
	entry archEntry
	parts [][]byte // the blob's parts: id, record, a delivery's attempts
}

func truncated(n int, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("fsm: snapshot truncated after %d records (no end marker)", n)
	}
	return fmt.Errorf("fsm: read snapshot: %w", err)
}

type fsmSnapshot struct{ state *State }

// Persist streams the captured state to sink; raft may call it while later
// logs are being applied, which the read transaction isolates it from.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := WriteSnapshot(bufio.NewWriterSize(sink, 1<<20), s.state); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
