package cluster

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/chime-sched/chime/fsm"
	"github.com/hashicorp/raft"
)

// Backups (GET /v1/cluster/snapshot, `chime snapshot save`) are signed, and a
// restore checks the signature before anything changes (issue 12, item 8):
// before, a restore needed only an admin token, so a backup edited to swap
// the root token's hash restored fine and the planted token became root.
//
// A backup is the FSM's snapshot stream unchanged, followed by a trailer:
//
//	"CHIMESIG" | version (1 byte, 1) | key id (8 bytes) | HMAC-SHA256 (32 bytes)
//
// The MAC covers every byte before it (the stream, the magic, the version
// and the key id). Its key is derived from the cluster key with its own
// label, so it is never the key that authenticates nodes to each other; the
// key id (a MAC of a fixed label under the same key) tells "made by another
// cluster" apart from "changed". The stream comes first and is unchanged, so
// an older release, which stops reading at the stream's end marker, still
// restores a signed backup, and fsm.ReadSnapshotHeader still reads its
// header.
const (
	backupMagic      = "CHIMESIG"
	backupVersion    = 1
	backupKeyIDLen   = 8
	backupTrailerLen = len(backupMagic) + 1 + backupKeyIDLen + sha256.Size

	backupKeyLabel   = "chime/backup-signing/v1"
	backupKeyIDLabel = "chime/backup-key-id/v1"
)

// ErrUnverifiedSnapshot is returned by Restore for a backup that this
// cluster cannot vouch for (unsigned, or signed by another cluster) when
// RestoreOptions.Foreign is not set. It is an ErrBadSnapshot, so it is
// refused with nothing changed.
var ErrUnverifiedSnapshot = fmt.Errorf("%w: not verified", errBadSnapshot)

// RestoreOptions are the choices of a restore.
type RestoreOptions struct {
	// Foreign accepts a backup this cluster did not sign: one saved by
	// another cluster (another key) or by a release before signing. Its
	// integrity cannot be checked; the operator vouches for the file.
	Foreign bool
}

type backupKey []byte

func newBackupKey(clusterKey string) backupKey { return deriveKey(clusterKey, backupKeyLabel) }

func (k backupKey) mac() hash.Hash { return hmac.New(sha256.New, k) }

func (k backupKey) id() []byte {
	m := k.mac()
	m.Write([]byte(backupKeyIDLabel))
	return m.Sum(nil)[:backupKeyIDLen]
}

// WriteBackup streams a signed backup of st to w (see the format above).
func (c *Cluster) WriteBackup(w io.Writer, st *fsm.State) error {
	return writeSignedSnapshot(w, st, newBackupKey(c.cfg.ClusterKey))
}

func writeSignedSnapshot(w io.Writer, st *fsm.State, key backupKey) error {
	m := key.mac()
	if err := fsm.WriteSnapshot(io.MultiWriter(w, m), st); err != nil {
		return err
	}
	var t bytes.Buffer
	t.WriteString(backupMagic)
	t.WriteByte(backupVersion)
	t.Write(key.id())
	m.Write(t.Bytes())
	t.Write(m.Sum(nil))
	_, err := w.Write(t.Bytes())
	return err
}

// verifyBackup checks the signature of the backup in f (size bytes) and
// returns the length of its snapshot stream (without the trailer). A backup
// signed with this cluster's key must match its signature, foreign or not;
// one unsigned or signed with another key is refused (ErrUnverifiedSnapshot)
// unless opts.Foreign. check, when not nil, validates the stream first, so
// that a damaged file is reported as damaged rather than as unverified.
func verifyBackup(f io.ReaderAt, size int64, key backupKey, opts RestoreOptions, check func(streamLen int64) error) (int64, string, error) {
	trailer := make([]byte, backupTrailerLen)
	signed := size >= int64(backupTrailerLen)
	if signed {
		if _, err := f.ReadAt(trailer, size-int64(backupTrailerLen)); err != nil {
			return 0, "", err
		}
		signed = string(trailer[:len(backupMagic)]) == backupMagic
	}
	if !signed {
		// A signature that is there but not where it belongs: a download
		// cut short, or bytes added after it. Damaged, not unsigned.
		n := min(size, int64(2*backupTrailerLen))
		tail := make([]byte, n)
		if _, err := f.ReadAt(tail, size-n); err != nil {
			return 0, "", err
		}
		if bytes.Contains(tail, []byte(backupMagic)) {
			return 0, "", fmt.Errorf("%w: the signature is not at the end of the file: it was cut short or added to", errBadSnapshot)
		}
	}
	streamLen, provenance, why := size, "unsigned", "the file is not signed (saved by a release before backups were signed, cut short, or not a Chime backup)"
	if signed {
		if v := trailer[len(backupMagic)]; v != backupVersion {
			return 0, "", fmt.Errorf("%w: signature version %d is unknown to this release", errBadSnapshot, v)
		}
		keyID := trailer[len(backupMagic)+1 : len(backupMagic)+1+backupKeyIDLen]
		streamLen = size - int64(backupTrailerLen)
		if hmac.Equal(keyID, key.id()) {
			m := key.mac()
			if _, err := io.Copy(m, io.NewSectionReader(f, 0, size-sha256.Size)); err != nil {
				return 0, "", err
			}
			if !hmac.Equal(m.Sum(nil), trailer[len(trailer)-sha256.Size:]) {
				// Never accepted, foreign or not: this cluster signed it,
				// and it was changed since.
				return 0, "", fmt.Errorf("%w: the signature does not match: the file was changed after it was saved", errBadSnapshot)
			}
			return streamLen, "signed by this cluster", nil
		}
		provenance = "signed by another cluster"
		why = fmt.Sprintf("the file was signed by another cluster (key id %s; this cluster's is %s)", hex.EncodeToString(keyID), hex.EncodeToString(key.id()))
	}
	if check != nil {
		if err := check(streamLen); err != nil {
			return 0, "", err
		}
	}
	if !opts.Foreign {
		return 0, "", fmt.Errorf("%w: %s; restore it as foreign if you trust it", ErrUnverifiedSnapshot, why)
	}
	return streamLen, provenance, nil
}

// Restore replaces the whole cluster state with the backup read from r.
// The upload is spooled to a temporary file; its signature is checked and
// the snapshot fully validated before Raft sees it: a bad file changes
// nothing.
func (c *Cluster) Restore(ctx context.Context, r io.Reader, opts RestoreOptions) error {
	if c.raft.State() == raft.Leader {
		return c.restoreLocal(ctx, r, opts)
	}
	path := pathRestore
	if opts.Foreign {
		path += "?foreign=true"
	}
	return c.forward(ctx, path, r, nil)
}

func (c *Cluster) restoreLocal(ctx context.Context, r io.Reader, opts RestoreOptions) error {
	if c.raft.State() != raft.Leader {
		return ErrNoLeader
	}
	tmp, err := os.CreateTemp(c.cfg.DataDir, "restore-*.snap")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	size, err := io.Copy(tmp, r)
	if err != nil {
		return fmt.Errorf("receive snapshot: %w", err)
	}
	var hdr fsm.SnapshotHeader
	validate := func(streamLen int64) error {
		var err error
		if hdr, err = fsm.ReadSnapshotHeader(io.NewSectionReader(tmp, 0, streamLen)); err != nil {
			return fmt.Errorf("%w: %v", errBadSnapshot, err)
		}
		// Decode it all into a scratch state machine first.
		if err := fsm.New(c.logger).Restore(io.NopCloser(io.NewSectionReader(tmp, 0, streamLen))); err != nil {
			return fmt.Errorf("%w: %v", errBadSnapshot, err)
		}
		return nil
	}
	streamLen, provenance, err := verifyBackup(tmp, size, newBackupKey(c.cfg.ClusterKey), opts, validate)
	if err != nil {
		return err
	}
	if provenance == "signed by this cluster" { // not validated yet
		if err := validate(streamLen); err != nil {
			return err
		}
	}
	stream := func() io.Reader { return io.NewSectionReader(tmp, 0, streamLen) }
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: hdr.Index, Term: hdr.Term, Size: streamLen}
	c.logger.Warn("restoring cluster state from snapshot", "snapshot_index", hdr.Index, "bytes", streamLen, "provenance", provenance)
	if err := c.raft.Restore(meta, stream(), remaining(ctx, c.cfg.ApplyTimeout)); err != nil {
		return fmt.Errorf("restore: %w", raftErr(err))
	}
	return nil
}
