package e2e

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// chimeBin is the binary built by TestMain; empty under -short.
var chimeBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test skips itself
	}
	dir, err := os.MkdirTemp("", "chime-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		// go test runs in this package's directory: the command is a sibling.
		bin := filepath.Join(dir, "chime")
		cmd := exec.Command("go", "build", "-o", bin, "../cmd/chime")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/chime: %v\n%s", err, out)
			return 1
		}
		chimeBin = bin
		return m.Run()
	}()
	os.Exit(code)
}

func needBinary(t *testing.T) {
	t.Helper()
	if testing.Short() || chimeBin == "" {
		t.Skip("real-process e2e test: skipped under -short")
	}
}

// ---- ports ----------------------------------------------------------------

var (
	portMu    sync.Mutex
	usedPorts = map[int]bool{}
)

// freePort returns a loopback port that is free for both TCP and UDP (gossip
// uses both). Ports come from below the usual ephemeral range (32768+), so an
// outgoing connection cannot take a killed node's port before it restarts.
func freePort(t *testing.T) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 500 {
		port := 20000 + rand.IntN(12000)
		if usedPorts[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		usedPorts[port] = true
		return port
	}
	t.Fatal("no free loopback port found")
	return 0
}

// ---- processes --------------------------------------------------------------

// spawn starts commands from one goroutine locked to its OS thread for the
// life of the test binary: Pdeathsig is tied to the thread that forked, and
// this thread never exits before the process does.
var spawnCh = func() chan spawnReq {
	ch := make(chan spawnReq)
	go func() {
		runtime.LockOSThread()
		for r := range ch {
			r.done <- r.cmd.Start()
		}
	}()
	return ch
}()

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

// proc is one `chime agent` process. Restart reuses its flags, ports and
// data dir.
type proc struct {
	t       *testing.T
	id      string
	http    string // host:port
	raft    string
	gossip  string
	dataDir string
	logPath string
	args    []string

	live atomic.Bool // started and not (yet) signalled to stop

	mu      sync.Mutex
	bin     string // the binary the next start runs; chimeBin when empty
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	exitErr error
	starts  int
}

type procOpts struct {
	id              string
	clusterKey      string
	bootstrapExpect int // 0: flag not given
	extra           []string
}

// newClusterKey is a fresh cluster key (32 random bytes, hex), as
// `chime keygen` or make up would make; weak keys are refused.
func newClusterKey(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newProc allocates ports and a data dir; start it with start, or give its
// gossip address to others first and then start.
func newProc(t *testing.T, o procOpts) *proc {
	t.Helper()
	dir := t.TempDir() // before the Cleanup below, so removed after the kill
	p := &proc{
		t:       t,
		id:      o.id,
		http:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		raft:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		gossip:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, o.id+".log"),
	}
	p.args = []string{"agent",
		"--node-id", o.id, "--data-dir", p.dataDir,
		"--http-addr", p.http, "--raft-addr", p.raft, "--gossip-addr", p.gossip,
		"--cluster-key", o.clusterKey,
	}
	if o.bootstrapExpect > 0 {
		p.args = append(p.args, "--bootstrap-expect", strconv.Itoa(o.bootstrapExpect))
	}
	p.args = append(p.args, o.extra...)
	t.Cleanup(func() {
		if !p.kill(false) {
			t.Errorf("%s: still running 10s after SIGKILL", p.id)
		}
		if t.Failed() {
			t.Logf("---- %s: last lines of %s ----\n%s", p.id, p.logPath, tail(p.logPath, 60))
		}
	})
	return p
}

// externalProc is a node the test does not run itself (a container): only
// its id and HTTP address, live, and never seen to exit (the harness cannot
// tell); Kill, Restart and the like do nothing useful on it.
func externalProc(t *testing.T, id, httpAddr string) *proc {
	p := &proc{t: t, id: id, http: httpAddr, done: make(chan struct{})}
	p.live.Store(true)
	return p
}

func (p *proc) setJoin(addrs []string) {
	p.args = append(p.args, "--join", strings.Join(addrs, ","))
}

func (p *proc) url(path string) string { return "http://" + p.http + path }

// start runs the agent; output (stdout and stderr) is appended to its log.
func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			p.t.Fatalf("%s: start while still running", p.id)
		}
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close() // the child has its own descriptor
	p.starts++
	fmt.Fprintf(f, "==== e2e: start #%d of %s at %s: chime %s\n", p.starts, p.id, time.Now().Format(time.StampMilli), strings.Join(p.args, " "))
	bin := p.bin
	if bin == "" {
		bin = chimeBin
	}
	fmt.Fprintf(f, "==== e2e: binary %s\n", bin)
	cmd := exec.Command(bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = agentEnv()
	cmd.SysProcAttr = sysProcAttr()
	req := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnCh <- req
	if err := <-req.done; err != nil {
		p.t.Fatalf("%s: start: %v", p.id, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.exitErr = cmd, done, nil
	p.live.Store(true)
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}()
}

// rootToken is every test cluster's admin token, given as CHIME_ROOT_TOKEN.
const rootToken = "chime_e2e-root-token-0123456789ab"

// agentEnv is the test's environment without CHIME_* settings, so nothing
// but the flags (and the root token) configures the agents.
func agentEnv() []string {
	env := []string{"CHIME_ROOT_TOKEN=" + rootToken}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHIME_") {
			env = append(env, kv)
		}
	}
	return env
}

// setBin makes the next start run bin (another build of chime).
func (p *proc) setBin(bin string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bin = bin
}

func (p *proc) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// exited tells whether the last started process has exited, and how.
func (p *proc) exited() (bool, error) {
	_, done := p.current()
	if done == nil {
		return true, nil
	}
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.exitErr
	default:
		return false, nil
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *proc) Kill() {
	p.t.Helper()
	if !p.kill(true) {
		p.t.Fatalf("%s: still running 10s after SIGKILL", p.id)
	}
}

func (p *proc) kill(log bool) bool {
	p.live.Store(false)
	cmd, done := p.current()
	if cmd == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
	}
	if log {
		p.note("SIGKILL")
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
		return true
	case <-time.After(10 * time.Second):
		return false
	}
}

// TermAsync sends SIGTERM without waiting.
func (p *proc) TermAsync() {
	p.t.Helper()
	p.live.Store(false)
	cmd, _ := p.current()
	if cmd == nil {
		p.t.Fatalf("%s: SIGTERM to a process never started", p.id)
	}
	p.note("SIGTERM")
	_ = cmd.Process.Signal(syscall.SIGTERM)
}

// WaitExit waits up to timeout for the process to exit and returns its exit
// code (-1 when killed by a signal). On timeout it SIGKILLs and fails.
func (p *proc) WaitExit(timeout time.Duration) int {
	p.t.Helper()
	cmd, done := p.current()
	select {
	case <-done:
	case <-time.After(timeout):
		p.kill(true)
		p.t.Fatalf("%s: did not exit within %s of SIGTERM", p.id, timeout)
	}
	return cmd.ProcessState.ExitCode()
}

// Term is a graceful stop: SIGTERM, then wait. It returns the exit code and
// how long the exit took.
func (p *proc) Term() (int, time.Duration) {
	p.t.Helper()
	start := time.Now()
	p.TermAsync()
	code := p.WaitExit(25 * time.Second)
	return code, time.Since(start)
}

// Restart starts the process again with the same flags, ports and data dir.
func (p *proc) Restart() {
	p.t.Helper()
	if ok, _ := p.exited(); !ok {
		p.t.Fatalf("%s: Restart while running", p.id)
	}
	p.start()
}

func (p *proc) note(what string) {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "==== e2e: %s to %s at %s\n", what, p.id, time.Now().Format(time.StampMilli))
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---- clusters -----------------------------------------------------------------

type cluster struct {
	t     *testing.T
	key   string
	procs []*proc
}

// startCluster starts n agents (n1..nN) with --bootstrap-expect n and the
// extra flags; each one lists every other node's gossip address in --join.
func startCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	return startClusterWith(t, n, func(int) []string { return extra })
}

// startClusterWith is startCluster with per-node extra flags (i is 1-based).
func startClusterWith(t *testing.T, n int, extra func(i int) []string) *cluster {
	t.Helper()
	needBinary(t)
	c := &cluster{t: t, key: newClusterKey(t)}
	for i := 1; i <= n; i++ {
		c.procs = append(c.procs, newProc(t, procOpts{id: fmt.Sprintf("n%d", i), clusterKey: c.key, bootstrapExpect: n, extra: extra(i)}))
	}
	for _, p := range c.procs {
		var others []string
		for _, o := range c.procs {
			if o != p {
				others = append(others, o.gossip)
			}
		}
		p.setJoin(others)
	}
	for _, p := range c.procs {
		p.start()
	}
	return c
}

func (c *cluster) byID(id string) *proc {
	for _, p := range c.procs {
		if p.id == id {
			return p
		}
	}
	c.t.Fatalf("no node %q", id)
	return nil
}

func (c *cluster) others(id string) []*proc {
	var out []*proc
	for _, p := range c.procs {
		if p.id != id {
			out = append(out, p)
		}
	}
	return out
}

// randomLive is a random node that has not been told to stop, or nil.
func (c *cluster) randomLive() *proc {
	var live []*proc
	for _, p := range c.procs {
		if p.live.Load() {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return nil
	}
	return live[rand.IntN(len(live))]
}

// ---- waiting ------------------------------------------------------------------

// waitFor polls cond until it holds, or fails the test after timeout (or when
// ctx ends), quoting cond's last reason. It returns how long it took.
func waitFor(ctx context.Context, t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	reason := "not checked yet"
	for {
		ok, r := cond(wctx)
		if ok {
			return time.Since(start)
		}
		if r != "" && wctx.Err() == nil { // not the deadline cutting the last try short
			reason = r
		}
		select {
		case <-wctx.Done():
			t.Fatalf("timed out after %s waiting for %s: %s", time.Since(start).Round(time.Millisecond), what, reason)
		case <-tick.C:
		}
	}
}

// checkRunning is a reason when one of ps has exited.
func checkRunning(ps []*proc) string {
	for _, p := range ps {
		if ok, err := p.exited(); ok {
			return fmt.Sprintf("%s exited (%v)", p.id, err)
		}
	}
	return ""
}

func waitReady(ctx context.Context, t *testing.T, timeout time.Duration, ps ...*proc) time.Duration {
	t.Helper()
	return waitFor(ctx, t, timeout, "nodes ready", func(ctx context.Context) (bool, string) {
		if r := checkRunning(ps); r != "" {
			return false, r
		}
		for _, p := range ps {
			if ok, why := p.ready(ctx); !ok {
				return false, p.id + ": " + why
			}
		}
		return true, ""
	})
}

// agreedLeader is the leader every one of ps reports, when they agree.
func agreedLeader(ctx context.Context, ps []*proc) (string, string) {
	leader := ""
	for _, p := range ps {
		st, err := p.status(ctx)
		if err != nil {
			return "", p.id + ": " + err.Error()
		}
		if st.Leader == nil {
			return "", p.id + " knows no leader"
		}
		if leader != "" && st.Leader.ID != leader {
			return "", fmt.Sprintf("leaders disagree: %s vs %s", leader, st.Leader.ID)
		}
		leader = st.Leader.ID
	}
	return leader, ""
}

// waitLeader waits until ps agree on a leader other than exclude and returns it.
func waitLeader(ctx context.Context, t *testing.T, timeout time.Duration, ps []*proc, exclude string) (string, time.Duration) {
	t.Helper()
	var leader string
	d := waitFor(ctx, t, timeout, "an agreed leader", func(ctx context.Context) (bool, string) {
		if r := checkRunning(ps); r != "" {
			return false, r
		}
		id, why := agreedLeader(ctx, ps)
		if id == "" {
			return false, why
		}
		if id == exclude {
			return false, "still " + id
		}
		leader = id
		return true, ""
	})
	return leader, d
}

// waitVoters waits until p's status shows exactly the ids as leader or voter,
// every one alive in gossip.
func waitVoters(ctx context.Context, t *testing.T, timeout time.Duration, p *proc, ids ...string) time.Duration {
	t.Helper()
	return waitFor(ctx, t, timeout, fmt.Sprintf("%s to show voters %v", p.id, ids), func(ctx context.Context) (bool, string) {
		st, err := p.status(ctx)
		if err != nil {
			return false, err.Error()
		}
		var got []string
		leaders := 0
		for _, n := range st.Nodes {
			if n.Raft == "leader" || n.Raft == "voter" {
				got = append(got, n.ID)
				if n.Gossip != "alive" {
					return false, fmt.Sprintf("%s gossip %s", n.ID, n.Gossip)
				}
			}
			if n.Raft == "leader" {
				leaders++
			}
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(ids))
		if !slices.Equal(got, want) || leaders != 1 {
			return false, fmt.Sprintf("nodes %s", st.nodesString())
		}
		return true, ""
	})
}

// ---- HTTP -----------------------------------------------------------------------

var httpc = &http.Client{
	Timeout: 3 * time.Second,
	Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: time.Second}).DialContext,
		ResponseHeaderTimeout: 3 * time.Second,
		MaxIdleConnsPerHost:   64, // the benchmarks run up to 32 clients per node; fewer idle slots meant redialling
		IdleConnTimeout:       10 * time.Second,
	},
}

type nodeStatus struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"httpAddr"`
	RaftAddr string `json:"raftAddr"`
	Gossip   string `json:"gossip"`
	Raft     string `json:"raft"`
	Version  string `json:"version"`
}

type clusterStatus struct {
	NodeID string `json:"nodeId"`
	Leader *struct {
		ID       string `json:"id"`
		HTTPAddr string `json:"httpAddr"`
	} `json:"leader"`
	Nodes []nodeStatus `json:"nodes"`
	Raft  struct {
		State        string `json:"state"`
		Term         uint64 `json:"term"`
		LastIndex    uint64 `json:"lastIndex"`
		CommitIndex  uint64 `json:"commitIndex"`
		AppliedIndex uint64 `json:"appliedIndex"`
	} `json:"raft"`
}

func (s *clusterStatus) node(id string) (nodeStatus, bool) {
	for _, n := range s.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return nodeStatus{}, false
}

func (s *clusterStatus) nodesString() string {
	var parts []string
	for _, n := range s.Nodes {
		parts = append(parts, fmt.Sprintf("%s(gossip=%s raft=%s)", n.ID, n.Gossip, n.Raft))
	}
	return strings.Join(parts, " ")
}

// do sends one request and decodes a JSON body into out (when non-nil and
// the status is 2xx). It returns the status and the raw body.
func (p *proc) do(ctx context.Context, method, path string, in, out any) (int, []byte, error) {
	return p.doHeaders(ctx, method, path, nil, in, out)
}

// doHeaders is do with extra request headers.
func (p *proc) doHeaders(ctx context.Context, method, path string, headers map[string]string, in, out any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.url(path), body)
	if err != nil {
		return 0, nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+rootToken)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, b, fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return resp.StatusCode, b, nil
}

func (p *proc) status(ctx context.Context) (*clusterStatus, error) {
	var st clusterStatus
	code, b, err := p.do(ctx, http.MethodGet, "/v1/cluster/status", nil, &st)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("status: HTTP %d: %s", code, b)
	}
	return &st, nil
}

func (p *proc) ready(ctx context.Context) (bool, string) {
	code, b, err := p.do(ctx, http.MethodGet, "/v1/ready", nil, nil)
	if err != nil {
		return false, err.Error()
	}
	if code != http.StatusOK {
		return false, fmt.Sprintf("HTTP %d %s", code, bytes.TrimSpace(b))
	}
	return true, ""
}

func (p *proc) health(ctx context.Context) (bool, string) {
	code, b, err := p.do(ctx, http.MethodGet, "/v1/health", nil, nil)
	if err != nil {
		return false, err.Error()
	}
	return code == http.StatusOK, fmt.Sprintf("HTTP %d %s", code, bytes.TrimSpace(b))
}

// createProject returns the HTTP status of POST /v1/projects.
func (p *proc) createProject(ctx context.Context, name string) (int, error) {
	code, b, err := p.do(ctx, http.MethodPost, "/v1/projects", map[string]string{"name": name}, nil)
	if err != nil {
		return 0, err
	}
	if code != http.StatusCreated && code != http.StatusConflict && code != http.StatusServiceUnavailable {
		return code, fmt.Errorf("HTTP %d: %s", code, bytes.TrimSpace(b))
	}
	return code, nil
}

// hasProject is a local (not consistent) read of one project.
func (p *proc) hasProject(ctx context.Context, name string) (bool, error) {
	code, b, err := p.do(ctx, http.MethodGet, "/v1/projects/"+url.PathEscape(name), nil, nil)
	switch {
	case err != nil:
		return false, err
	case code == http.StatusOK:
		return true, nil
	case code == http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("HTTP %d: %s", code, bytes.TrimSpace(b))
}

// listProjects reads every page of the node's local project list.
func (p *proc) listProjects(ctx context.Context) (map[string]bool, error) {
	names := map[string]bool{}
	cursor := ""
	for page := 0; ; page++ {
		if page > 10000 {
			return nil, errors.New("list: more than 10000 pages")
		}
		path := "/v1/projects?limit=500"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var body struct {
			Items []struct {
				Name string `json:"name"`
			} `json:"items"`
			NextCursor *string `json:"nextCursor"`
		}
		code, b, err := p.do(ctx, http.MethodGet, path, nil, &body)
		if err != nil {
			return nil, err
		}
		if code != http.StatusOK {
			return nil, fmt.Errorf("list: HTTP %d: %s", code, bytes.TrimSpace(b))
		}
		for _, it := range body.Items {
			if names[it.Name] {
				return nil, fmt.Errorf("list: %q returned twice", it.Name)
			}
			names[it.Name] = true
		}
		if body.NextCursor == nil {
			return names, nil
		}
		if *body.NextCursor == "" || *body.NextCursor == cursor {
			return nil, fmt.Errorf("list: bad nextCursor %q after %q", *body.NextCursor, cursor)
		}
		cursor = *body.NextCursor
	}
}

// missing lists the wanted names p's local list lacks (sorted).
func (p *proc) missing(ctx context.Context, want []string) ([]string, error) {
	have, err := p.listProjects(ctx)
	if err != nil {
		return nil, err
	}
	var miss []string
	for _, n := range want {
		if !have[n] {
			miss = append(miss, n)
		}
	}
	slices.Sort(miss)
	return miss, nil
}

// waitHasAll waits until p's local list holds every wanted project.
func waitHasAll(ctx context.Context, t *testing.T, timeout time.Duration, p *proc, want []string) time.Duration {
	t.Helper()
	return waitFor(ctx, t, timeout, fmt.Sprintf("%s to hold all %d projects", p.id, len(want)), func(ctx context.Context) (bool, string) {
		miss, err := p.missing(ctx, want)
		if err != nil {
			return false, err.Error()
		}
		if len(miss) > 0 {
			return false, fmt.Sprintf("%d missing, e.g. %v", len(miss), miss[:min(len(miss), 10)])
		}
		return true, ""
	})
}

// waitSameProjects waits until every one of ps lists the same projects.
func waitSameProjects(ctx context.Context, t *testing.T, timeout time.Duration, ps []*proc) {
	t.Helper()
	waitFor(ctx, t, timeout, "every node to list the same projects", func(ctx context.Context) (bool, string) {
		var first map[string]bool
		for i, p := range ps {
			names, err := p.listProjects(ctx)
			if err != nil {
				return false, p.id + ": " + err.Error()
			}
			if i == 0 {
				first = names
				continue
			}
			for n := range names {
				if !first[n] {
					return false, fmt.Sprintf("%s lists %q, %s does not", p.id, n, ps[0].id)
				}
			}
			for n := range first {
				if !names[n] {
					return false, fmt.Sprintf("%s lists %q, %s does not", ps[0].id, n, p.id)
				}
			}
		}
		return true, ""
	})
}

// mustCreate creates a project through ps (rotating on failure) until it is
// acknowledged: a 201, or a 409 after an attempt whose outcome is unknown.
func mustCreate(ctx context.Context, t *testing.T, name string, ps ...*proc) {
	t.Helper()
	uncertain := false
	i := 0
	waitFor(ctx, t, 15*time.Second, "create "+name, func(ctx context.Context) (bool, string) {
		p := ps[i%len(ps)]
		i++
		code, err := p.createProject(ctx, name)
		switch {
		case err != nil:
			uncertain = true
			return false, p.id + ": " + err.Error()
		case code == http.StatusCreated:
			return true, ""
		case code == http.StatusConflict && uncertain:
			return true, ""
		case code == http.StatusConflict:
			t.Fatalf("create %s via %s: 409 on the first attempt", name, p.id)
		}
		uncertain = true
		return false, fmt.Sprintf("%s: HTTP %d", p.id, code)
	})
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
