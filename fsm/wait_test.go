package fsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func logAt(index uint64, data []byte) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

func TestWaitForIndex(t *testing.T) {
	t.Run("already applied", func(t *testing.T) {
		h := newHarness(t)
		h.ok(must(t)(BootstrapCommand(1)))
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // even a dead context gets nil when the index is there
		if err := h.f.WaitForIndex(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if err := h.f.WaitForIndex(ctx, 0); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("wakes on apply", func(t *testing.T) {
		h := newHarness(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		const waiters = 50
		errs := make(chan error, waiters)
		for i := range waiters {
			go func() { errs <- h.f.WaitForIndex(ctx, uint64(i%5+1)) }()
		}
		for i := range 5 {
			h.ok(must(t)(ProjectCreateCommand(Project{Name: fmt.Sprint("p", i)})))
		}
		for range waiters {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("wakes on restore", func(t *testing.T) {
		src, snap := filled(t)
		dst := New(slog.New(slog.DiscardHandler))
		done := make(chan error, 1)
		go func() { done <- dst.WaitForIndex(context.Background(), src.idx) }()
		if err := restore(dst, snap); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("waiter not woken by restore")
		}
	})

	t.Run("context cancelled", func(t *testing.T) {
		h := newHarness(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.f.WaitForIndex(ctx, 100) }()
		h.ok(must(t)(BootstrapCommand(1))) // an apply below the index does not release it
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		if err := h.f.WaitForIndex(ctx, 100); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestConcurrentReadersAndWriters runs readers against a writer and a restore
// under -race. Each view must be internally consistent: at index i exactly
// the jobs written up to i exist.
func TestConcurrentReadersAndWriters(t *testing.T) {
	h := newHarness(t)
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "p"}))) // index 1
	_, snap := filled(t)

	const writes = 300
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				s := h.f.State()
				idx := s.Index()
				jobs, _ := s.Jobs("p", "", 0)
				_, before := s.Project("p") // the restored snapshot has no project "p"
				if before == nil && idx >= 1 && len(jobs) != int(idx-1) {
					errs <- fmt.Errorf("reader %d: view at index %d has %d jobs", r, idx, len(jobs))
					return
				}
				for _, j := range s.JobsDue(1<<62, 10) {
					_ = j.NextFireAt
				}
				_ = h.f.WaitForIndex(ctx, idx+1)
			}
		}()
	}
	for i := range writes {
		h.ok(put(t, TableJobs, fullJob(fmt.Sprintf("j%04d", i), "p", Millis(i))))
	}
	if err := h.f.WaitForIndex(context.Background(), writes+1); err != nil {
		t.Fatal(err)
	}
	// Restore while readers run (raft never restores concurrently with
	// Apply, so the writer is done).
	if err := restore(h.f, snap); err != nil {
		t.Fatal(err)
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := h.f.State().Count(TableJobs); n != 3 {
		t.Fatalf("after restore: %d jobs", n)
	}
}
