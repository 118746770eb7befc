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
