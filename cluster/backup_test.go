package cluster

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"

	"github.com/chime-sched/chime/fsm"
)

// Every byte of a signed backup is covered: changing any one of them is
// refused as invalid (never merely "unverified", so foreign does not let it
// through); another key is "unverified" and passes only as foreign.
func TestBackupSignatureCoversEveryByte(t *testing.T) {
	f := fsm.New(slog.New(slog.DiscardHandler))
	key := newBackupKey("a-cluster-key-of-at-least-32-bytes!!")
	var buf bytes.Buffer
	if err := writeSignedSnapshot(&buf, f.State(), key); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	n, _, err := verifyBackup(bytes.NewReader(b), int64(len(b)), key, RestoreOptions{}, nil)
	if err != nil || n != int64(len(b)-backupTrailerLen) {
		t.Fatalf("verify: %d, %v", n, err)
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x40
		_, _, err := verifyBackup(bytes.NewReader(c), int64(len(c)), key, RestoreOptions{Foreign: true}, nil)
		magic := i >= len(b)-backupTrailerLen && i < len(b)-backupTrailerLen+len(backupMagic)
		keyID := i >= len(b)-backupTrailerLen+len(backupMagic)+1 && i < len(b)-32
		switch {
		case magic || keyID:
			// It no longer looks signed, or signed by someone else:
			// refused unless foreign, and then the stream's own checks
			// (end marker, decoding) are all that is left.
			if _, _, err := verifyBackup(bytes.NewReader(c), int64(len(c)), key, RestoreOptions{}, nil); !errors.Is(err, ErrUnverifiedSnapshot) {
				t.Fatalf("byte %d changed (trailer): %v", i, err)
			}
		case err == nil || !errors.Is(err, ErrBadSnapshot) || errors.Is(err, ErrUnverifiedSnapshot):
			t.Fatalf("byte %d changed: %v", i, err)
		}
	}
	for name, c := range map[string][]byte{"cut short": b[:len(b)-3], "added to": append(bytes.Clone(b), 'x')} {
		_, _, err := verifyBackup(bytes.NewReader(c), int64(len(c)), key, RestoreOptions{Foreign: true}, nil)
		if !errors.Is(err, ErrBadSnapshot) || errors.Is(err, ErrUnverifiedSnapshot) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	other := newBackupKey("another-cluster-key-of-32-bytes-or-more")
	if _, _, err := verifyBackup(bytes.NewReader(b), int64(len(b)), other, RestoreOptions{}, nil); !errors.Is(err, ErrUnverifiedSnapshot) {
		t.Fatalf("another cluster's key: %v", err)
	}
	if _, how, err := verifyBackup(bytes.NewReader(b), int64(len(b)), other, RestoreOptions{Foreign: true}, nil); err != nil || how != "signed by another cluster" {
		t.Fatalf("another cluster's key, foreign: %q %v", how, err)
	}
	if !bytes.Equal(newBackupKey("k"), newBackupKey("k")) || bytes.Equal(newBackupKey("k"), []byte("k")) {
		t.Fatal("the backup key is derived, deterministically, and is not the cluster key")
	}
}
