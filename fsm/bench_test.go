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

// persistSnapshot writes a snapshot of f to path and returns how long that
// took and the file's size.
func persistSnapshot(b *testing.B, f *FSM, path string) (time.Duration, int64) {
	b.Helper()
	file, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	snap, _ := f.Snapshot()
	t0 := time.Now()
	if err := snap.Persist(fileSink{file}); err != nil {
		b.Fatal(err)
	}
	took := time.Since(t0)
	info, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return took, info.Size()
}

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
		persist, size := persistSnapshot(b, h.f, path)
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
		b.ReportMetric(float64(size)/float64(n), "snapB/job")
		b.Log(fmt.Sprintf("%d jobs: snapshot %d MiB written in %s, restored in %s", n, size>>20, persist.Round(time.Millisecond), restore.Round(time.Millisecond)))
	}
}

// BenchmarkFireHistory drives the state the way the pipeline does at the
// budget's rate: jobs fire (one occurrence and one delivery each) and their
// deliveries succeed on the first attempt, round after round, so that the
// history they leave behind accumulates. It reports what each finished fire
// costs: apply time, heap and heap objects (what the garbage collector must
// mark on every cycle), and the snapshot's time and size per fire.
func BenchmarkFireHistory(b *testing.B) {
	const jobs, rounds = 5_000, 20
	for range b.N {
		var ms runtime.MemStats
		h := newHarness(b)
		h.ok(must(b)(ProjectCreateCommand(Project{Name: DefaultProject})))
		loadJobs(b, h, jobs)
		before := heapInUse() // the jobs themselves are not history
		runtime.ReadMemStats(&ms)
		objsBefore := ms.HeapObjects
		var ids []string
		all, _ := h.f.State().Jobs(DefaultProject, "", 0)
		for _, j := range all {
			ids = append(ids, j.ID)
		}
		var applyTime time.Duration
		for r := 1; r <= rounds; r++ {
			at := Millis(1_760_000_000_000 + int64(r)*60_000)
			var dels []DeliveryResult
			for start := 0; start < jobs; start += 500 {
				st := h.f.State()
				var fires []JobFire
				for _, id := range ids[start:min(jobs, start+500)] {
					j, err := st.Job(id)
					if err != nil {
						b.Fatal(err)
					}
					next := *j
					next.NextFireAt, next.OccurrenceCount, next.LastNumber = at+60_000, int64(r), int64(r)
					key := strconv.FormatInt(int64(at), 10)
					o := &Occurrence{ID: DerivedID("occ", at, id, key), JobID: id, Project: DefaultProject, Number: int64(r),
						IdentityKey: key, ScheduledFor: at, FiredAt: at + 3, Status: OccurrencePending}
					d := Delivery{ID: DerivedID("dlv", at, o.ID, ""), Project: DefaultProject, OccurrenceID: o.ID, JobID: id,
						Status: DeliveryPending, MaxAttempts: 5, NextAttemptAt: at, AssignedNode: "node-2", LeaseUntil: at + 30_000,
						ScheduledFor: at, CreatedAt: at + 3, UpdatedAt: at + 3}
					fires = append(fires, JobFire{Job: next, Occurrence: o, Deliveries: []Delivery{d}})
					dels = append(dels, DeliveryResult{DeliveryID: d.ID, Status: DeliverySucceeded,
						Attempt: Attempt{Node: "node-2", StartedAt: at + 5, LatencyMs: 2, StatusCode: 200, ResponseSummary: "ok"}})
				}
				cmd := must(b)(Encode(CmdFire, Fire{At: at + 3, Jobs: fires}))
				t0 := time.Now()
				h.ok(cmd)
				applyTime += time.Since(t0)
			}
			for start := 0; start < len(dels); start += 256 {
				batch := dels[start:min(len(dels), start+256)]
				for i := range batch {
					d, _ := h.f.State().Delivery(batch[i].DeliveryID)
					batch[i].Fence = d.Fence
				}
				cmd := must(b)(Encode(CmdDeliveryResults, DeliveryResults{At: at + 8, Results: batch}))
				t0 := time.Now()
				h.ok(cmd)
				applyTime += time.Since(t0)
			}
		}
		fired := float64(jobs * rounds)
		after := heapInUse()
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(applyTime.Microseconds())/fired, "applyµs/fire")
		b.ReportMetric(float64(after-before)/fired, "heapB/fire")
		b.ReportMetric(float64(ms.HeapObjects-objsBefore)/fired, "objs/fire")

		persist, size := persistSnapshot(b, h.f, b.TempDir()+"/snap")
		b.ReportMetric(float64(persist.Nanoseconds())/fired, "snapns/fire")
		b.ReportMetric(float64(size)/fired, "snapB/fire")
		runtime.KeepAlive(h)
	}
}
