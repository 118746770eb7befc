package fsm

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// Budgets of DESIGN.md checked here (run with make bench): under 2 KiB of heap
// per stored idle job, and a 1,000,000-job snapshot restored in under 20 s.

// idleJob is a job as the API stores a typical recurring callback.
func idleJob(i int) *Job {
	id := NewID("job", time.UnixMilli(1_750_000_000_000+int64(i)))
	return &Job{
		ID: id, Project: DefaultProject, Name: "nightly report " + strconv.Itoa(i), Status: JobActive, ScheduleKind: "cron",
		Schedule:      []byte(`{"cron":"0 9 * * 1-5","timezone":"Europe/Berlin","catchUp":"one","misfireGraceSeconds":60}`),
		ScheduleSetAt: 1_750_000_000_000, CallbackURL: "https://hooks.example.com/reports/" + strconv.Itoa(i), Method: "POST",
		Payload: []byte(`{"report":"daily","tenant":"acme"}`), Retry: RetryPolicy{MaxAttempts: 5, Backoff: BackoffExponential, InitialDelayMs: 60000, MaxDelayMs: 3600000},
		TimeoutMs: 10000, MisfireGraceMs: 60000, CatchUp: "one", NextFireAt: Millis(1_760_000_000_000 + int64(i)*1000),
		SeriesID: id, CreatedAt: 1_750_000_000_000, UpdatedAt: 1_750_000_000_000,
	}
}

// loadJobs applies n jobs in batches of 1,000 Puts.
func loadJobs(b *testing.B, h *harness, n int) {
	b.Helper()
	for start := 0; start < n; start += 1000 {
		var cmds [][]byte
		for i := start; i < min(n, start+1000); i++ {
			cmds = append(cmds, put(b, TableJobs, idleJob(i)))
		}
		h.ok(must(b)(BatchCommand(cmds...)))
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func BenchmarkIdleJobHeap(b *testing.B) {
	const n = 100_000
	for range b.N {
		before := heapInUse()
		h := newHarness(b)
		h.ok(must(b)(ProjectCreateCommand(Project{Name: DefaultProject})))
		loadJobs(b, h, n)
		after := heapInUse()
		b.ReportMetric(float64(after-before)/n, "heapB/job")
		runtime.KeepAlive(h)
	}
}

type fileSink struct {
	*os.File
}

func (s fileSink) ID() string    { return "bench" }
func (s fileSink) Cancel() error { return s.Close() }

func BenchmarkSnapshotRestore1MJobs(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("CHIME_BENCH_SNAPSHOT_JOBS")); err == nil && v > 0 {
		n = v
	}
	h := newHarness(b)
	h.ok(must(b)(ProjectCreateCommand(Project{Name: DefaultProject})))
	loadJobs(b, h, n)
	path := b.TempDir() + "/snap"
	b.ResetTimer()
	for range b.N {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		snap, _ := h.f.Snapshot()
		t0 := time.Now()
		if err := snap.Persist(fileSink{f}); err != nil {
			b.Fatal(err)
		}
		persist := time.Since(t0)
		info, _ := os.Stat(path)
		r, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		fresh := New(h.f.logger)
		t1 := time.Now()
		if err := fresh.Restore(r); err != nil {
			b.Fatal(err)
		}
		restore := time.Since(t1)
		r.Close()
		if got := fresh.State().Count(TableJobs); got != n {
			b.Fatalf("restored %d jobs, want %d", got, n)
		}
		b.ReportMetric(persist.Seconds(), "persist-s")
		b.ReportMetric(restore.Seconds(), "restore-s")
		b.ReportMetric(float64(info.Size())/float64(n), "snapB/job")
		b.Log(fmt.Sprintf("%d jobs: snapshot %d MiB written in %s, restored in %s", n, info.Size()>>20, persist.Round(time.Millisecond), restore.Round(time.Millisecond)))
	}
}
