package dispatch

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/chime-sched/chime/fsm"
)

// Bounds of a retry policy, as ValidatePolicy enforces them.
const (
	MinAttempts       = 1
	MaxAttempts       = 20
	MinRetryDelay     = time.Second
	MaxRetryDelay     = 24 * time.Hour
	retryPolicyPrefix = "retryPolicy."
)

// EndpointDefaultPolicy is the policy of an endpoint that sets none: 3
// attempts at +10 s and +20 s, as source 001 documents ("1st retry ~10
// seconds, 2nd retry ~20 seconds, after 3 total attempts ... failed").
func EndpointDefaultPolicy() fsm.RetryPolicy {
	return fsm.RetryPolicy{
		MaxAttempts:    3,
		Backoff:        fsm.BackoffLinear,
		InitialDelayMs: (10 * time.Second).Milliseconds(),
		MaxDelayMs:     time.Hour.Milliseconds(),
	}
}

// CallbackDefaultPolicy is the policy of an inline job callback that sets
// none: source 002's maxRetries 5 (read as the number of attempts) with
// 2^(attempts-1) minutes between them, capped at 1 h: +1, +2, +4, +8 min, then
// dead letter.
func CallbackDefaultPolicy() fsm.RetryPolicy {
	return fsm.RetryPolicy{
		MaxAttempts:    5,
		Backoff:        fsm.BackoffExponential,
		InitialDelayMs: time.Minute.Milliseconds(),
		MaxDelayMs:     time.Hour.Milliseconds(),
	}
}

// WithDefaults fills the zero fields of p (attempts, backoff, delays) from
// def. Jitter is kept as it is: 0 is a meaningful value.
func WithDefaults(p, def fsm.RetryPolicy) fsm.RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = def.MaxAttempts
	}
	if p.Backoff == "" {
		p.Backoff = def.Backoff
	}
	if p.InitialDelayMs == 0 {
		p.InitialDelayMs = def.InitialDelayMs
	}
	if p.MaxDelayMs == 0 {
		p.MaxDelayMs = def.MaxDelayMs
	}
	return p
}

// ValidatePolicy checks p as the API receives it and returns an *fsm.Error
// (ErrInvalid) naming the first offending field, e.g.
// "retryPolicy.maxAttempts".
func ValidatePolicy(p fsm.RetryPolicy) error {
	switch {
	case p.MaxAttempts < MinAttempts || p.MaxAttempts > MaxAttempts:
		return invalid("maxAttempts", "must be between %d and %d, not %d", MinAttempts, MaxAttempts, p.MaxAttempts)
	case p.Backoff != fsm.BackoffFixed && p.Backoff != fsm.BackoffLinear && p.Backoff != fsm.BackoffExponential:
		return invalid("backoff", "must be %s, %s or %s, not %q", fsm.BackoffFixed, fsm.BackoffLinear, fsm.BackoffExponential, p.Backoff)
	case p.InitialDelayMs < MinRetryDelay.Milliseconds() || p.InitialDelayMs > MaxRetryDelay.Milliseconds():
		return invalid("initialDelaySeconds", "must be between %g and %g seconds, not %g",
			MinRetryDelay.Seconds(), MaxRetryDelay.Seconds(), msSeconds(p.InitialDelayMs))
	case p.MaxDelayMs < p.InitialDelayMs || p.MaxDelayMs > MaxRetryDelay.Milliseconds():
		return invalid("maxDelaySeconds", "must be between initialDelaySeconds (%g) and %g seconds, not %g",
			msSeconds(p.InitialDelayMs), MaxRetryDelay.Seconds(), msSeconds(p.MaxDelayMs))
	case !(p.Jitter >= 0 && p.Jitter <= 1): // also refuses NaN
		return invalid("jitter", "must be between 0 and 1, not %g", p.Jitter)
	}
	return nil
}

func invalid(field, format string, args ...any) error {
	field = retryPolicyPrefix + field
	return &fsm.Error{Kind: fsm.ErrInvalid, Code: fsm.CodeInvalid, Field: field,
		Message: field + " " + fmt.Sprintf(format, args...)}
}

func msSeconds(ms int64) float64 { return float64(ms) / 1000 }

// NextDelay says whether the delivery is retried after attempt number attempt
// (1-based) failed, and how long after the failure.
//
//   - retry is false once attempt >= MaxAttempts: the delivery is dead.
//   - fixed waits InitialDelay, linear InitialDelay·attempt, exponential
//     InitialDelay·2^(attempt-1); the result is capped at MaxDelay.
//   - Jitter j multiplies that by a uniform factor in [1-j, 1+j], drawn from
//     rnd (which returns [0,1); nil uses math/rand/v2), and is capped again.
//   - retryAfter (a receiver's Retry-After, 0 = none) replaces the delay when
//     it is longer, but never beyond MaxDelay.
//
// NextDelay is total: it never panics or overflows, whatever p holds. Values
// that ValidatePolicy would refuse are clamped: attempts below 1 count as 1,
// an unknown backoff is fixed, the initial delay is clamped to [1 s, 24 h],
// the max to [initial, 24 h] (0 = 24 h), jitter to [0, 1].
func NextDelay(p fsm.RetryPolicy, attempt int, retryAfter time.Duration, rnd func() float64) (delay time.Duration, retry bool) {
	if attempt >= p.MaxAttempts {
		return 0, false
	}
	if attempt < 1 {
		attempt = 1
	}
	initial := msDuration(p.InitialDelayMs, MinRetryDelay, MaxRetryDelay)
	maxDelay := MaxRetryDelay
	if p.MaxDelayMs > 0 {
		maxDelay = msDuration(p.MaxDelayMs, initial, MaxRetryDelay)
	}

	d := float64(initial)
	switch p.Backoff {
	case fsm.BackoffLinear:
		d *= float64(attempt)
	case fsm.BackoffExponential:
		d *= math.Pow(2, float64(attempt-1))
	}
	if j := p.Jitter; j > 0 && d < math.Inf(1) {
		j = min(j, 1)
		if rnd == nil {
			rnd = rand.Float64
		}
		r := rnd()
		if !(r >= 0) { // also NaN
			r = 0
		}
		r = min(r, 1)
		d *= 1 - j + 2*j*r
	}
	if !(d < float64(maxDelay)) { // also +Inf and NaN
		delay = maxDelay
	} else {
		delay = max(time.Duration(d), 0)
	}
	if retryAfter > delay {
		delay = min(retryAfter, maxDelay)
	}
	return delay, true
}

// msDuration converts ms to a Duration clamped to [lo, hi], without
// overflowing on huge values.
func msDuration(ms int64, lo, hi time.Duration) time.Duration {
	switch {
	case ms < lo.Milliseconds():
		return lo
	case ms > hi.Milliseconds():
		return hi
	}
	return time.Duration(ms) * time.Millisecond
}

// maxRetryAfterSeconds keeps ParseRetryAfter's result within a Duration.
const maxRetryAfterSeconds = math.MaxInt64 / int64(time.Second)

// ParseRetryAfter reads a Retry-After header value: delay-seconds or an
// HTTP-date (RFC 9110 §10.2.3). It returns 0 for an absent, malformed, negative
// or past value; a huge number of seconds saturates rather than overflows.
func ParseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if h[0] >= '0' && h[0] <= '9' {
		for i := 0; i < len(h); i++ {
			if h[i] < '0' || h[i] > '9' {
				return 0
			}
		}
		n, err := strconv.ParseInt(h, 10, 64)
		if err != nil || n > maxRetryAfterSeconds { // only ErrRange is possible here
			n = maxRetryAfterSeconds
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(h)
	if err != nil {
		return 0
	}
	if d := t.Sub(now); d > 0 {
		return d
	}
	return 0
}
