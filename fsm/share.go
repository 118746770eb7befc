package fsm

// Sharing strings: a decoded record gets its own copy of every string, so
// 100,000 jobs would hold 100,000 copies of "active", "default" and "POST".
// The applier points such fields at one shared copy before it stores a
// record. It saves about 90 bytes of heap per stored job, which is what
// keeps an idle job under DESIGN.md's 2 KiB. A value not listed is simply
// kept as decoded.

// sharedStrings holds the values records repeat: statuses, the default
// project, HTTP methods, backoff kinds, and the scheduler's schedule kinds
// and catch-up modes (scheduler/ owns those; fsm cannot import it, and a
// kind missing here only costs its copies).
var sharedStrings = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		JobActive, JobPaused, JobArchived, JobCompleted, JobCancelled,
		OccurrencePending, OccurrenceCompleted, OccurrenceSkipped, OccurrenceMissed, OccurrenceCooldown,
		EventScheduled, EventPublished, EventSkipped,
		DeliveryPending, DeliveryInFlight, DeliveryRetryScheduled, DeliverySucceeded, DeliveryDeadLetter,
		DeliveryCancelled, DeliveryHeld,
		BackoffFixed, BackoffLinear, BackoffExponential,
		DefaultProject,
		"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
		"once", "interval", "calendar", "recurrence", "rrule", "cron",
		"one", "none",
	} {
		m[s] = s
	}
	return m
}()

func share(s string) string {
	if c, ok := sharedStrings[s]; ok {
		return c
	}
	return s
}

// sharer is a record whose repeated strings can be shared. Only the applier
// and restore call it, on records no one else holds yet.
type sharer interface{ shareStrings() }

func (j *Job) shareStrings() {
	j.Project, j.Status, j.ScheduleKind, j.Method, j.CatchUp = share(j.Project), share(j.Status), share(j.ScheduleKind), share(j.Method), share(j.CatchUp)
	j.Retry.Backoff = share(j.Retry.Backoff)
	if j.SeriesID == j.ID {
		j.SeriesID = j.ID // a job that starts its own series
	}
}

func (o *Occurrence) shareStrings() {
	o.Project, o.Status = share(o.Project), share(o.Status)
}

func (d *Delivery) shareStrings() {
	d.Project, d.Status = share(d.Project), share(d.Status)
}

func (e *Endpoint) shareStrings() { e.Project = share(e.Project) }

func (e *Event) shareStrings() { e.Project, e.Status = share(e.Project), share(e.Status) }
