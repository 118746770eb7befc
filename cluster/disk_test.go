package cluster

import (
	"errors"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestDiskGuard(t *testing.T) {
	var free uint64 = 100 << 20
	g := newDiskGuard(t.TempDir(), 64<<20, slog.New(slog.NewTextHandler(io.Discard, nil)))
	g.free = func(string) (uint64, error) { return free, nil }
	lows := 0
	g.onLow = func() { lows++ }

	g.check()
	if err := g.err(); err != nil {
		t.Fatalf("100 MiB free, 64 MiB reserve: %v", err)
	}
	free = 10 << 20
	g.check()
	g.check()
	if err := g.err(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("10 MiB free, 64 MiB reserve: err %v, want ErrDiskFull", err)
	}
	if lows != 1 {
		t.Errorf("onLow ran %d times for one transition, want 1", lows)
	}

	// A term change waits while the disk is short, and goes on as soon as
	// the guard sees space again.
	done := make(chan struct{})
	go func() { g.waitBeforeTerm(nil); close(done) }()
	select {
	case <-done:
		t.Fatal("a term change went ahead at once with a short disk")
	case <-time.After(200 * time.Millisecond):
	}
	free = 100 << 20
	g.check()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("a term change still waits after space came back")
	}
	if err := g.err(); err != nil {
		t.Fatalf("space is back: %v", err)
	}

	// A write that fails for lack of space trips the guard whatever the last
	// reading said, and answers ErrDiskFull.
	logs := guardedLogs{LogStore: failingLogs{raft.NewInmemStore()}, g: g}
	if err := logs.StoreLog(&raft.Log{Index: 1}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("StoreLog on a full disk: %v, want ErrDiskFull", err)
	}
	if g.err() == nil {
		t.Fatal("ENOSPC from the log store did not trip the guard")
	}
	if lows != 2 {
		t.Errorf("onLow ran %d times, want 2", lows)
	}
}

type failingLogs struct{ raft.LogStore }

func (failingLogs) StoreLogs([]*raft.Log) error { return syscall.ENOSPC }
