package scheduler

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/hashicorp/go-memdb"
)

// The leader-only poller: it turns due jobs and due events into occurrences
// and placed deliveries, one Raft command per tick (chunked), and prunes old
// history. It decides; the FSM checks each decision against the state it is
// applied to (per-job compare-and-set, unique slot keys), so a decision taken
// from a stale read is refused and simply planned again.

// Poller limits.
const (
	DefaultPollInterval = time.Second
	DefaultRetention    = 30 * 24 * time.Hour // 002
	// maxDuePerTick bounds one tick's read; what is left is due at once and
	// taken by the next tick.
	maxDuePerTick = 2000
	// maxChunkBytes and maxChunkItems bound one Fire command, so that a tick
	// with thousands of fires does not become one huge log entry.
	maxChunkBytes = 512 << 10
	maxChunkItems = 500
	// compileCacheSize bounds the compiled-schedule cache (entries are
	// dropped wholesale when it is full: compiling again is cheap).
	compileCacheSize = 50_000
	pruneEvery       = time.Minute
	pruneLimit       = 5000
)

// Cluster is what the poller needs from the replicated core.
type Cluster interface {
	FSM() *fsm.FSM
	Apply(ctx context.Context, cmd []byte) (*fsm.Result, error)
	DeliveryNodes() []string
}

// PollerConfig configures a Poller; zero values take the defaults.
type PollerConfig struct {
	Interval  time.Duration // the longest sleep between ticks (--poll-interval)
	Retention time.Duration // terminal history older than this is pruned (--retention); <0 disables
	Schedule  Config
	Now       func() time.Time
	Logger    *slog.Logger
}

// Poller is a cluster.LeaderHook.
type Poller struct {
	c      Cluster
	cfg    PollerConfig
	logger *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}

	cache map[string]cachedSchedule // by job id; only the loop goroutine uses it
}

type cachedSchedule struct {
	spec  []byte
	setAt fsm.Millis
	sch   *Schedule
}

// NewPoller returns a stopped poller.
func NewPoller(c Cluster, cfg PollerConfig) *Poller {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultPollInterval
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Schedule == (Config{}) {
		cfg.Schedule = DefaultConfig()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Poller{c: c, cfg: cfg, logger: cfg.Logger.With("component", "poller"), cache: map[string]cachedSchedule{}}
}

// EstablishLeadership starts the loop; the cluster calls it after Barrier.
func (p *Poller) EstablishLeadership(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go p.run(ctx, p.done)
	p.logger.Info("poller started", "interval", p.cfg.Interval)
	return nil
}

// RevokeLeadership stops the loop and waits for it, so that nothing fires
// from this node once it returns.
func (p *Poller) RevokeLeadership() {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.cancel, p.done = nil, nil
	p.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
	p.logger.Info("poller stopped")
}

func (p *Poller) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	lastPrune := time.Time{}
	for ctx.Err() == nil {
		now := p.cfg.Now()
		st := p.c.FSM().State()
		progress, more := p.tick(ctx, st, now)
		if now.Sub(lastPrune) >= pruneEvery {
			lastPrune = now
			p.prune(ctx, now)
		}
		if more && progress {
			continue // more is due right now
		}
		p.wait(ctx, p.c.FSM().State(), !progress)
	}
}

// wait sleeps until the next due job or event, the poll interval, or a
// change of the jobs or events that could make something due sooner.
// backoff: the last tick had due work but could not apply any of it (the
// leader cannot commit, or a stored schedule is broken): sleep the whole
// interval, or until the state changes, rather than spin.
func (p *Poller) wait(ctx context.Context, st *fsm.State, backoff bool) {
	now := p.cfg.Now()
	d := p.cfg.Interval
	ws := memdb.NewWatchSet()
	ws.Add(st.AbandonCh())
	if !backoff {
		if at, ok := st.NextFireAt(); ok {
			d = min(d, at.Time().Sub(now))
		}
		if evs := st.EventsDue(fsm.Millis(1<<62), 1); len(evs) > 0 {
			d = min(d, evs[0].ScheduledAt.Time().Sub(now))
		}
	}
	for _, tbl := range [...][2]string{{fsm.TableJobs, fsm.IndexNextFire}, {fsm.TableEvents, fsm.IndexDue}} {
		if it, err := st.Txn().Get(tbl[0], tbl[1]); err == nil {
			ws.Add(it.WatchCh())
		}
	}
	if d <= 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	_ = ws.WatchCtx(wctx)
}

// tick plans everything due at now and applies it. progress: at least one
// item was applied (or nothing was due); more: the read was cut at the limit
// or an item must be planned again.
func (p *Poller) tick(ctx context.Context, st *fsm.State, now time.Time) (progress, more bool) {
	at := fsm.MillisOf(now)
	jobs := st.JobsDue(at, maxDuePerTick)
	events := st.EventsDue(at, maxDuePerTick)
	if len(jobs) == 0 && len(events) == 0 {
		return true, false
	}
	f := newFanout(st, p.c.DeliveryNodes(), now)
	var b chunker
	for _, job := range jobs {
		if jf, ok := p.plan(f, job, now); ok {
			b.add(&jf, nil)
		}
	}
	for _, ev := range events {
		b.add(nil, &fsm.EventFire{EventID: ev.ID, IfIndex: ev.ModifyIndex, Deliveries: f.eventDeliveries(ev)})
	}
	more = len(jobs) == maxDuePerTick || len(events) == maxDuePerTick
	for _, c := range b.done() {
		c.At = at
		applied, retry := p.apply(ctx, c)
		progress = progress || applied > 0
		more = more || retry
	}
	return progress, more
}

// plan decides one due job at now; false when there is nothing to write.
func (p *Poller) plan(f *fanout, job *fsm.Job, now time.Time) (fsm.JobFire, bool) {
	sch, err := p.compile(job)
	if err != nil {
		// A stored schedule that does not compile cannot fire. Take the job
		// out of the due index (no next fire) rather than skip it every
		// tick: left there, it would keep the poller awake for nothing and,
		// in numbers, crowd every other job out of the due read.
		p.logger.Error("cannot compile a stored schedule; the job will not fire until it is changed", "job", job.ID, "err", err)
		next := *job
		next.NextFireAt = 0
		return fsm.JobFire{Job: next}, true
	}
	state := JobState{
		NextFireAt: job.NextFireAt.Time(), OccurrenceCount: job.OccurrenceCount,
		LastCompletedAt: job.LastCompletedAt.Time(), Policy: sch.Policy(),
	}
	d := Plan(sch, state, now)
	next := *job
	next.NextFireAt = fsm.MillisOf(d.NextFireAt)
	if d.Completed {
		next.Status, next.NextFireAt = fsm.JobCompleted, 0
	}
	if !d.Fire {
		return fsm.JobFire{Job: next}, true
	}
	o := f.newOccurrence(job, d.Slot, false, d.MissedCount, d.Cooldown)
	jf := f.fire(&next, o)
	return jf, true
}

func (p *Poller) compile(job *fsm.Job) (*Schedule, error) {
	if c, ok := p.cache[job.ID]; ok && c.setAt == job.ScheduleSetAt && bytes.Equal(c.spec, job.Schedule) {
		return c.sch, nil
	}
	spec, err := ParseSpec(job.Schedule)
	if err != nil {
		return nil, err
	}
	sch, err := Compile(spec, p.cfg.Schedule, job.ScheduleSetAt.Time())
	if err != nil {
		return nil, err
	}
	if len(p.cache) >= compileCacheSize {
		clear(p.cache)
	}
	p.cache[job.ID] = cachedSchedule{spec: bytes.Clone(job.Schedule), setAt: job.ScheduleSetAt, sch: sch}
	return sch, nil
}

// apply commits one chunk. applied counts the items the FSM accepted; retry
// reports items refused because the state moved (they are due again at once).
func (p *Poller) apply(ctx context.Context, c *fsm.Fire) (applied int, retry bool) {
	cmd, err := fsm.Encode(fsm.CmdFire, c)
	if err != nil {
		p.logger.Error("encode fire command", "err", err)
		return 0, false
	}
	res, err := p.c.Apply(ctx, cmd)
	if err != nil {
		if ctx.Err() == nil {
			p.logger.Warn("fire command not committed; retrying on the next tick", "jobs", len(c.Jobs), "events", len(c.Events), "err", err)
		}
		return 0, true
	}
	fires, deliveries := 0, 0
	for i, r := range res.Results {
		if r.Err == nil {
			applied++
			if i < len(c.Jobs) {
				if c.Jobs[i].Occurrence != nil {
					fires++
				}
				deliveries += len(c.Jobs[i].Deliveries)
			} else {
				deliveries += len(c.Events[i-len(c.Jobs)].Deliveries)
			}
			continue
		}
		if errors.Is(r.Err, fsm.ErrConflict) {
			retry = true // planned from a state that has changed since: plan again
			p.logger.Debug("fire item refused; planning again", "err", r.Err)
			continue
		}
		p.logger.Warn("fire item refused", "err", r.Err)
	}
	if fires > 0 || deliveries > 0 {
		p.logger.Debug("tick applied", "index", res.Index, "occurrences", fires, "deliveries", deliveries)
	}
	return applied, retry
}

// prune removes terminal history older than the retention period (none when
// history is kept forever) and expired Idempotency-Key answers.
func (p *Poller) prune(ctx context.Context, now time.Time) {
	prune := &fsm.Prune{Limit: pruneLimit, IdempotencyBefore: fsm.MillisOf(now)}
	if p.cfg.Retention > 0 {
		prune.Before = fsm.MillisOf(now.Add(-p.cfg.Retention))
	}
	cmd, err := fsm.Encode(fsm.CmdPrune, prune)
	if err != nil {
		p.logger.Error("encode prune command", "err", err)
		return
	}
	if _, err := p.c.Apply(ctx, cmd); err != nil && ctx.Err() == nil {
		p.logger.Warn("prune not committed", "err", err)
	}
}

// chunker splits a tick's items into Fire commands of bounded size.
type chunker struct {
	out   []*fsm.Fire
	cur   *fsm.Fire
	bytes int
}

func (b *chunker) add(jf *fsm.JobFire, ef *fsm.EventFire) {
	size := 256 // fixed fields
	if jf != nil {
		size += len(jf.Job.Schedule) + len(jf.Job.Payload) + len(jf.Job.Cursor) + 300*len(jf.Deliveries) + 600
	} else {
		size += 300 * len(ef.Deliveries)
	}
	if b.cur == nil || b.bytes+size > maxChunkBytes || len(b.cur.Jobs)+len(b.cur.Events) >= maxChunkItems {
		b.cur = &fsm.Fire{}
		b.out = append(b.out, b.cur)
		b.bytes = 0
	}
	b.bytes += size
	if jf != nil {
		b.cur.Jobs = append(b.cur.Jobs, *jf)
	} else {
		b.cur.Events = append(b.cur.Events, *ef)
	}
}

func (b *chunker) done() []*fsm.Fire { return b.out }
