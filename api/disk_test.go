package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/chime-sched/chime/cluster"
	"github.com/gin-gonic/gin"
)

// A full disk is a 503 disk_full with a Retry-After of 30 s (not 1 s, not a
// 500): space comes back by an operator's hand.
func TestDiskFullIsA503WithRetryAfter(t *testing.T) {
	w := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(w)
	c.Request = httptest.NewRequest("POST", "/v1/jobs", nil)
	fail(c, discardLogger(), fmt.Errorf("leader: %w: 1 MiB free", cluster.ErrDiskFull))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "30" {
		t.Fatalf("status %d, Retry-After %q: %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if e := toHTTP(cluster.ErrDiskFull); e.Code != "disk_full" {
		t.Fatalf("code %q", e.Code)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
