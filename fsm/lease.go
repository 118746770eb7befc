package fsm

import "time"

// LeaseGrace is what a delivery's lease adds to the attempt's due time and
// timeout: the room a node has to report its result before the leader gives
// the delivery to another node. It is longer than any clock skew we accept
// between nodes and than a Raft round trip under load.
const LeaseGrace = 30 * time.Second

// DefaultTargetTimeout is the attempt timeout of a target that names none
// (001's 10 s). The API always stores one; this only guards old records.
const DefaultTargetTimeout = 10 * time.Second

// LeaseUntil is the lease deadline of an attempt due at due with timeout.
func LeaseUntil(due Millis, timeout time.Duration) Millis {
	return due + Millis((timeout + LeaseGrace).Milliseconds())
}

// TimeoutOf turns a stored timeout into a duration (the default when unset).
func TimeoutOf(ms int64) time.Duration {
	if ms <= 0 {
		return DefaultTargetTimeout
	}
	return time.Duration(ms) * time.Millisecond
}

// TargetTimeout is the attempt timeout of d's target: its endpoint's, or its
// job's for an inline callback (the default if the target is gone).
func (s *State) TargetTimeout(d *Delivery) time.Duration {
	if d.EndpointID != "" {
		if ep, err := s.Endpoint(d.EndpointID); err == nil {
			return TimeoutOf(ep.TimeoutMs)
		}
	} else if job, err := s.Job(d.JobID); err == nil {
		return TimeoutOf(job.TimeoutMs)
	}
	return DefaultTargetTimeout
}
