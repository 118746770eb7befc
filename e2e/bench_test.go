package e2e

import (
	"context"
	"fmt"

	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBenchPipeline is the pipeline benchmark behind `make bench` (skipped
// unless CHIME_BENCH=1): a 3-node loopback cluster, N interval jobs created
// in parallel through every node, each firing every P seconds with phases
// spread evenly, delivering to a fast local receiver for D. It prints job
// creates per second with create latency, fires and deliveries per second,
// and the lateness (arrival minus Chime-Scheduled-For) percentiles. The
// budgets are in DESIGN.md; the figures go into docs/benchmarks.md.
//
//	CHIME_BENCH_JOBS (default 17000), CHIME_BENCH_PERIOD (10s), CHIME_BENCH_RUN (60s),
//	CHIME_BENCH_CLIENTS (96), CHIME_BENCH_PROFILE_DIR (unset: no profiles),
//	CHIME_BENCH_PROFILE_AT (when in the run the 20 s profiles start),
//	CHIME_BENCH_PROFILE_CREATES (seconds of the create phase to profile on
//	every node, plus the load generator for the whole phase; needs PROFILE_DIR)
func TestBenchPipeline(t *testing.T) {
	if os.Getenv("CHIME_BENCH") == "" {
		t.Skip("benchmark: run with make bench (CHIME_BENCH=1)")
	}
	jobs := envInt("CHIME_BENCH_JOBS", 17000) // 1,700 fires/s: DESIGN.md's 100,000 jobs once a minute
	period := envDuration("CHIME_BENCH_PERIOD", 10*time.Second)
	run := envDuration("CHIME_BENCH_RUN", time.Minute)

	rcv := newBenchReceiver(t)
	flags := []string{"--allow-private-targets", "--log-level", "warn"}
	if v := os.Getenv("CHIME_BENCH_FLAGS"); v != "" {
		flags = append(flags, strings.Fields(v)...)
	}
	profDir := os.Getenv("CHIME_BENCH_PROFILE_DIR") // CPU profiles of every node during the fire phase
	c := startClusterWith(t, 3, func(i int) []string {
		if profDir == "" {
			return flags
		}
		return append(slices.Clone(flags), "--debug-addr", fmt.Sprintf("127.0.0.1:%d", 6060+i))
	})
	ctx, cancel := context.WithTimeout(t.Context(), run+10*time.Minute)
	defer cancel()
	waitReady(ctx, t, 30*time.Second, c.procs...)
	waitLeader(ctx, t, 10*time.Second, c.procs, "")
	// The default limits protect a shared cluster (docs/operations.md,
	// "Limits"); a benchmark is one tenant asking for everything, through
	// the same admin API an operator uses.
	if code, b, err := c.procs[0].do(ctx, "PATCH", "/v1/projects/default/limits", map[string]any{
		"maxJobs": 0, "maxUndelivered": 0, "createsPerSecond": 0, "publishesPerSecond": 0,
	}, nil); err != nil || code != 200 {
		t.Fatalf("raise the benchmark project's limits: %d %s %v", code, b, err)
	}

	// Creates: concurrent clients (CHIME_BENCH_CLIENTS, default 96), round-robin over the nodes. The first
	// slot is far enough ahead that no job fires while others are created.
	start := time.Now().Add(time.Duration(jobs/1000+20) * time.Second).Truncate(time.Second)
	var next atomic.Int64
	clients := envInt("CHIME_BENCH_CLIENTS", 96)
	lat := make([][]time.Duration, clients)
	var failed atomic.Int64
	stopCreateProfiles := profileCreates(ctx, t, profDir, c.procs)
	cpu0 := readCPUTicks()
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= jobs {
					return
				}
				phase := time.Duration(int64(period) * int64(i) / int64(jobs))
				body := map[string]any{
					"callbackUrl": rcv.url, "recurrenceSeconds": int64(period / time.Second),
					"fireAtUtc": start.Add(phase).UTC().Format(time.RFC3339Nano),
				}
				s := time.Now()
				code, _, err := c.procs[i%3].do(ctx, "POST", "/v1/jobs", body, nil)
				lat[w] = append(lat[w], time.Since(s))
				if err != nil || code != 201 {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	createTook := time.Since(t0)
	cpu1 := readCPUTicks()
	stopCreateProfiles()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d creates failed", f, jobs)
	}
	if time.Now().After(start) {
		t.Fatalf("creating %d jobs took %s, past the first slot", jobs, createTook)
	}
	t.Logf("BENCH creates: %d jobs by %d clients in %s = %.0f/s through 3 nodes, latency p50 %s p99 %s max %s",
		jobs, clients, createTook.Round(time.Millisecond), float64(jobs)/createTook.Seconds(),
		pct(all, 50), pct(all, 99), all[len(all)-1].Round(time.Millisecond))
	if cpu0 != nil && cpu1 != nil {
		// Machine-wide, so it counts the kernel's share (loopback TCP,
		// fsync) that the processes' own profiles miss, and the load
		// generator too. Far steadier than the rate on a shared machine.
		user, sys := float64(cpu1[0]-cpu0[0])/100, float64(cpu1[1]-cpu0[1])/100
		t.Logf("BENCH creates cpu: %.2f core-s (user %.2f, system %.2f) = %.0f µs of CPU per create, machine busy %.0f%%",
			user+sys, user, sys, (user+sys)*1e6/float64(jobs), 100*(user+sys)/createTook.Seconds()/float64(runtime.NumCPU()))
	}

	// Fires: measure from one period after the start (steady state) for run.
	sleepCtx(ctx, time.Until(start.Add(period)))
	rcv.reset()
	from := time.Now()
	if profDir != "" {
		at := envDuration("CHIME_BENCH_PROFILE_AT", time.Millisecond) // into the measured run
		for i, p := range c.procs {
			go saveProfile(ctx, t, at, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=20", 6060+i+1), fmt.Sprintf("%s/%s.pprof", profDir, p.id))
		}
	}
	sleepCtx(ctx, run)
	n, late := rcv.snapshot()
	took := time.Since(from)
	expected := float64(jobs) * took.Seconds() / period.Seconds()
	t.Logf("BENCH fires: %d jobs every %s for %s: %d deliveries = %.0f/s (expected %.0f/s), lateness p50 %s p90 %s p99 %s max %s",
		jobs, period, took.Round(time.Millisecond), n, float64(n)/took.Seconds(), expected/took.Seconds(),
		pct(late, 50), pct(late, 90), pct(late, 99), late[len(late)-1].Round(time.Millisecond))
	t.Logf("BENCH timeline: %s", rcv.timeline(from))
	if float64(n) < 0.95*expected {
		t.Errorf("only %d deliveries of about %.0f due", n, expected)
	}
}

// profileCreates starts CPU profiles of the create phase when
// CHIME_BENCH_PROFILE_CREATES gives their length in seconds: every node's
// (create-<node>.pprof) over that many seconds, and this process's
// (create-client.pprof, the load generator) until the returned stop. The
// client is in the picture because it shares the two cores with the nodes.
func profileCreates(ctx context.Context, t *testing.T, dir string, procs []*proc) (stop func()) {
	secs := envInt("CHIME_BENCH_PROFILE_CREATES", 0)
	if dir == "" || secs == 0 {
		return func() {}
	}
	for i, p := range procs {
		go saveProfile(ctx, t, 0, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", 6060+i+1, secs), fmt.Sprintf("%s/create-%s.pprof", dir, p.id))
	}
	f, err := os.Create(dir + "/create-client.pprof")
	if err != nil {
		t.Logf("client profile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Logf("client profile: %v", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// readCPUTicks returns the machine's user (with nice) and system (with irq
// and softirq) CPU time from /proc/stat, in USER_HZ ticks (100 a second on
// Linux), or nil where there is no /proc/stat.
func readCPUTicks() []uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq ...
	if len(f) < 8 || f[0] != "cpu" {
		return nil
	}
	n := make([]uint64, 8)
	for i := 1; i < 8; i++ {
		n[i], _ = strconv.ParseUint(f[i], 10, 64)
	}
	return []uint64{n[1] + n[2], n[3] + n[6] + n[7]}
}

func saveProfile(ctx context.Context, t *testing.T, after time.Duration, url, path string) {
	sleepCtx(ctx, after)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Logf("profile %s: %v", url, err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		t.Logf("profile %s: %v", path, err)
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}

type benchReceiver struct {
	url     string
	mu      sync.Mutex
	late    []time.Duration
	arrived []time.Time // parallel to late
}

func newBenchReceiver(t *testing.T) *benchReceiver {
	r := &benchReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		now := time.Now()
		io.Copy(io.Discard, req.Body)
		if at, err := time.Parse(time.RFC3339Nano, req.Header.Get("Chime-Scheduled-For")); err == nil {
			r.mu.Lock()
			r.late = append(r.late, now.Sub(at))
			r.arrived = append(r.arrived, now)
			r.mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	r.url = "http://" + ln.Addr().String() + "/hook"
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *benchReceiver) reset() {
	r.mu.Lock()
	r.late, r.arrived = r.late[:0], r.arrived[:0]
	r.mu.Unlock()
}

// timeline is the deliveries and p99 lateness of each 5 s window since from:
// a steady climb means the cluster falls behind, spikes mean stalls.
func (r *benchReceiver) timeline(from time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	buckets := map[int][]time.Duration{}
	last := 0
	for i, at := range r.arrived {
		b := int(at.Sub(from) / (5 * time.Second))
		buckets[b] = append(buckets[b], r.late[i])
		last = max(last, b)
	}
	var out []string
	for b := 0; b <= last; b++ {
		l := buckets[b]
		slices.Sort(l)
		out = append(out, fmt.Sprintf("+%ds n=%d p99=%s", b*5, len(l), pct(l, 99)))
	}
	return strings.Join(out, " | ")
}

func (r *benchReceiver) snapshot() (int, []time.Duration) {
	r.mu.Lock()
	out := slices.Clone(r.late)
	r.mu.Unlock()
	slices.Sort(out)
	n := len(out)
	if n == 0 {
		out = []time.Duration{0} // so that percentiles and the max read a zero
	}
	return n, out
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)].Round(time.Millisecond)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestBenchFanout measures deliveries per second across the cluster: events
// published at a steady rate through every node, each fanned out to
// CHIME_BENCH_ENDPOINTS endpoints (default 10) on the fast local receiver.
//
//	CHIME_BENCH_EVENTS_PER_S (default 300), CHIME_BENCH_RUN (60s)
func TestBenchFanout(t *testing.T) {
	if os.Getenv("CHIME_BENCH") == "" {
		t.Skip("benchmark: run with make bench (CHIME_BENCH=1)")
	}
	endpoints := envInt("CHIME_BENCH_ENDPOINTS", 10)
	// 350 events to 10 endpoints offer 3,500 deliveries a second: above the
	// 3,000/s budget, so the figure shows whether the cluster keeps up with
	// more than the budget, not merely with exactly it.
	rate := envInt("CHIME_BENCH_EVENTS_PER_S", 350)
	run := envDuration("CHIME_BENCH_RUN", time.Minute)
	rcv := newBenchReceiver(t)
	c := startCluster(t, 3, "--allow-private-targets", "--log-level", "warn")
	ctx, cancel := context.WithTimeout(t.Context(), run+5*time.Minute)
	defer cancel()
	waitReady(ctx, t, 30*time.Second, c.procs...)
	waitLeader(ctx, t, 10*time.Second, c.procs, "")
	for i := range endpoints {
		code, body, err := c.procs[0].do(ctx, "POST", "/v1/endpoints", map[string]any{
			"url": rcv.url, "eventTypes": []string{"order.*"}, "description": fmt.Sprintf("bench %d", i)}, nil)
		if err != nil || code != 201 {
			t.Fatalf("create endpoint: %d %v %s", code, err, body)
		}
	}
	time.Sleep(time.Second) // every node has the endpoints

	// Publish at a steady rate from 16 workers; each event is due at once.
	var published, failed atomic.Int64
	from := time.Now()
	tick := time.Second / time.Duration(rate)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for k := 0; ; k++ {
				due := from.Add(time.Duration(k*16+w) * tick)
				if due.Sub(from) >= run {
					return
				}
				sleepCtx(ctx, time.Until(due))
				code, _, err := c.procs[(k+w)%3].do(ctx, "POST", "/v1/events", map[string]any{"type": "order.paid", "data": map[string]any{"k": k}}, nil)
				if err != nil || code != 202 {
					failed.Add(1)
					continue
				}
				published.Add(1)
			}
		})
	}
	wg.Wait()
	want := int(published.Load()) * endpoints
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if n, _ := rcv.snapshot(); n >= want {
			break
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	n, late := rcv.snapshot()
	if n == 0 {
		t.Fatalf("no delivery arrived (%d events published)", published.Load())
	}
	rcv.mu.Lock()
	lastArrival := rcv.arrived[len(rcv.arrived)-1]
	rcv.mu.Unlock()
	took := lastArrival.Sub(from)
	t.Logf("BENCH fanout: %d events (%d/s offered, %d failed) × %d endpoints: %d of %d deliveries in %s = %.0f/s, lateness p50 %s p90 %s p99 %s max %s",
		published.Load(), rate, failed.Load(), endpoints, n, want, took.Round(time.Millisecond), float64(n)/took.Seconds(),
		pct(late, 50), pct(late, 90), pct(late, 99), late[len(late)-1].Round(time.Millisecond))
	t.Logf("BENCH fanout timeline: %s", rcv.timeline(from))
	if n < want {
		t.Errorf("%d of %d deliveries arrived", n, want)
	}
}
