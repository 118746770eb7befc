package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chime-sched/chime/client/webhook"
)

// deliveryReceiver is the test's webhook receiver: it verifies both
// signature formats and records every request by webhook-id and by
// idempotency key (one per occurrence).
type deliveryReceiver struct {
	secret string
	srv    *http.Server
	url    string

	mu        sync.Mutex
	requests  int
	byID      map[string]int
	bySlot    map[string]time.Time // idempotency key → first arrival
	badSig    int
	lastFire  time.Time
	maxGap    time.Duration
	gapWindow [2]time.Time
}

func newDeliveryReceiver(t *testing.T) *deliveryReceiver {
	key := make([]byte, 32)
	rand.Read(key)
	r := &deliveryReceiver{secret: "whsec_" + base64.StdEncoding.EncodeToString(key), byID: map[string]int{}, bySlot: map[string]time.Time{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	verifier := webhook.Verifier{Secrets: []string{r.secret}}
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		now := time.Now()
		mac := hmac.New(sha256.New, []byte(r.secret))
		mac.Write(body)
		ok := verifier.Verify(req.Header, body) == nil &&
			req.Header.Get("X-Webhook-Signature") == "sha256="+hex.EncodeToString(mac.Sum(nil))
		r.mu.Lock()
		r.requests++
		if !ok {
			r.badSig++
		}
		r.byID[req.Header.Get("webhook-id")]++
		slot := req.Header.Get("Chime-Idempotency-Key")
		if _, seen := r.bySlot[slot]; !seen {
			r.bySlot[slot] = now
			if !r.lastFire.IsZero() && now.Sub(r.lastFire) > r.maxGap {
				r.maxGap, r.gapWindow = now.Sub(r.lastFire), [2]time.Time{r.lastFire, now}
			}
			r.lastFire = now
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	r.url = "http://" + ln.Addr().String()
	go r.srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.srv.Shutdown(ctx)
	})
	return r
}

// missing lists the idempotency keys (jobId:slot) not received, at most 20.
func (r *deliveryReceiver) missing(jobs []string, slots int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, j := range jobs {
		for k := range slots {
			key := fmt.Sprintf("%s:%d", j, k)
			if _, ok := r.bySlot[key]; !ok && len(out) < 20 {
				out = append(out, key)
			}
		}
	}
	return strings.Join(out, " ")
}

func (r *deliveryReceiver) counts() (requests, ids, slots, dups, bad int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.byID {
		if n > 1 {
			dups += n - 1
		}
	}
	return r.requests, len(r.byID), len(r.bySlot), dups, r.badSig
}

type deliveryJSON struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	AssignedNode string `json:"assignedNode"`
	Attempts     int    `json:"attempts"`
}

// TestDeliveriesSurviveNodeLoss is the pipeline's acceptance run: 3 nodes,
// 200 jobs firing every 5 s for two minutes against a local receiver; the
// delivering follower is SIGKILLed, then the leader. Every occurrence must be
// delivered at least once, and every node must have delivered a share.
func TestDeliveriesSurviveNodeLoss(t *testing.T) {
	const jobs, every = 200, 5
	run := envDuration("CHIME_E2E_DELIVERY_RUN", 2*time.Minute)
	rcv := newDeliveryReceiver(t)
	c := startCluster(t, 3, "--allow-private-targets")
	ctx, cancel := context.WithTimeout(t.Context(), run+4*time.Minute)
	defer cancel()
	waitReady(ctx, t, 30*time.Second, c.procs...)
	leader, _ := waitLeader(ctx, t, 10*time.Second, c.procs, "")

	// Jobs are created in parallel through every node; the first slot must
	// still be in the future when the last one is created.
	start := time.Now().Add(20 * time.Second).Truncate(time.Second)
	end := start.Add(run)
	slotsPerJob := int(run/(every*time.Second)) + 1 // both ends included
	ids := make([]string, jobs)
	var wg sync.WaitGroup
	errs := make(chan string, jobs)
	for w := range 6 {
		wg.Go(func() {
			for i := w; i < jobs; i += 6 {
				p := c.procs[i%3]
				var out struct {
					ID string `json:"id"`
				}
				code, body, err := p.do(ctx, "POST", "/v1/jobs", map[string]any{
					"name": fmt.Sprintf("load-%03d", i), "callbackUrl": rcv.url + "/hook", "recurrenceSeconds": every,
					"fireAtUtc": start.UTC().Format(time.RFC3339), "endAtUtc": end.UTC().Format(time.RFC3339),
					"signingSecret": rcv.secret, "payload": map[string]any{"job": i},
					"retryPolicy": map[string]any{"maxAttempts": 10, "backoff": "fixed", "initialDelaySeconds": 2},
				}, &out)
				if err != nil || code != 201 {
					errs <- fmt.Sprintf("create job %d through %s: %d %v %s", i, p.id, code, err, body)
					continue
				}
				ids[i] = out.ID
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if !time.Now().Before(start) {
		t.Fatalf("creating %d jobs took until %s, past their first slot %s", jobs, time.Now().Format(time.TimeOnly), start.Format(time.TimeOnly))
	}
	t.Logf("%d jobs every %ds from %s for %s (%d slots each); leader %s", jobs, every, start.Format(time.TimeOnly), run, slotsPerJob, leader)

	// A third of the way in, SIGKILL a delivering follower; restart it 15 s
	// later. Two thirds in, SIGKILL the leader; restart it 15 s later.
	sleepCtx(ctx, time.Until(start.Add(run/3)))
	follower := c.others(leader)[0]
	follower.Kill()
	t.Logf("SIGKILLed follower %s at +%s", follower.id, time.Since(start).Round(time.Second))
	sleepCtx(ctx, 15*time.Second)
	follower.Restart()
	waitReady(ctx, t, 30*time.Second, follower)

	sleepCtx(ctx, time.Until(start.Add(2*run/3)))
	leaderProc := c.byID(leader)
	leaderProc.Kill()
	killedLeaderAt := time.Now()
	newLeader, failover := waitLeader(ctx, t, 15*time.Second, c.others(leader), leader)
	t.Logf("SIGKILLed leader %s at +%s; %s leads after %s", leader, time.Since(start).Round(time.Second), newLeader, failover.Round(time.Millisecond))
	sleepCtx(ctx, 15*time.Second)
	leaderProc.Restart()
	waitReady(ctx, t, 30*time.Second, leaderProc)

	want := jobs * slotsPerJob
	sleepCtx(ctx, time.Until(end))
	settle := time.Now().Add(90 * time.Second)
	for time.Now().Before(settle) && ctx.Err() == nil {
		if _, _, slots, _, _ := rcv.counts(); slots >= want {
			break
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	requests, uniq, slots, dups, bad := rcv.counts()
	rcv.mu.Lock()
	gap, window := rcv.maxGap, rcv.gapWindow
	rcv.mu.Unlock()
	if slots != want {
		t.Errorf("%d distinct occurrences delivered, want exactly %d; missing: %s", slots, want, rcv.missing(ids, slotsPerJob))
	}
	if bad > 0 {
		t.Errorf("%d requests failed signature verification", bad)
	}

	// Who delivered: the final assignee of each succeeded delivery. The
	// last slot's results may still be on their way to the log when its
	// requests have arrived, so wait (bounded) for every delivery to settle.
	collect := func(logOthers bool) (byNode, statuses map[string]int) {
		byNode, statuses = map[string]int{}, map[string]int{}
		p := c.byID(newLeader)
		for _, id := range ids {
			cursor := ""
			for {
				var page struct {
					Items      []deliveryJSON `json:"items"`
					NextCursor *string        `json:"nextCursor"`
				}
				q := "/v1/deliveries?limit=500&jobId=" + id
				if cursor != "" {
					q += "&cursor=" + cursor
				}
				if code, body, err := p.do(ctx, "GET", q, nil, &page); err != nil || code != 200 {
					t.Fatalf("list deliveries: %d %v %s", code, err, body)
				}
				for _, d := range page.Items {
					statuses[d.Status]++
					if d.Status != "succeeded" && logOthers {
						t.Logf("delivery %s of %s: %+v", d.ID, id, d)
					}
					if d.Status == "succeeded" {
						byNode[d.AssignedNode]++
					}
				}
				if page.NextCursor == nil || *page.NextCursor == "" {
					break
				}
				cursor = *page.NextCursor
			}
		}
		return byNode, statuses
	}
	byNode, statuses := collect(false)
	for settled := time.Now().Add(60 * time.Second); statuses["succeeded"] != want && time.Now().Before(settled) && ctx.Err() == nil; {
		sleepCtx(ctx, time.Second)
		byNode, statuses = collect(false)
	}
	if statuses["succeeded"] != want {
		byNode, statuses = collect(true)
	}
	nodes := make([]string, 0, len(byNode))
	for n := range byNode {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	var share []string
	for _, n := range nodes {
		share = append(share, fmt.Sprintf("%s=%d", n, byNode[n]))
	}
	for _, pr := range c.procs {
		if byNode[pr.id] == 0 {
			t.Errorf("node %s delivered nothing; shares %v", pr.id, share)
		}
	}
	if statuses["succeeded"] != want {
		t.Errorf("delivery statuses %v; want %d succeeded", statuses, want)
	}
	t.Logf("RESULT occurrences=%d delivered=%d requests=%d distinct-webhook-ids=%d duplicates=%d bad-signatures=%d shares=[%s] longest-gap-between-new-fires=%s (%s..%s, leader killed at %s)",
		want, slots, requests, uniq, dups, bad, strings.Join(share, " "), gap.Round(time.Millisecond),
		window[0].Format("15:04:05.000"), window[1].Format("15:04:05.000"), killedLeaderAt.Format("15:04:05.000"))
}
