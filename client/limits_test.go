package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/chime-sched/chime/client"
)

func TestLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := client.New(startNode(t), rootToken)

	cl, err := c.GetClusterLimits(ctx)
	noErr(t, err)
	if cl.Limits.MaxJobs != 10000 || cl.Defaults != cl.Limits {
		t.Fatalf("cluster limits %+v", cl)
	}
	cl, err = c.SetClusterLimits(ctx, client.LimitsPatch{MaxEndpoints: client.Ptr[int64](1)})
	noErr(t, err)
	if cl.Limits.MaxEndpoints != 1 {
		t.Fatalf("after set: %+v", cl.Limits)
	}
	_, err = c.SetProjectLimits(ctx, "default", client.LimitsPatch{MaxJobs: client.Ptr[int64](-3)})
	apiError(t, err, 400, "invalid_request", "maxJobs")

	pl, err := c.SetProjectLimits(ctx, "default", client.LimitsPatch{MaxJobs: client.Ptr[int64](1), MinIntervalSeconds: client.Ptr[int64](0)})
	noErr(t, err)
	if pl.Limits.MaxJobs != 1 || pl.Limits.MaxEndpoints != 1 || pl.Overrides["maxJobs"] != 1 || pl.Overrides["minIntervalSeconds"] != 0 {
		t.Fatalf("project limits %+v", pl)
	}
	job := client.JobRequest{Schedule: client.Schedule{DelaySeconds: client.Ptr[int64](3600)}, CallbackURL: "https://example.com/cb"}
	_, err = c.CreateJob(ctx, job)
	noErr(t, err)
	_, err = c.CreateJob(ctx, job)
	if e := apiError(t, err, 429, "quota_exceeded", "maxJobs"); e.RetryAfter != 0 {
		t.Fatalf("a count limit has no Retry-After: %+v", e)
	}
	pl, err = c.GetProjectLimits(ctx, "default")
	noErr(t, err)
	if pl.Usage.Jobs != 1 {
		t.Fatalf("usage %+v", pl.Usage)
	}
	pl, err = c.SetProjectLimits(ctx, "default", client.LimitsPatch{Unset: []string{"maxJobs"}})
	noErr(t, err)
	if _, ok := pl.Overrides["maxJobs"]; ok || pl.Limits.MaxJobs != 10000 {
		t.Fatalf("after unset: %+v", pl)
	}
	noErr(t, c.ResetProjectLimits(ctx, "default"))
	pl, err = c.GetProjectLimits(ctx, "default")
	noErr(t, err)
	if len(pl.Overrides) != 0 {
		t.Fatalf("after reset: %+v", pl)
	}
}

// A scheduled fire that would take the project over maxUndelivered is not
// lost silently: its occurrence is skipped with the reason, and the
// schedule goes on; a manual trigger is refused with 429 and Retry-After.
func TestScheduledFireOverQuotaIsSkippedVisibly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := client.New(startNode(t), rootToken)
	_, err := c.SetProjectLimits(ctx, "default", client.LimitsPatch{MaxUndelivered: client.Ptr[int64](1)})
	noErr(t, err)
	// A refused target: the first delivery stays undelivered (retrying).
	job, err := c.CreateJob(ctx, client.JobRequest{Schedule: client.Schedule{RecurrenceSeconds: client.Ptr[int64](1)},
		CallbackURL: "http://127.0.0.1:1/refused", MaxRetries: 20})
	noErr(t, err)
	var skipped *client.Occurrence
	for skipped == nil {
		if ctx.Err() != nil {
			t.Fatal("no occurrence was skipped for the quota")
		}
		time.Sleep(200 * time.Millisecond)
		page, err := c.ListOccurrences(ctx, job.ID, client.OccurrenceListOptions{})
		noErr(t, err)
		for i, o := range page.Items {
			if o.Status == "skipped" {
				skipped = &page.Items[i]
			}
		}
	}
	if skipped.SkipReason == "" || skipped.CompletedAt == nil {
		t.Fatalf("skipped without a reason: %+v", skipped)
	}
	_, err = c.TriggerJob(ctx, job.ID)
	if e := apiError(t, err, 429, "quota_exceeded", "maxUndelivered"); e.RetryAfter != 30*time.Second {
		t.Fatalf("Retry-After %s", e.RetryAfter)
	}
}
