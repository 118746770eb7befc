package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chime-sched/chime/fsm"
)

// TestFaultBackupRestore is scenario 7: under the workload, a backup is
// taken with `chime snapshot save` through a follower; the whole cluster is
// stopped, every data dir deleted and the nodes started again as a fresh
// cluster, which gets the backup with `chime snapshot restore` (through a
// follower as well) while the workload's writes keep coming. Then:
//
//   - every object in the backup file (read here with the fsm package) is on
//     every node with the same id: jobs, occurrences, events, endpoints,
//     deliveries, tokens; every write acknowledged before the save began is
//     in the file; a token made before the backup works again;
//   - what the fresh cluster was given before the restore (the workload's
//     writes, a token) is gone: a restore replaces the whole state;
//   - the recurring jobs fire on: the slots missed while the cluster was
//     down are caught up (the outage is shorter than the 60 s misfire
//     grace, so each one fires once) and new slots fire, all delivered to
//     the same receiver with valid signatures (the restored jobs and
//     endpoints keep their secrets);
//   - faultRun.check, over the writes acknowledged before the backup and
//     those acknowledged after the restore.
//
// The fresh cluster runs on the old nodes' ids, ports and cluster key, so the
// workload's stream, which only knows those nodes, goes on writing through
// the outage and the restore. A write that races the restore may be refused
// with a 5xx or 409 and retried; any other 4xx fails the workload.
func TestFaultBackupRestore(t *testing.T) {
	if os.Getenv("CHIME_CHAOS") == "" {
		t.Skip("scenario 7 (backup, wipe, restore) runs in make chaos (set CHIME_CHAOS=1)")
	}
	needBinary(t)
	testStart := time.Now()
	run := 50 * time.Second
	r := newFaultRun(t, "backup-restore workload", 3, run)
	// The whole test, not only the run, within 3 minutes (the stream has its
	// own, longer context; it only writes, and stops at the end of the run).
	ctx, cancel := context.WithDeadline(r.ctx, testStart.Add(3*time.Minute))
	defer cancel()
	r.ctx = ctx
	file := filepath.Join(t.TempDir(), "chime.snap")

	// A token made before the backup must work again after the restore.
	oldTok := createTokenVia(ctx, t, r.leader(), "made-before-backup")

	// 1. The backup, through a follower, while the stream writes.
	r.at(10 * time.Second)
	leader := r.leader()
	saveVia := r.c.others(leader.id)[0]
	jobsBeforeSave, eventsBeforeSave := r.wl.counts()
	saveStart := time.Now()
	out, saveTook := chimeCLI(ctx, t, saveVia, "snapshot", "save", file, "--json")
	var saved struct {
		Bytes int64 `json:"bytes"`
	}
	if err := json.Unmarshal([]byte(out), &saved); err != nil {
		t.Fatalf("snapshot save --json: %v: %q", err, out)
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() != saved.Bytes {
		t.Fatalf("snapshot save reported %d bytes; the file: %v %v", saved.Bytes, fi, err)
	}
	backup := readBackup(t, file)
	r.note("saved %d bytes through %s (follower; %s leads) in %s: index %d, %d objects",
		saved.Bytes, saveVia.id, leader.id, saveTook.Round(time.Millisecond), backup.hdr.Index, backup.objects())

	// Every write acknowledged before the save began is in the file.
	jobs, events := r.wl.acked()
	var notSaved []string
	for _, j := range jobs[:jobsBeforeSave] {
		if _, ok := backup.jobs[j.id]; !ok {
			notSaved = append(notSaved, "job "+j.id)
		}
	}
	for _, e := range events[:eventsBeforeSave] {
		if _, ok := backup.events[e.id]; !ok {
			notSaved = append(notSaved, "event "+e.id)
		}
	}
	if len(backup.endpoints) != 2 {
		notSaved = append(notSaved, fmt.Sprintf("%d endpoints, want the workload's 2", len(backup.endpoints)))
	}
	if _, ok := backup.tokens[oldTok.id]; !ok {
		notSaved = append(notSaved, "token "+oldTok.id)
	}
	if len(notSaved) > 0 {
		t.Fatalf("the backup lacks %d writes acknowledged before it began, e.g. %s", len(notSaved), strings.Join(notSaved[:min(len(notSaved), 10)], ", "))
	}

	// 2. The old cluster goes on for a moment (what it does now is lost
	// with it), then it is stopped and every data dir deleted.
	sleepCtx(ctx, 2*time.Second)
	for _, p := range r.c.procs {
		p.TermAsync()
	}
	for _, p := range r.c.procs {
		if code := p.WaitExit(30 * time.Second); code != 0 {
			t.Errorf("%s: exit code %d after SIGTERM", p.id, code)
		}
	}
	stopped := time.Now()
	jobsAtStop, eventsAtStop := r.wl.counts()
	for _, p := range r.c.procs {
		if err := os.RemoveAll(p.dataDir); err != nil {
			t.Fatal(err)
		}
	}
	r.note("SIGTERM all, data dirs deleted")

	// 3. A fresh cluster on the same ports, ids and receiver; the
	// workload's stream writes to it as soon as it is up.
	restartAll(r.c)
	took := waitReady(ctx, t, 30*time.Second, r.c.procs...)
	leader = r.leader()
	r.note("fresh cluster ready after %s, %s leads", took.Round(time.Millisecond), leader.id)
	waitFor(ctx, t, 10*time.Second, "the fresh cluster to be empty", func(ctx context.Context) (bool, string) {
		eps, err := listAll[struct {
			ID string `json:"id"`
		}](ctx, leader, "/v1/endpoints")
		if err != nil {
			return false, err.Error()
		}
		return len(eps) == 0, fmt.Sprintf("%d endpoints", len(eps))
	})
	freshTok := createTokenVia(ctx, t, leader, "made-before-restore")
	waitFor(ctx, t, 10*time.Second, "the workload to write to the fresh cluster", func(context.Context) (bool, string) {
		j, e := r.wl.counts()
		n := j - jobsAtStop + e - eventsAtStop
		return n >= 4, fmt.Sprintf("%d writes acknowledged", n)
	})

	// 4. The restore, through a follower of the fresh cluster.
	restoreVia := r.c.others(leader.id)[0]
	jobsBeforeRestore, eventsBeforeRestore := r.wl.counts()
	restoreStart := time.Now()
	out, restoreTook := chimeCLI(ctx, t, restoreVia, "snapshot", "restore", file, "--yes", "--json")
	restoreEnd := time.Now()
	var restored struct {
		Restored     bool   `json:"restored"`
		AppliedIndex uint64 `json:"appliedIndex"`
		DurationMs   int64  `json:"durationMs"`
	}
	if err := json.Unmarshal([]byte(out), &restored); err != nil || !restored.Restored {
		t.Fatalf("snapshot restore --json: %v: %q", err, out)
	}
	r.clusterBack(restoreEnd)
	if down := restoreEnd.Sub(saveStart); down > 45*time.Second {
		// The checker expects every slot to fire once: true only while the
		// outage is shorter than the default misfire grace (60 s).
		t.Fatalf("%s from the backup to the end of the restore: too long for this scenario's checks", down.Round(time.Millisecond))
	}
	r.note("restored through %s (follower; %s leads) in %s (server %d ms), applied index %d; %s after the stop",
		restoreVia.id, leader.id, restoreTook.Round(time.Millisecond), restored.DurationMs, restored.AppliedIndex, restoreEnd.Sub(stopped).Round(time.Millisecond))

	// 5. Everything in the backup is back on every node, with its id, and
	// what the fresh cluster held before the restore is gone.
	jobs, events = r.wl.acked()
	gone := goneAfterRestore{token: freshTok.id}
	for _, j := range jobs[jobsAtStop:jobsBeforeRestore] {
		gone.jobs = append(gone.jobs, j.id)
	}
	for _, e := range events[eventsAtStop:eventsBeforeRestore] {
		gone.events = append(gone.events, e.id)
	}
	backOnAll := backup.waitOnEveryNode(ctx, t, r.c.procs, gone)
	for _, p := range r.c.procs {
		waitFor(ctx, t, 10*time.Second, "the restored token to work on "+p.id, func(ctx context.Context) (bool, string) {
			code, why := tokenStatus(ctx, p, oldTok.secret)
			return code == http.StatusOK, why
		})
		waitFor(ctx, t, 10*time.Second, "the fresh cluster's token to be refused on "+p.id, func(ctx context.Context) (bool, string) {
			code, why := tokenStatus(ctx, p, freshTok.secret)
			if code == http.StatusOK {
				t.Fatalf("%s: the token made in the fresh cluster before the restore still works", p.id)
			}
			return code == http.StatusUnauthorized, why // a 503 while the node catches up is no answer
		})
	}
	r.note("every backed-up object on every node %s after the restore returned", backOnAll.Round(time.Millisecond))

	// Writes acknowledged from here on were sent after the restore (each try
	// lasts at most 5 s); they must be kept like any other.
	sleepCtx(ctx, time.Until(restoreEnd.Add(6*time.Second)))
	jobsAfterRestore, eventsAfterRestore := r.wl.counts()

	// 6. The run ends; the checker judges the writes acknowledged before
	// the backup and after the restore. Those in between (acknowledged by
	// the old cluster during or after the save, or by the fresh one before
	// the restore) may or may not exist, as the client could know.
	// (Past the end: the last slot is due at the very end of the run.)
	r.at(run + 2*time.Second)
	select {
	case <-r.streamDone:
	case <-ctx.Done():
		t.Fatal("the workload's stream did not end")
	}
	waitReady(ctx, t, 30*time.Second, r.c.procs...)
	r.wl.mu.Lock()
	between := len(r.wl.jobs[jobsBeforeSave:jobsAfterRestore]) + len(r.wl.events[eventsBeforeSave:eventsAfterRestore])
	r.wl.jobs = slices.Concat(r.wl.jobs[:jobsBeforeSave], r.wl.jobs[jobsAfterRestore:])
	r.wl.events = slices.Concat(r.wl.events[:eventsBeforeSave], r.wl.events[eventsAfterRestore:])
	r.wl.mu.Unlock()
	r.check()

	// 7. The fires after the restore: catch-ups of the slots missed during
	// the outage, new slots, and their deliveries.
	leader = r.leader()
	var firstFire, firstDelivery time.Time
	catchUps, newSlots, sent := 0, 0, 0
	perJob := map[string]int{}
	var late []time.Duration // of the new slots: fired at - scheduled for
	for id := range backup.jobs {
		occs, err := listAll[occurrenceJSON](ctx, leader, "/v1/jobs/"+id+"/occurrences")
		if err != nil {
			t.Fatalf("occurrences of %s: %v", id, err)
		}
		for _, o := range occs {
			if o.FiredAt.Before(restoreStart) {
				continue
			}
			if firstFire.IsZero() || o.FiredAt.Before(firstFire) {
				firstFire = o.FiredAt
			}
			if o.ScheduledFor.After(restoreEnd) {
				newSlots++
				perJob[id]++
				late = append(late, o.FiredAt.Sub(o.ScheduledFor))
			} else {
				catchUps++
			}
			if at, ok := r.rcv.arrival(pathCallback + " " + o.IdempotencyKey); ok && at.After(restoreStart) {
				sent++
				if firstDelivery.IsZero() || at.Before(firstDelivery) {
					firstDelivery = at
				}
			}
		}
	}
	if firstFire.IsZero() {
		t.Fatal("no backed-up job fired after the restore")
	}
	for _, j := range jobs {
		if _, ok := j.spec["recurrenceSeconds"]; ok && j.created.Before(restoreStart) && perJob[j.id] < 5 {
			t.Errorf("every-second job %s: %d occurrences for slots after the restore, want at least 5", j.id, perJob[j.id])
		}
	}
	endpointCalls := r.rcv.newKeysAfter(restoreStart, pathAll, pathTick)
	for _, path := range []string{pathAll, pathTick} {
		if endpointCalls[path] == 0 {
			t.Errorf("no delivery to the restored endpoint %s after the restore", path)
		}
	}
	r.wl.mu.Lock()
	lost := len(r.wl.lost)
	r.wl.mu.Unlock()

	t.Logf("FAULT backup-restore: %d objects backed up (%s) at index %d, snapshot %d bytes, saved through %s in %s under load; "+
		"restored through %s in %s (server %d ms), %s after the stop; every backed-up object on all %d nodes %s after the restore; "+
		"%d jobs + %d events acknowledged before the backup all back, %d acknowledged by the fresh cluster before the restore all gone "+
		"(%d acknowledged in between not judged, %d never acknowledged); first fire %s after the restore began, first callback %s; "+
		"after the restore %d occurrences of backed-up jobs (%d catch-ups of slots missed while down, %d new slots fired late by %s), %d callbacks, endpoint calls %d %s + %d %s, bad signatures %d",
		backup.objects(), backup.countsString(), backup.hdr.Index, saved.Bytes, saveVia.id, saveTook.Round(time.Millisecond),
		restoreVia.id, restoreTook.Round(time.Millisecond), restored.DurationMs, restoreEnd.Sub(stopped).Round(time.Millisecond),
		len(r.c.procs), backOnAll.Round(time.Millisecond),
		jobsBeforeSave, eventsBeforeSave, len(gone.jobs)+len(gone.events), between, lost,
		firstFire.Sub(restoreStart).Round(10*time.Millisecond), since(restoreStart, firstDelivery),
		catchUps+newSlots, catchUps, newSlots, lateness(late), sent, endpointCalls[pathAll], pathAll, endpointCalls[pathTick], pathTick,
		len(r.rcv.figures().badSig))
}

// since is how long after from at came, or "never" for a zero at.
func since(from, at time.Time) string {
	if at.IsZero() {
		return "never"
	}
	return at.Sub(from).Round(10 * time.Millisecond).String()
}

// counts is how many jobs and events have been acknowledged so far; the
// acknowledged lists only grow, in the order of the acknowledgements.
func (w *workload) counts() (int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.jobs), len(w.events)
}

// arrival is the first arrival of path + " " + key at the receiver.
func (r *faultReceiver) arrival(key string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.keys[key]
	return at, ok
}

// newKeysAfter counts, per path, the keys that first arrived after t.
func (r *faultReceiver) newKeysAfter(t time.Time, paths ...string) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, at := range r.keys {
		path, _, _ := strings.Cut(k, " ")
		if at.After(t) && slices.Contains(paths, path) {
			out[path]++
		}
	}
	return out
}

// chimeCLI runs the chime command against p with the admin token (through
// CHIME_ADDR and CHIME_TOKEN, as an operator would) and returns its stdout
// and how long it took; it fails the test unless the command exits 0.
func chimeCLI(ctx context.Context, t *testing.T, p *proc, args ...string) (string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chimeBin, args...)
	cmd.Env = append(agentEnv(), "CHIME_ADDR=http://"+p.http, "CHIME_TOKEN="+rootToken)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("chime %s (CHIME_ADDR=%s): %v after %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), p.http, err, took.Round(time.Millisecond), stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String(), took
}

type apiToken struct{ id, secret string }

// createTokenVia makes a read-scoped token through p.
func createTokenVia(ctx context.Context, t *testing.T, p *proc, name string) apiToken {
	t.Helper()
	var out struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	var tok apiToken
	waitFor(ctx, t, 15*time.Second, "a token through "+p.id, func(ctx context.Context) (bool, string) {
		code, b, err := p.do(ctx, http.MethodPost, "/v1/tokens", map[string]any{"name": name, "scopes": []string{"read"}}, &out)
		if err != nil || code != http.StatusCreated {
			return false, fmt.Sprintf("%d %v %s", code, err, b)
		}
		tok = apiToken{id: out.ID, secret: out.Token}
		return true, ""
	})
	return tok
}

// tokenStatus reads the job list on p with secret instead of the root
// token, and returns the HTTP status (0 without an answer) and why.
func tokenStatus(ctx context.Context, p *proc, secret string) (int, string) {
	code, b, err := p.doHeaders(ctx, http.MethodGet, "/v1/jobs?limit=1", map[string]string{"Authorization": "Bearer " + secret}, nil, nil)
	if err != nil {
		return 0, err.Error()
	}
	return code, fmt.Sprintf("HTTP %d %s", code, bytes.TrimSpace(b))
}

// backupContents is what a snapshot file holds, read by restoring it into
// an FSM of the test's own.
type backupContents struct {
	hdr         fsm.SnapshotHeader
	jobs        map[string]string   // id → name
	occurrences map[string][]string // job id → occurrence ids
	events      map[string]string   // id → type
	endpoints   map[string]string   // id → url
	deliveries  map[string]bool
	tokens      map[string]string // id → name
}

func readBackup(t *testing.T, path string) *backupContents {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr, err := fsm.ReadSnapshotHeader(f)
	if err != nil {
		t.Fatalf("the backup's header: %v", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	m := fsm.New(slog.New(slog.DiscardHandler))
	if err := m.Restore(f); err != nil {
		t.Fatalf("the backup does not load: %v", err)
	}
	st := m.State()
	b := &backupContents{hdr: hdr, jobs: map[string]string{}, occurrences: map[string][]string{}, events: map[string]string{},
		endpoints: map[string]string{}, deliveries: map[string]bool{}, tokens: map[string]string{}}
	jobs, _ := st.Jobs("", "", 0)
	for _, j := range jobs {
		b.jobs[j.ID] = j.Name
		occs, _ := st.OccurrencesByJob(j.ID, 0, 0)
		for _, o := range occs {
			b.occurrences[j.ID] = append(b.occurrences[j.ID], o.ID)
		}
	}
	evs, _ := st.Events("", "", 0)
	for _, e := range evs {
		b.events[e.ID] = e.Type
	}
	eps, _ := st.Endpoints("", "", 0)
	for _, e := range eps {
		b.endpoints[e.ID] = e.URL
	}
	ds, _ := st.DeliveriesMatching(fsm.DeliveryFilter{}, "", 0)
	for _, d := range ds {
		b.deliveries[d.ID] = true
	}
	toks, _ := st.Tokens("", "", 0)
	for _, tk := range toks {
		b.tokens[tk.ID] = tk.Name
	}
	occurrences := 0
	for _, o := range b.occurrences {
		occurrences += len(o)
	}
	for table, n := range map[string]int{fsm.TableJobs: len(b.jobs), fsm.TableOccurrences: occurrences, fsm.TableEvents: len(b.events),
		fsm.TableEndpoints: len(b.endpoints), fsm.TableDeliveries: len(b.deliveries), fsm.TableTokens: len(b.tokens)} {
		if hdr.Counts[table] != n {
			t.Fatalf("the backup's header counts %d %s, its records %d", hdr.Counts[table], table, n)
		}
	}
	return b
}

func (b *backupContents) objects() int {
	n := 0
	for _, c := range b.hdr.Counts {
		n += c
	}
	return n
}

func (b *backupContents) countsString() string {
	var parts []string
	for _, table := range sortedKeys(b.hdr.Counts) {
		parts = append(parts, fmt.Sprintf("%s %d", table, b.hdr.Counts[table]))
	}
	return strings.Join(parts, ", ")
}

// goneAfterRestore is what the fresh cluster acknowledged before the
// restore: the restore must have removed it.
type goneAfterRestore struct {
	jobs, events []string
	token        string
}

// waitOnEveryNode waits until each node's own state (local reads) holds
// every object of the backup with the same id (and name, type or url), and
// none of gone; it returns how long that took.
func (b *backupContents) waitOnEveryNode(ctx context.Context, t *testing.T, ps []*proc, gone goneAfterRestore) time.Duration {
	t.Helper()
	start := time.Now()
	for _, p := range ps {
		waitFor(ctx, t, 30*time.Second, "every backed-up object on "+p.id, func(ctx context.Context) (bool, string) {
			if why := b.missingOn(ctx, p, gone); why != "" {
				return false, why
			}
			return true, ""
		})
	}
	return time.Since(start)
}

// missingOn is "" when p holds the backup and none of gone, else what is wrong.
func (b *backupContents) missingOn(ctx context.Context, p *proc, gone goneAfterRestore) string {
	type named struct {
		ID   string `json:"id"`
		Name string `json:"name"`
		URL  string `json:"url"`
		Type string `json:"type"`
	}
	var bad []string
	add := func(format string, args ...any) bool {
		bad = append(bad, fmt.Sprintf(format, args...))
		return len(bad) < 10
	}
	jobs, err := listAll[named](ctx, p, "/v1/jobs")
	if err != nil {
		return err.Error()
	}
	have := map[string]string{}
	for _, j := range jobs {
		have[j.ID] = j.Name
	}
	for id, name := range b.jobs {
		if got, ok := have[id]; !ok || got != name {
			if !add("job %s (%q): %q, present %v", id, name, got, ok) {
				break
			}
		}
	}
	for _, id := range gone.jobs {
		if _, ok := have[id]; ok {
			add("job %s, made by the fresh cluster before the restore, is still there", id)
		}
	}
	eps, err := listAll[named](ctx, p, "/v1/endpoints")
	if err != nil {
		return err.Error()
	}
	if len(eps) != len(b.endpoints) {
		add("%d endpoints, the backup has %d", len(eps), len(b.endpoints))
	}
	for _, e := range eps {
		if b.endpoints[e.ID] != e.URL {
			add("endpoint %s (%s): the backup has %q", e.ID, e.URL, b.endpoints[e.ID])
		}
	}
	toks, err := listAll[named](ctx, p, "/v1/tokens")
	if err != nil {
		return err.Error()
	}
	haveTok := map[string]bool{}
	for _, tk := range toks {
		haveTok[tk.ID] = true
	}
	for id := range b.tokens {
		if !haveTok[id] {
			add("token %s", id)
		}
	}
	if haveTok[gone.token] {
		add("token %s, made by the fresh cluster before the restore, is still listed", gone.token)
	}
	if len(bad) > 0 {
		return strings.Join(bad, "; ")
	}
	ds, err := listAll[named](ctx, p, "/v1/deliveries")
	if err != nil {
		return err.Error()
	}
	haveDlv := map[string]bool{}
	for _, d := range ds {
		haveDlv[d.ID] = true
	}
	for id := range b.deliveries {
		if !haveDlv[id] && !add("delivery %s", id) {
			break
		}
	}
	for jobID, want := range b.occurrences {
		if len(bad) > 0 {
			break
		}
		occs, err := listAll[named](ctx, p, "/v1/jobs/"+jobID+"/occurrences")
		if err != nil {
			return err.Error()
		}
		haveOcc := map[string]bool{}
		for _, o := range occs {
			haveOcc[o.ID] = true
		}
		for _, id := range want {
			if !haveOcc[id] {
				add("occurrence %s of job %s", id, jobID)
			}
		}
	}
	for id, typ := range b.events {
		if len(bad) > 0 {
			break
		}
		var e named
		code, body, err := p.do(ctx, http.MethodGet, "/v1/events/"+id, nil, &e)
		if err != nil || code != http.StatusOK || e.Type != typ {
			add("event %s (%s): %d %v %s", id, typ, code, err, bytes.TrimSpace(body))
		}
	}
	for _, id := range gone.events {
		if len(bad) > 0 {
			break
		}
		code, _, err := p.do(ctx, http.MethodGet, "/v1/events/"+id, nil, nil)
		if err != nil || code != http.StatusNotFound {
			add("event %s, published to the fresh cluster before the restore: %d %v, want 404", id, code, err)
		}
	}
	return strings.Join(bad, "; ")
}

// lateness is the median and the largest of ds.
func lateness(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	slices.Sort(ds)
	return fmt.Sprintf("median %s, max %s", ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
}
