//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Scenario 3, partition: every node's Raft port (Raft and forwarding) and
// gossip port (memberlist, TCP and UDP) is reached only through proxies in
// this test (the nodes advertise the proxies' addresses), so the test can cut
// one node off from the others in both directions. HTTP is not proxied:
// clients still reach every node, the cut-off one included.
//
// A proxy must know which node a connection or packet comes from, to cut the
// isolated node's outgoing traffic too. Gossip UDP is sent from the node's own
// gossip socket, so its source port names the node; TCP connections are dialed
// from ephemeral ports, so the proxy looks the dialing socket up in
// /proc/net/tcp and finds which agent process holds it (hence linux only).

// Bounds from the product's configuration (the agent's defaults):
// cluster/cluster.go sets LeaderLeaseTimeout to half the heartbeat timeout
// (1 s); cluster/status.go's StaleContact is two heartbeat timeouts.
const (
	raftHeartbeat   = time.Second
	raftLeaderLease = raftHeartbeat / 2
	staleContact    = 2 * raftHeartbeat
	// oldLeaderQuiet: a cut-off leader steps down once a lease check finds
	// no quorum in contact (within two leases of the cut); raft then stamps
	// its last contact, so InContact holds for up to StaleContact more, and
	// the dispatcher (dispatch/worker.go) starts nothing after that. A call
	// started at the last moment reaches the receiver within the slack.
	oldLeaderQuiet = 2*raftLeaderLease + staleContact + 500*time.Millisecond
	// followerQuiet: a cut-off follower's InContact turns false StaleContact
	// after the leader's last message; the dispatcher starts nothing after.
	followerQuiet = staleContact + 500*time.Millisecond
)

// ---- the network ---------------------------------------------------------------

// partitionNet holds every node's proxies and which nodes are cut off.
type partitionNet struct {
	t *testing.T
	c *cluster

	mu       sync.Mutex
	isolated map[string]bool
	conns    map[*proxyConn]bool
	gossipBy map[int]string // a node's real gossip port → its id
	closers  []io.Closer

	unknown atomic.Int64 // TCP connections or packets whose sender was not found
	refused atomic.Int64 // connections refused or closed by a cut
	dropped atomic.Int64 // UDP packets dropped by a cut
	wg      sync.WaitGroup
}

type proxyConn struct {
	src, dst  string
	down, up  net.Conn
	closeOnce sync.Once
}

func (pc *proxyConn) close() {
	pc.closeOnce.Do(func() {
		pc.down.Close()
		pc.up.Close()
	})
}

// blocked: traffic between two nodes is cut when either is isolated. Traffic
// from an unidentified sender passes (and is counted).
func (n *partitionNet) blockedLocked(src, dst string) bool {
	return src != dst && (n.isolated[src] || n.isolated[dst])
}

func (n *partitionNet) blocked(src, dst string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.blockedLocked(src, dst)
}

// isolate cuts id off from every other node: existing connections to or from
// it are closed, new ones refused, UDP packets dropped.
func (n *partitionNet) isolate(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated[id] = true
	for pc := range n.conns {
		if n.blockedLocked(pc.src, pc.dst) {
			pc.close()
			delete(n.conns, pc)
			n.refused.Add(1)
		}
	}
}

func (n *partitionNet) healAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.isolated)
}

// startPartitionableCluster starts n agents like startClusterWith, with
// every Raft and gossip address advertised through a proxy of pn, and --join
// pointing at the proxies.
func startPartitionableCluster(t *testing.T, n int, extra ...string) (*cluster, *partitionNet) {
	t.Helper()
	needBinary(t)
	c := &cluster{t: t, key: newClusterKey(t)}
	pn := &partitionNet{t: t, c: c, isolated: map[string]bool{}, conns: map[*proxyConn]bool{}, gossipBy: map[int]string{}}
	type proxied struct{ raft, gossip string }
	prox := make([]proxied, n)
	for i := range n {
		prox[i] = proxied{
			raft:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		}
		id := fmt.Sprintf("n%d", i+1)
		args := append([]string{"--advertise-raft-addr", prox[i].raft, "--advertise-gossip-addr", prox[i].gossip}, extra...)
		c.procs = append(c.procs, newProc(t, procOpts{id: id, clusterKey: c.key, bootstrapExpect: n, extra: args}))
	}
	// Registered after the procs' cleanups, so run before them: the proxies
	// go first, then the processes are killed.
	t.Cleanup(pn.close)
	for i, p := range c.procs {
		_, port, _ := net.SplitHostPort(p.gossip)
		gp, _ := strconv.Atoi(port)
		pn.gossipBy[gp] = p.id
		pn.listenTCP(prox[i].raft, p.id, p.raft)
		pn.listenTCP(prox[i].gossip, p.id, p.gossip)
		pn.listenUDP(prox[i].gossip, p.id, p.gossip)
	}
	for i, p := range c.procs {
		var others []string
		for j := range c.procs {
			if j != i {
				others = append(others, prox[j].gossip)
			}
		}
		p.setJoin(others)
	}
	for _, p := range c.procs {
		p.start()
	}
	return c, pn
}

func (n *partitionNet) close() {
	n.mu.Lock()
	for _, c := range n.closers {
		c.Close()
	}
	for pc := range n.conns {
		pc.close()
	}
	clear(n.conns)
	n.mu.Unlock()
	n.wg.Wait()
}

func (n *partitionNet) addCloser(c io.Closer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closers = append(n.closers, c)
}

// listenTCP proxies connections to addr on to target (node dst's real port).
func (n *partitionNet) listenTCP(addr, dst, target string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		n.t.Fatalf("proxy for %s: %v", dst, err)
	}
	n.addCloser(ln)
	n.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.wg.Go(func() { n.serveTCP(c, dst, target) })
		}
	})
}

func (n *partitionNet) serveTCP(down net.Conn, dst, target string) {
	src := n.tcpOwner(down.RemoteAddr().(*net.TCPAddr).Port, down.LocalAddr().(*net.TCPAddr).Port)
	if src == "" {
		n.unknown.Add(1)
	}
	if n.blocked(src, dst) {
		n.refused.Add(1)
		down.Close()
		return
	}
	up, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		down.Close() // the node is down: so is its proxy
		return
	}
	pc := &proxyConn{src: src, dst: dst, down: down, up: up}
	n.mu.Lock()
	if n.blockedLocked(src, dst) { // cut meanwhile
		n.mu.Unlock()
		pc.close()
		return
	}
	n.conns[pc] = true
	n.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, down); done <- struct{}{} }()
	go func() { io.Copy(down, up); done <- struct{}{} }()
	<-done
	pc.close()
	<-done
	n.mu.Lock()
	delete(n.conns, pc)
	n.mu.Unlock()
}

// tcpOwner is the node whose process holds the socket with local port
// srcPort connected to our port dstPort: the kernel's socket table gives the
// inode, the agents' descriptor tables give the process.
func (n *partitionNet) tcpOwner(srcPort, dstPort int) string {
	inode := ""
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || hexPort(fs[1]) != srcPort || hexPort(fs[2]) != dstPort {
				continue
			}
			inode = fs[9]
			break
		}
		f.Close()
		if inode != "" {
			break
		}
	}
	if inode == "" || inode == "0" {
		return ""
	}
	want := "socket:[" + inode + "]"
	for _, p := range n.c.procs {
		cmd, _ := p.current()
		if cmd == nil || cmd.Process == nil {
			continue
		}
		dir := fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == want {
				return p.id
			}
		}
	}
	return ""
}

// hexPort is the port of a /proc/net/tcp address ("0100007F:1F90").
func hexPort(addr string) int {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return -1
	}
	v, err := strconv.ParseUint(addr[i+1:], 16, 16)
	if err != nil {
		return -1
	}
	return int(v)
}

// listenUDP relays gossip packets to addr on to target, one upstream socket
// per sender, and relays whatever comes back on it to that sender.
func (n *partitionNet) listenUDP(addr, dst, target string) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		n.t.Fatalf("UDP relay for %s: %v", dst, err)
	}
	n.addCloser(pc)
	to, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		n.t.Fatal(err)
	}
	n.wg.Go(func() {
		ups := map[string]*net.UDPConn{}
		buf := make([]byte, 65536)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			fromUDP := from.(*net.UDPAddr)
			n.mu.Lock()
			src, known := n.gossipBy[fromUDP.Port]
			cut := n.blockedLocked(src, dst)
			n.mu.Unlock()
			if !known {
				n.unknown.Add(1)
			}
			if cut {
				n.dropped.Add(1)
				continue
			}
			up := ups[from.String()]
			if up == nil {
				if up, err = net.DialUDP("udp", nil, to); err != nil {
					continue
				}
				ups[from.String()] = up
				n.addCloser(up)
				n.wg.Go(func() {
					rb := make([]byte, 65536)
					for {
						k, err := up.Read(rb)
						if errors.Is(err, net.ErrClosed) {
							return
						}
						if err != nil {
							continue // ECONNREFUSED: the node is down for now
						}
						if n.blocked(dst, src) {
							n.dropped.Add(1)
							continue
						}
						pc.WriteTo(rb[:k], fromUDP)
					}
				})
			}
			up.Write(buf[:k])
		}
	})
}

// ---- the scenario ------------------------------------------------------------------

// TestFaultPartition is scenario 3: under the workload, the leader is cut
// off from both followers (Raft, forwarding and gossip, both directions) for
// 25 s while clients still reach it over HTTP. The majority elects a new
// leader and keeps firing; the old leader stops dispatching within
// oldLeaderQuiet of the cut; after the heal it rejoins, and every node holds
// the same jobs. A leader with followers delivers nothing itself, so the
// scenario then also cuts off the delivering follower for 12 s: it must send
// nothing later than followerQuiet after the cut, and its work moves on.
func TestFaultPartition(t *testing.T) {
	if os.Getenv("CHIME_CHAOS") == "" {
		t.Skip("chaos scenario: set CHIME_CHAOS=1 (make chaos)")
	}
	needBinary(t)
	rcv := newFaultReceiver(t)
	c, pn := startPartitionableCluster(t, 3, "--allow-private-targets")
	r := startFaultRun(t, "partition", c, rcv, 75*time.Second)
	ctx := r.ctx

	// Phase 1: the leader.
	r.at(12 * time.Second)
	old := r.leader()
	majority := c.others(old.id)
	// The old leader's own view, from the cut on: when it stops calling
	// itself leader.
	stepped := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		for ctx.Err() == nil && time.Since(start) < 15*time.Second {
			if st, err := old.status(ctx); err == nil && st.Raft.State != "Leader" {
				stepped <- time.Since(start)
				return
			}
			sleepCtx(ctx, 20*time.Millisecond)
		}
		stepped <- -1
	}()
	cut := time.Now()
	pn.isolate(old.id)
	r.leaderLost(cut)
	newID, toLeader := waitLeader(ctx, t, 20*time.Second, majority, old.id)
	r.note("cut leader %s off from %s and %s; %s leads after %s", old.id, majority[0].id, majority[1].id, newID, toLeader.Round(time.Millisecond))
	stepDown := <-stepped
	if stepDown < 0 {
		t.Errorf("the cut-off old leader %s still calls itself leader 15 s after the cut", old.id)
	}
	r.note("%s stepped down %s after the cut", old.id, stepDown.Round(time.Millisecond))

	// While cut off, the old leader must acknowledge no write. (The workload
	// also writes through it all along; the checker finds any acked write
	// that was lost.)
	r.at(30 * time.Second)
	code, body, err := old.doHeaders(ctx, http.MethodPost, "/v1/events", map[string]string{"Idempotency-Key": "partition-probe"},
		map[string]any{"type": "load.probe", "scheduledAt": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, nil)
	if err == nil && code/100 == 2 {
		t.Errorf("the cut-off old leader %s acknowledged a write: %d %s", old.id, code, body)
	}
	r.note("write through cut-off %s: %d %v", old.id, code, err)

	r.at(37 * time.Second)
	heal := time.Now()
	pn.healAll()
	rejoin := waitRejoined(ctx, t, c, old)
	r.note("healed; %s rejoined (agreed leader, ready, every node an alive voter everywhere) after %s", old.id, rejoin.Round(time.Millisecond))

	// Phase 2: the delivering follower.
	r.at(45 * time.Second)
	f := r.deliveringFollower()
	fCut := time.Now()
	pn.isolate(f.id)
	r.note("cut delivering follower %s off", f.id)
	r.at(57 * time.Second)
	fHeal := time.Now()
	pn.healAll()
	fRejoin := waitRejoined(ctx, t, c, f)
	r.note("healed; %s rejoined after %s", f.id, fRejoin.Round(time.Millisecond))

	r.finish()

	// Neither cut-off node sent a call later than its bound after its cut.
	quiet := func(p *proc, cut, heal time.Time, bound time.Duration) string {
		before, during, after := rcv.callsBy(p.id, cut, heal)
		s := "none"
		if !during.IsZero() {
			d := during.Sub(cut)
			s = "+" + d.Round(time.Millisecond).String()
			if d > bound {
				t.Errorf("the cut-off node %s sent a call %s after the cut, want none after %s", p.id, d.Round(time.Millisecond), bound)
			}
		}
		pre := "none"
		if !before.IsZero() {
			pre = "-" + cut.Sub(before).Round(time.Millisecond).String()
		}
		return fmt.Sprintf("%s (bound %s; last before the cut %s; %d calls after the heal)", s, bound, pre, after)
	}
	leaderQuiet := quiet(old, cut, heal, oldLeaderQuiet)
	fQuiet := quiet(f, fCut, fHeal, followerQuiet)
	if _, during, after := rcv.callsBy(f.id, fCut.Add(-5*time.Second), fCut); during.IsZero() && after == 0 {
		t.Errorf("%s delivered nothing: the follower phase tested no dispatching node", f.id)
	}

	// No divergence: every node lists the same jobs, field for field.
	sameJobs(ctx, t, c.procs)

	firstNew := "none"
	if at := rcv.firstArrivalAfter(cut); !at.IsZero() { // first delivery of a new key after the cut
		firstNew = "+" + at.Sub(cut).Round(10*time.Millisecond).String()
	}
	fireGap := "none"
	if occ := r.firstFireAfter(cut); !occ.IsZero() {
		fireGap = occ.Sub(cut).Round(10 * time.Millisecond).String()
	}
	if pn.unknown.Load() > 0 {
		t.Errorf("the proxies could not tell the sender of %d connections or packets: the cut may have leaked", pn.unknown.Load())
	}
	var unsettled []string
	for _, p := range c.procs {
		unsettled = append(unsettled, fmt.Sprintf("%s=%d", p.id, strings.Count(tail(p.logPath, 1<<30), "idempotency key not settled")))
	}
	t.Logf("FAULT partition: new leader %s after %s; old leader %s stepped down after %s; fire gap %s (first new delivery %s); "+
		"old leader's last call after the cut %s; rejoin after the heal %s; "+
		"delivering follower %s cut for 12 s: last call after the cut %s, rejoin %s; "+
		"idempotency claims left unsettled by node %s; proxies: %d connections refused or closed, %d packets dropped",
		newID, toLeader.Round(time.Millisecond), old.id, stepDown.Round(time.Millisecond), fireGap, firstNew,
		leaderQuiet, rejoin.Round(time.Millisecond), f.id, fQuiet, fRejoin.Round(time.Millisecond),
		strings.Join(unsettled, " "), pn.refused.Load(), pn.dropped.Load())
}

// waitRejoined waits until every node agrees on a leader, p is ready, and
// every node sees every node alive in gossip and a voter.
func waitRejoined(ctx context.Context, t *testing.T, c *cluster, p *proc) time.Duration {
	t.Helper()
	return waitFor(ctx, t, 30*time.Second, p.id+" to rejoin", func(ctx context.Context) (bool, string) {
		if id, why := agreedLeader(ctx, c.procs); id == "" {
			return false, why
		}
		if ok, why := p.ready(ctx); !ok {
			return false, p.id + ": " + why
		}
		for _, q := range c.procs {
			st, err := q.status(ctx)
			if err != nil {
				return false, q.id + ": " + err.Error()
			}
			for _, o := range c.procs {
				n, ok := st.node(o.id)
				if !ok || n.Gossip != "alive" || (n.Raft != "leader" && n.Raft != "voter") {
					return false, q.id + " sees " + st.nodesString()
				}
			}
		}
		return true, ""
	})
}

// callsBy is node's last call before from, its last call in [from, to), and
// how many it sent from to on.
func (r *faultReceiver) callsBy(node string, from, to time.Time) (before, during time.Time, after int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range r.byID {
		for _, x := range rs {
			if x.node != node {
				continue
			}
			switch {
			case x.at.Before(from):
				if x.at.After(before) {
					before = x.at
				}
			case x.at.Before(to):
				if x.at.After(during) {
					during = x.at
				}
			default:
				after++
			}
		}
	}
	return before, during, after
}

// firstFireAfter is the first firedAt of any workload job's occurrence after t.
func (r *faultRun) firstFireAfter(t time.Time) time.Time {
	jobs, _ := r.wl.acked()
	leader := r.leader()
	var first time.Time
	for _, j := range jobs {
		occs, err := listAll[occurrenceJSON](r.ctx, leader, "/v1/jobs/"+j.id+"/occurrences")
		if err != nil {
			r.t.Fatalf("occurrences of %s: %v", j.id, err)
		}
		for _, o := range occs {
			if o.FiredAt.After(t) && (first.IsZero() || o.FiredAt.Before(first)) {
				first = o.FiredAt
			}
		}
	}
	return first
}

// sameJobs waits until every node's GET /v1/jobs returns the same jobs with
// the same fields.
func sameJobs(ctx context.Context, t *testing.T, ps []*proc) {
	t.Helper()
	waitFor(ctx, t, 30*time.Second, "every node to list the same jobs", func(ctx context.Context) (bool, string) {
		var first map[string]string
		for i, p := range ps {
			items, err := listAll[json.RawMessage](ctx, p, "/v1/jobs")
			if err != nil {
				return false, p.id + ": " + err.Error()
			}
			jobs := map[string]string{}
			for _, it := range items {
				var j struct {
					ID string `json:"id"`
				}
				if err := json.Unmarshal(it, &j); err != nil {
					return false, err.Error()
				}
				jobs[j.ID] = string(it)
			}
			if i == 0 {
				first = jobs
				continue
			}
			if len(jobs) != len(first) {
				return false, fmt.Sprintf("%s lists %d jobs, %s %d", p.id, len(jobs), ps[0].id, len(first))
			}
			for id, j := range jobs {
				if first[id] != j {
					return false, fmt.Sprintf("job %s differs: %s has %s, %s has %s", id, p.id, j, ps[0].id, first[id])
				}
			}
		}
		return true, ""
	})
}
