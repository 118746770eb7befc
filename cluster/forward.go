package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// Followers reach the leader's internal RPCs as plain HTTP/1.1 over
// authenticated streams of the Raft port. net/http gives us connection
// pooling, keep-alive and context deadlines; the handshake in transport.go
// gives us authentication. These routes are never on the public API port.
const (
	pathApply = "/internal/v1/apply"
	// pathApplyBatch takes several commands at once (see coalesce.go).
	pathApplyBatch = "/internal/v1/apply-batch"
	pathReadIndex  = "/internal/v1/read-index"
	pathTransfer   = "/internal/v1/transfer-leadership"
	pathRemove     = "/internal/v1/remove-peer"
	pathRestore    = "/internal/v1/restore"

	headerTimeout = "Chime-Timeout-Ms"
	contentType   = "application/msgpack"
)

// Wire error codes for failures that are not fsm domain errors.
const (
	codeNoLeader        = "no_leader"
	codeLeadershipLost  = "leadership_lost"
	codeTimeout         = "timeout"
	codeShutdown        = "shutdown"
	codeInternal        = "internal"
	codeBadSnapshotBody = "invalid_snapshot"
	codeDiskFull        = "disk_full"
	codeUnverified      = "unverified_snapshot"
)

// ErrTimeout: the cluster did not answer within the request's deadline.
var ErrTimeout = errors.New("timed out waiting for the cluster")

// errUnknownRPC: the leader has no such internal route (404): it runs an
// older version. Nothing was applied.
var errUnknownRPC = errors.New("the leader does not know this internal call")

type wireError struct {
	Code    string `msgpack:"c"`
	Message string `msgpack:"m,omitempty"`
	Field   string `msgpack:"f,omitempty"`
	// RetryAfterMs carries fsm.Error's, for a quota error.
	RetryAfterMs int64 `msgpack:"ra,omitempty"`
}

type wireResult struct {
	Index   uint64        `msgpack:"i"`
	Ignored bool          `msgpack:"g,omitempty"`
	Err     *wireError    `msgpack:"e,omitempty"`
	Results []*wireResult `msgpack:"r,omitempty"`
}

func toWireError(err error) *wireError {
	if err == nil {
		return nil
	}
	var fe *fsm.Error
	if errors.As(err, &fe) {
		return &wireError{Code: fe.Code, Message: fe.Message, Field: fe.Field, RetryAfterMs: fe.RetryAfterMs}
	}
	code := codeInternal
	switch {
	case errors.Is(err, ErrNoLeader):
		code = codeNoLeader
	case errors.Is(err, ErrLeadershipLost):
		code = codeLeadershipLost
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		code = codeTimeout
	case errors.Is(err, ErrShutdown):
		code = codeShutdown
	case errors.Is(err, ErrUnverifiedSnapshot): // before errBadSnapshot, which it wraps
		code = codeUnverified
	case errors.Is(err, errBadSnapshot):
		code = codeBadSnapshotBody
	case errors.Is(err, ErrDiskFull):
		code = codeDiskFull
	}
	return &wireError{Code: code, Message: err.Error()}
}

func fromWireError(w *wireError) error {
	if w == nil {
		return nil
	}
	switch w.Code {
	case codeNoLeader:
		return ErrNoLeader
	case codeLeadershipLost:
		return ErrLeadershipLost
	case codeTimeout:
		return ErrTimeout
	case codeShutdown:
		return fmt.Errorf("leader: %w", ErrShutdown)
	case codeUnverified:
		return fmt.Errorf("%w: %s", ErrUnverifiedSnapshot, strings.TrimPrefix(w.Message, ErrUnverifiedSnapshot.Error()+": "))
	case codeBadSnapshotBody:
		// The leader's message already starts with the sentinel's text.
		return fmt.Errorf("%w: %s", errBadSnapshot, strings.TrimPrefix(w.Message, errBadSnapshot.Error()+": "))
	case codeDiskFull:
		return fmt.Errorf("%w (on the leader): %s", ErrDiskFull, strings.TrimPrefix(w.Message, ErrDiskFull.Error()+": "))
	case codeInternal:
		return fmt.Errorf("leader: %s", w.Message)
	}
	err := fsm.ErrorFromCode(w.Code, w.Message, w.Field)
	if fe, ok := err.(*fsm.Error); ok {
		fe.RetryAfterMs = w.RetryAfterMs
	}
	return err
}

func toWire(r *fsm.Result) *wireResult {
	w := &wireResult{Index: r.Index, Ignored: r.Ignored, Err: toWireError(r.Err)}
	for _, sub := range r.Results {
		w.Results = append(w.Results, toWire(sub))
	}
	return w
}

func fromWire(w *wireResult) *fsm.Result {
	r := &fsm.Result{Index: w.Index, Ignored: w.Ignored, Err: fromWireError(w.Err)}
	for _, sub := range w.Results {
		r.Results = append(r.Results, fromWire(sub))
	}
	return r
}

func newForwardClient(t *muxTransport) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: nil, // internal traffic never goes through a proxy
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return t.dial(ctx, addr, purposeForward)
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

// remaining is how long until ctx's deadline (the default when it has none).
func remaining(ctx context.Context, def time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return def
}

// leaderRaftAddr returns the leader's Raft address, or ErrNoLeader.
func (c *Cluster) leaderRaftAddr() (string, error) {
	addr, _ := c.raft.LeaderWithID()
	if addr == "" {
		return "", ErrNoLeader
	}
	return string(addr), nil
}

// forward sends one internal RPC to the leader. body may be nil; out, when
// non-nil, receives the msgpack answer.
func (c *Cluster) forward(ctx context.Context, path string, body io.Reader, out any) error {
	addr, err := c.leaderRaftAddr()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(headerTimeout, strconv.FormatInt(remaining(ctx, c.cfg.ApplyTimeout).Milliseconds(), 10))
	resp, err := c.fwdClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %v", ErrTimeout, ctx.Err())
		}
		// The leader may have just died; the caller decides whether a retry is safe.
		return fmt.Errorf("%w: forward to %s: %v", ErrLeaderUnreachable, addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		// Our handlers never answer 404 (a missing record is 400 with a
		// code): only the mux does, for a route it does not have.
		return fmt.Errorf("%w: %s", errUnknownRPC, path)
	}
	dec := msgpack.NewDecoder(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var we wireError
		if err := dec.Decode(&we); err != nil {
			return fmt.Errorf("forward to leader %s: status %d", addr, resp.StatusCode)
		}
		return fromWireError(&we)
	}
	if out == nil {
		return nil
	}
	return dec.Decode(out)
}

// Apply commits cmd through Raft — on this node if it leads, otherwise on the
// leader over the internal channel — and returns once this node's own state
// machine has applied it, so a read on this node right after sees the write.
// It retries only while there is no leader (nothing was written then). The
// returned error is the command's domain error when it failed in the FSM
// (the Result is returned too), or a cluster error.
func (c *Cluster) Apply(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	var res *fsm.Result
	err := c.withLeader(ctx, func(ctx context.Context) error {
		var err error
		if res, err = c.applyOnce(ctx, cmd); err != nil {
			return err
		}
		if err := c.fsm.WaitForIndex(ctx, res.Index); err != nil {
			return fmt.Errorf("%w: committed at index %d but not yet applied here", ErrTimeout, res.Index)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	return res, res.Err
}

// withLeader runs attempt under the apply timeout (unless ctx has a
// deadline) and again while it fails with ErrNoLeader, which is only
// returned when nothing was written. Between tries it pauses a tick and
// waits for a known leader: a node that still believes in a deposed leader
// would otherwise re-send at once, in a tight loop.
func (c *Cluster) withLeader(ctx context.Context, attempt func(ctx context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.ApplyTimeout)
		defer cancel()
	}
	for {
		err := attempt(ctx)
		if !errors.Is(err, ErrNoLeader) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-c.shutdownCh:
			return ErrShutdown
		case <-time.After(leaderPoll):
		}
		if werr := c.waitForLeader(ctx); werr != nil {
			return err
		}
	}
}

func (c *Cluster) applyOnce(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	if err := c.disk.err(); err != nil {
		// This node could not store the entry it asks for, nor wait until
		// it has applied it: refuse here, whoever leads.
		return nil, err
	}
	if c.raft.State() == raft.Leader {
		return c.local.do(ctx, cmd)
	}
	return c.remote.do(ctx, cmd)
}

// commitLocal is the leader's flush: it submits batch to Raft, the small
// commands merged into one fsm.Batch entry and the others (batches, which
// cannot nest, and big commands) as entries of their own, and answers each
// request with its own result. All entries are submitted before any is
// waited for, so Raft can still write them to its log together.
func (c *Cluster) commitLocal(batch []*applyReq) {
	if err := c.disk.err(); err != nil {
		// Refused before Raft sees it: a leader short of disk writes
		// nothing, so its log store never fails (disk.go).
		for _, r := range batch {
			r.answer(nil, err)
		}
		return
	}
	timeout := remainingOf(batch, c.cfg.ApplyTimeout)
	type entry struct {
		reqs   []*applyReq
		f      raft.ApplyFuture
		merged bool
	}
	var entries []entry
	var merge []*applyReq
	for _, r := range batch {
		if t, _ := fsm.TypeOf(r.cmd); t == fsm.CmdBatch || len(r.cmd) > maxMergedCommand {
			entries = append(entries, entry{reqs: []*applyReq{r}, f: c.raft.Apply(r.cmd, timeout)})
			continue
		}
		merge = append(merge, r)
	}
	switch len(merge) {
	case 0:
	case 1:
		// Alone, a command goes as it is: the log holds exactly what it
		// held before coalescing, and there is nothing to unwrap.
		entries = append(entries, entry{reqs: merge, f: c.raft.Apply(merge[0].cmd, timeout)})
	default:
		cmds := make([][]byte, len(merge))
		for i, r := range merge {
			cmds[i] = r.cmd
		}
		cmd, err := fsm.Encode(fsm.CmdBatch, &fsm.Batch{Commands: cmds})
		if err != nil {
			for _, r := range merge {
				r.answer(nil, err)
			}
			break
		}
		entries = append(entries, entry{reqs: merge, f: c.raft.Apply(cmd, timeout), merged: true})
	}
	for _, e := range entries {
		res, err := c.applyResult(e.f)
		if !e.merged {
			e.reqs[0].answer(res, err)
			continue
		}
		if err == nil && (res.Err != nil || len(res.Results) != len(e.reqs)) {
			// Cannot happen with the batch built above; if it does, no
			// caller may take another's result.
			err = fmt.Errorf("coalesced batch at index %d: %d results for %d commands (error %v)", res.Index, len(res.Results), len(e.reqs), res.Err)
			c.logger.Error("coalesced batch answered badly", "raft_index", res.Index, "error", err)
		}
		for i, r := range e.reqs {
			if err != nil {
				r.answer(nil, err)
				continue
			}
			r.answer(res.Results[i], nil)
		}
	}
}

// applyResult waits for an entry to be applied and returns its *fsm.Result.
func (c *Cluster) applyResult(f raft.ApplyFuture) (*fsm.Result, error) {
	// Not a caller's ctx: once Raft has the command it may commit, and the
	// caller must hear how it ended; Raft answers within its own timeout or
	// at shutdown.
	if err := c.waitFuture(context.Background(), f); err != nil {
		return nil, raftErr(err)
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("fsm returned %T", f.Response())
	}
	return res, nil
}

// forwardBatch is a follower's flush: one RPC to the leader for the whole
// batch, each command answered with its own result or error. A lone command,
// or a leader too old to know pathApplyBatch, gets the single-command RPC.
func (c *Cluster) forwardBatch(batch []*applyReq) {
	addr, _ := c.raft.LeaderWithID()
	if len(batch) == 1 || !c.batchRPC.supported(string(addr)) {
		var wg sync.WaitGroup
		for _, r := range batch {
			wg.Go(func() { r.answer(c.forwardOne(r.ctx, r.cmd)) })
		}
		wg.Wait()
		return
	}
	cmds := make([][]byte, len(batch))
	for i, r := range batch {
		cmds[i] = r.cmd
	}
	body, err := msgpack.Marshal(&batchRequest{Commands: cmds})
	if err != nil {
		for _, r := range batch {
			r.answer(nil, err)
		}
		return
	}
	// The RPC is shared, so no one caller's context may end it: it runs until
	// the last of them would give up (each caller still leaves at its own
	// deadline, see coalescer.wait).
	ctx, cancel := context.WithTimeout(context.Background(), remainingOf(batch, c.cfg.ApplyTimeout))
	defer cancel()
	var out []wireOutcome
	err = c.forward(ctx, c.batchPath, bytes.NewReader(body), &out)
	if errors.Is(err, errUnknownRPC) {
		// Nothing was applied: the leader has no such route.
		c.logger.Info("leader does not take batched writes; forwarding one by one", "leader_raft_addr", string(addr))
		c.batchRPC.refuse(string(addr))
		c.forwardBatch(batch)
		return
	}
	if err == nil && len(out) != len(batch) {
		err = fmt.Errorf("leader answered %d of %d batched writes", len(out), len(batch))
	}
	for i, r := range batch {
		switch {
		case err != nil:
			r.answer(nil, err)
		case out[i].Err != nil:
			r.answer(nil, fromWireError(out[i].Err))
		case out[i].Result == nil:
			r.answer(nil, fmt.Errorf("leader sent no result for batched write %d", i))
		default:
			r.answer(fromWire(out[i].Result), nil)
		}
	}
}

func (c *Cluster) forwardOne(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	var w wireResult
	if err := c.forward(ctx, pathApply, bytes.NewReader(cmd), &w); err != nil {
		return nil, err
	}
	return fromWire(&w), nil
}

// batchRequest is the body of pathApplyBatch; the answer is one wireOutcome
// per command, in order.
type batchRequest struct {
	Commands [][]byte `msgpack:"c"`
}

// wireOutcome is one command's answer in a batch: its result (which carries
// any domain error), or the cluster error that kept it from one.
type wireOutcome struct {
	Result *wireResult `msgpack:"r,omitempty"`
	Err    *wireError  `msgpack:"e,omitempty"`
}

func toOutcome(res *fsm.Result, err error) wireOutcome {
	if err != nil {
		return wireOutcome{Err: toWireError(err)}
	}
	return wireOutcome{Result: toWire(res)}
}

// batchSupport remembers a leader that answered pathApplyBatch with 404 (an
// older version, during a rolling upgrade). It is asked again after
// batchRetryAfter: by then it may have been upgraded.
type batchSupport struct {
	mu      sync.Mutex
	refused map[string]time.Time
}

const batchRetryAfter = time.Minute

func (b *batchSupport) supported(addr string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	at, ok := b.refused[addr]
	if ok && time.Since(at) > batchRetryAfter {
		delete(b.refused, addr)
		return true
	}
	return !ok
}

func (b *batchSupport) refuse(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refused == nil {
		b.refused = map[string]time.Time{}
	}
	b.refused[addr] = time.Now()
}

// raftErr maps hashicorp/raft errors onto ours.
func raftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Both are refusals before the entry was enqueued: safe to retry.
		return ErrNoLeader
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		// A restore aborts the entries in flight: like a lost leadership,
		// the caller cannot know whether its entry is in the new state.
		return ErrLeadershipLost
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return ErrTimeout
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	}
	return err
}

// leaderPoll is how often a caller waiting for a leader looks again.
const leaderPoll = 20 * time.Millisecond

func (c *Cluster) waitForLeader(ctx context.Context) error {
	t := time.NewTicker(leaderPoll)
	defer t.Stop()
	for {
		if addr, _ := c.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.shutdownCh:
			return ErrShutdown
		case <-t.C:
		}
	}
}

// ReadBarrier makes the next local read linearizable: it learns the leader's
// commit index (the leader first confirms it still leads) and waits until
// this node has applied at least that far.
func (c *Cluster) ReadBarrier(ctx context.Context) error {
	return c.withLeader(ctx, func(ctx context.Context) error {
		idx, err := c.readIndex(ctx)
		if err != nil {
			return err
		}
		if err := c.fsm.WaitForIndex(ctx, idx); err != nil {
			return fmt.Errorf("%w: waiting to apply index %d", ErrTimeout, idx)
		}
		return nil
	})
}

func (c *Cluster) readIndex(ctx context.Context) (uint64, error) {
	if c.raft.State() != raft.Leader {
		var idx uint64
		err := c.forward(ctx, pathReadIndex, nil, &idx)
		return idx, err
	}
	return c.leaderReadIndex(ctx)
}

func (c *Cluster) leaderReadIndex(ctx context.Context) (uint64, error) {
	// The Barrier commits an entry of the current term and returns once the
	// FSM has applied everything before it, so every write acknowledged by
	// this or an earlier leader is in the local state; VerifyLeader then
	// proves no newer leader exists. The answer is the FSM's own index, not
	// Raft's commit index: barrier and no-op entries never reach the FSM, so
	// a follower waiting for such an index would wait forever.
	if err := c.waitFuture(ctx, c.raft.Barrier(remaining(ctx, c.cfg.ApplyTimeout))); err != nil {
		return 0, raftErr(err)
	}
	if err := c.waitFuture(ctx, c.raft.VerifyLeader()); err != nil {
		return 0, raftErr(err)
	}
	return c.fsm.AppliedIndex(), nil
}

func (c *Cluster) newForwardServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathApply, func(w http.ResponseWriter, r *http.Request) {
		cmd, err := io.ReadAll(io.LimitReader(r.Body, maxForwardedCommand+1))
		if err != nil {
			writeWire(w, http.StatusBadRequest, toWireError(err))
			return
		}
		if len(cmd) > maxForwardedCommand {
			writeWire(w, http.StatusRequestEntityTooLarge, &wireError{Code: codeInternal, Message: "command too large"})
			return
		}
		if c.raft.State() != raft.Leader {
			writeWire(w, http.StatusServiceUnavailable, toWireError(ErrNoLeader))
			return
		}
		ctx, cancel := requestCtx(r)
		defer cancel()
		res, err := c.local.do(ctx, cmd)
		if err != nil {
			writeWire(w, http.StatusServiceUnavailable, toWireError(err))
			return
		}
		writeWire(w, http.StatusOK, toWire(res))
	})
	mux.HandleFunc("POST "+pathApplyBatch, func(w http.ResponseWriter, r *http.Request) {
		var req batchRequest
		if err := msgpack.NewDecoder(io.LimitReader(r.Body, maxForwardedCommand)).Decode(&req); err != nil {
			writeWire(w, http.StatusBadRequest, toWireError(err))
			return
		}
		if c.raft.State() != raft.Leader {
			writeWire(w, http.StatusServiceUnavailable, toWireError(ErrNoLeader))
			return
		}
		ctx, cancel := requestCtx(r)
		defer cancel()
		// Enqueued together, the follower's commands are taken together,
		// with whatever the leader's own callers and the other followers
		// queued meanwhile.
		reqs := c.local.enqueue(ctx, req.Commands...)
		out := make([]wireOutcome, len(reqs))
		for i, q := range reqs {
			out[i] = toOutcome(c.local.wait(q))
		}
		writeWire(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST "+pathReadIndex, func(w http.ResponseWriter, r *http.Request) {
		if c.raft.State() != raft.Leader {
			writeWire(w, http.StatusServiceUnavailable, toWireError(ErrNoLeader))
			return
		}
		ctx, cancel := requestCtx(r)
		defer cancel()
		idx, err := c.leaderReadIndex(ctx)
		if err != nil {
			writeWire(w, http.StatusServiceUnavailable, toWireError(err))
			return
		}
		writeWire(w, http.StatusOK, idx)
	})
	mux.HandleFunc("POST "+pathTransfer, func(w http.ResponseWriter, r *http.Request) {
		var to string
		if err := msgpack.NewDecoder(r.Body).Decode(&to); err != nil {
			writeWire(w, http.StatusBadRequest, toWireError(err))
			return
		}
		ctx, cancel := requestCtx(r)
		defer cancel()
		writeWireErr(w, c.transferLocal(ctx, to))
	})
	mux.HandleFunc("POST "+pathRemove, func(w http.ResponseWriter, r *http.Request) {
		var id string
		if err := msgpack.NewDecoder(r.Body).Decode(&id); err != nil {
			writeWire(w, http.StatusBadRequest, toWireError(err))
			return
		}
		ctx, cancel := requestCtx(r)
		defer cancel()
		writeWireErr(w, c.removeLocal(ctx, id))
	})
	mux.HandleFunc("POST "+pathRestore, func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := requestCtx(r)
		defer cancel()
		writeWireErr(w, c.restoreLocal(ctx, r.Body, RestoreOptions{Foreign: r.URL.Query().Get("foreign") == "true"}))
	})
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: newStdLogger(c.logger, "forward")}
}

// maxForwardedCommand bounds one forwarded command; the API bounds request
// bodies well below it.
const maxForwardedCommand = 64 << 20

func requestCtx(r *http.Request) (context.Context, context.CancelFunc) {
	if ms, err := strconv.ParseInt(r.Header.Get(headerTimeout), 10, 64); err == nil && ms > 0 {
		return context.WithTimeout(r.Context(), time.Duration(ms)*time.Millisecond)
	}
	return context.WithCancel(r.Context())
}

func writeWireErr(w http.ResponseWriter, err error) {
	if err != nil {
		status := http.StatusServiceUnavailable
		if errors.Is(err, fsm.ErrNotFound) || errors.Is(err, fsm.ErrConflict) || errors.Is(err, fsm.ErrInvalid) || errors.Is(err, errBadSnapshot) {
			status = http.StatusBadRequest
		}
		writeWire(w, status, toWireError(err))
		return
	}
	writeWire(w, http.StatusOK, true)
}

func writeWire(w http.ResponseWriter, status int, v any) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = msgpack.Marshal(&wireError{Code: codeInternal, Message: err.Error()})
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
