package dispatch

import (
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/chime-sched/chime/fsm"
)

func policy(max int, backoff string, initial, maxDelay time.Duration, jitter float64) fsm.RetryPolicy {
	return fsm.RetryPolicy{MaxAttempts: max, Backoff: backoff, InitialDelayMs: initial.Milliseconds(),
		MaxDelayMs: maxDelay.Milliseconds(), Jitter: jitter}
}

// schedule returns the delays after attempts 1, 2, … until NextDelay gives up.
func schedule(p fsm.RetryPolicy) []time.Duration {
	var out []time.Duration
	for attempt := 1; ; attempt++ {
		d, retry := NextDelay(p, attempt, 0, nil)
		if !retry {
			return out
		}
		out = append(out, d)
	}
}

func TestNextDelayTables(t *testing.T) {
	const s, m = time.Second, time.Minute
	tests := []struct {
		name string
		p    fsm.RetryPolicy
		want []time.Duration
	}{
		{"fixed", policy(5, fsm.BackoffFixed, 5*s, m, 0), []time.Duration{5 * s, 5 * s, 5 * s, 5 * s}},
		{"linear", policy(6, fsm.BackoffLinear, 5*s, 20*s, 0), []time.Duration{5 * s, 10 * s, 15 * s, 20 * s, 20 * s}},
		{"exponential", policy(7, fsm.BackoffExponential, s, 10*s, 0), []time.Duration{s, 2 * s, 4 * s, 8 * s, 10 * s, 10 * s}},
		{"one attempt never retries", policy(1, fsm.BackoffFixed, s, s, 0), nil},
		// 001: "1st retry ~10 seconds, 2nd retry ~20 seconds. After 3 total
		// attempts ... the delivery is marked as failed."
		{"endpoint default (001)", EndpointDefaultPolicy(), []time.Duration{10 * s, 20 * s}},
		// 002: 2^(attempts-1) minutes, maxRetries 5 → dead letter.
		{"callback default (002)", CallbackDefaultPolicy(), []time.Duration{m, 2 * m, 4 * m, 8 * m}},
		{"002 backoff capped at 1 h", WithDefaults(fsm.RetryPolicy{MaxAttempts: 9}, CallbackDefaultPolicy()),
			[]time.Duration{m, 2 * m, 4 * m, 8 * m, 16 * m, 32 * m, 60 * m, 60 * m}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := schedule(tc.p)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestNextDelayTotal(t *testing.T) {
	// No overflow and no panic for large attempts or invalid stored policies.
	tests := []struct {
		name    string
		p       fsm.RetryPolicy
		attempt int
		want    time.Duration
	}{
		{"exp attempt 19", policy(20, fsm.BackoffExponential, 24*time.Hour, 24*time.Hour, 0), 19, 24 * time.Hour},
		{"exp attempt 5000", policy(math.MaxInt, fsm.BackoffExponential, time.Minute, time.Hour, 0), 5000, time.Hour},
		{"linear huge attempt", policy(math.MaxInt, fsm.BackoffLinear, time.Minute, time.Hour, 0), math.MaxInt - 1, time.Hour},
		{"attempt 0 counts as 1", policy(3, fsm.BackoffExponential, time.Minute, time.Hour, 0), 0, time.Minute},
		{"unknown backoff is fixed", policy(3, "weird", time.Minute, time.Hour, 0), 2, time.Minute},
		{"zero delays clamp to 1 s", fsm.RetryPolicy{MaxAttempts: 3}, 1, time.Second},
		{"zero max = 24 h", fsm.RetryPolicy{MaxAttempts: 30, Backoff: fsm.BackoffExponential, InitialDelayMs: 1000}, 25, 24 * time.Hour},
		{"max below initial", policy(3, fsm.BackoffLinear, time.Minute, time.Second, 0), 2, time.Minute},
		{"huge ms values", fsm.RetryPolicy{MaxAttempts: 3, InitialDelayMs: math.MaxInt64, MaxDelayMs: math.MaxInt64}, 1, 24 * time.Hour},
		{"negative values", fsm.RetryPolicy{MaxAttempts: 3, InitialDelayMs: -5, MaxDelayMs: -5, Jitter: -1}, 1, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, retry := NextDelay(tc.p, tc.attempt, 0, nil)
			if !retry || d != tc.want {
				t.Fatalf("got %v %v, want %v true", d, retry, tc.want)
			}
		})
	}
	if _, retry := NextDelay(fsm.RetryPolicy{}, 1, 0, nil); retry {
		t.Fatal("zero MaxAttempts retried")
	}
}

// TestNextDelayJitterBounds: with jitter j the delay lies in
// [base·(1-j), min(base·(1+j), max)] for any rnd value, and the extremes are
// reached.
func TestNextDelayJitterBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	backoffs := []string{fsm.BackoffFixed, fsm.BackoffLinear, fsm.BackoffExponential}
	for i := 0; i < 5000; i++ {
		initial := time.Duration(1+r.IntN(600)) * time.Second
		p := policy(20, backoffs[r.IntN(3)], initial, initial+time.Duration(r.IntN(7200))*time.Second, r.Float64())
		if i%10 == 0 {
			p.Jitter = 1
		}
		attempt := 1 + r.IntN(19)
		flat := p
		flat.Jitter = 0
		base, _ := NextDelay(flat, attempt, 0, nil)
		maxDelay := time.Duration(p.MaxDelayMs) * time.Millisecond
		lo := time.Duration(float64(base) * (1 - p.Jitter))
		hi := min(time.Duration(float64(base)*(1+p.Jitter)), maxDelay)
		for _, rv := range []float64{r.Float64(), 0, math.Nextafter(1, 0)} {
			d, retry := NextDelay(p, attempt, 0, func() float64 { return rv })
			if !retry || d < lo-time.Microsecond || d > hi+time.Microsecond || d > maxDelay || d < 0 {
				t.Fatalf("%+v attempt %d rnd %v: %v outside [%v, %v]", p, attempt, rv, d, lo, hi)
			}
		}
	}
	// A bad rnd is clamped, not trusted.
	p := policy(3, fsm.BackoffFixed, 10*time.Second, time.Minute, 0.5)
	for _, rv := range []float64{-3, 7, math.NaN()} {
		if d, _ := NextDelay(p, 1, 0, func() float64 { return rv }); d < 5*time.Second || d > 15*time.Second {
			t.Fatalf("rnd %v: %v", rv, d)
		}
	}
	// The default source stays in bounds too.
	for i := 0; i < 100; i++ {
		if d, _ := NextDelay(p, 1, 0, nil); d < 5*time.Second || d > 15*time.Second {
			t.Fatal(d)
		}
	}
}

func TestNextDelayRetryAfter(t *testing.T) {
	p := policy(3, fsm.BackoffLinear, 10*time.Second, 5*time.Minute, 0)
	tests := []struct {
		name       string
		attempt    int
		retryAfter time.Duration
		want       time.Duration
		retry      bool
	}{
		{"shorter is ignored", 1, 3 * time.Second, 10 * time.Second, true},
		{"longer wins", 1, 2 * time.Minute, 2 * time.Minute, true},
		{"bounded by max", 2, 24 * time.Hour, 5 * time.Minute, true},
		{"no retry after the last attempt", 3, time.Minute, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, retry := NextDelay(p, tc.attempt, tc.retryAfter, nil)
			if d != tc.want || retry != tc.retry {
				t.Fatalf("got %v %v, want %v %v", d, retry, tc.want, tc.retry)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"120", 2 * time.Minute},
		{" 5 ", 5 * time.Second},
		{"0", 0},
		{"", 0},
		{"-1", 0},
		{"1.5", 0},
		{"abc", 0},
		{"99999999999999999999999", time.Duration(math.MaxInt64/int64(time.Second)) * time.Second},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"Sunday, 01-Mar-26 12:10:00 GMT", 10 * time.Minute}, // RFC 850
		{"Sun Mar  1 12:00:30 2026", 30 * time.Second},       // asctime
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"Sun, 01 Mar 2026 12:00:00", 0},
	}
	for _, tc := range tests {
		if got := ParseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestValidatePolicy(t *testing.T) {
	ok := EndpointDefaultPolicy()
	for _, p := range []fsm.RetryPolicy{EndpointDefaultPolicy(), CallbackDefaultPolicy(),
		policy(20, fsm.BackoffFixed, time.Second, 24*time.Hour, 1)} {
		if err := ValidatePolicy(p); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	tests := []struct {
		name  string
		edit  func(*fsm.RetryPolicy)
		field string
	}{
		{"attempts 0", func(p *fsm.RetryPolicy) { p.MaxAttempts = 0 }, "retryPolicy.maxAttempts"},
		{"attempts 21", func(p *fsm.RetryPolicy) { p.MaxAttempts = 21 }, "retryPolicy.maxAttempts"},
		{"backoff", func(p *fsm.RetryPolicy) { p.Backoff = "quadratic" }, "retryPolicy.backoff"},
		{"backoff empty", func(p *fsm.RetryPolicy) { p.Backoff = "" }, "retryPolicy.backoff"},
		{"initial 999 ms", func(p *fsm.RetryPolicy) { p.InitialDelayMs = 999 }, "retryPolicy.initialDelaySeconds"},
		{"initial > 24 h", func(p *fsm.RetryPolicy) { p.InitialDelayMs = 86_400_001; p.MaxDelayMs = 86_400_001 }, "retryPolicy.initialDelaySeconds"},
		{"max < initial", func(p *fsm.RetryPolicy) { p.MaxDelayMs = 9_000 }, "retryPolicy.maxDelaySeconds"},
		{"max > 24 h", func(p *fsm.RetryPolicy) { p.MaxDelayMs = 86_400_001 }, "retryPolicy.maxDelaySeconds"},
		{"jitter < 0", func(p *fsm.RetryPolicy) { p.Jitter = -0.1 }, "retryPolicy.jitter"},
		{"jitter > 1", func(p *fsm.RetryPolicy) { p.Jitter = 1.1 }, "retryPolicy.jitter"},
		{"jitter NaN", func(p *fsm.RetryPolicy) { p.Jitter = math.NaN() }, "retryPolicy.jitter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := ok
			tc.edit(&p)
			err := ValidatePolicy(p)
			fe, isFE := errors.AsType[*fsm.Error](err)
			if !isFE || fe.Field != tc.field || !errors.Is(err, fsm.ErrInvalid) {
				t.Fatalf("got %v, want an invalid error on %s", err, tc.field)
			}
		})
	}
}
