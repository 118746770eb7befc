package scheduler

import "time"

// MaxPreviewCount is the largest count Preview accepts.
const MaxPreviewCount = 1000

// Preview returns the first count fire times (UTC) of a schedule spec (JSON, schedule
// fields only) for a job created at from, as the poller would fire them with no downtime:
// honouring startAt, endAtUtc and maxOccurrences. It may return fewer than count when the
// schedule ends. count must be between 1 and MaxPreviewCount. Errors are *FieldError
// (errors.Is ErrInvalidSpec); a bad count is reported on the field "count".
// This is what `chime schedule preview` and POST /v1/schedules/preview serve.
func Preview(specJSON []byte, cfg Config, from time.Time, count int) ([]time.Time, error) {
	if count < 1 || count > MaxPreviewCount {
		return nil, fieldErr("count", "must be between 1 and %d, got %d", MaxPreviewCount, count)
	}
	spec, err := ParseSpec(specJSON)
	if err != nil {
		return nil, err
	}
	if err := spec.checkLengths(); err != nil {
		return nil, err
	}
	sch, err := Compile(spec, cfg, from)
	if err != nil {
		return nil, err
	}
	if m := sch.policy.MaxOccurrences; m > 0 && int64(count) > m {
		count = int(m)
	}
	out := make([]time.Time, 0, count)
	for slot, ok := sch.First(); ok && len(out) < count; slot, ok = sch.Next(slot.At) {
		out = append(out, slot.At)
	}
	return out, nil
}
