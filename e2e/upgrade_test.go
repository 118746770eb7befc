package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Scenario 5, rolling upgrade. Build B is this code built with -tags
// chime_next (fsm/next.go, cmd/chime/next.go): a stand-in for a newer version
// whose leader applies an ignorable command (type 0x81) every 2 s, counted in
// B's state and written into B's snapshots as an ignorable record (0x81).
//
// Under the workload, the three nodes of a cluster of build A are replaced
// by B one at a time, followers first and the leader last, each back and a
// voter before the next goes; then, once a follower holds a snapshot B wrote,
// it is downgraded back to A. A restores that snapshot skipping the 0x81
// record and then skips the 0x81 commands the B leader keeps applying (the
// rules of docs/operations.md, "Mixed versions"). The invariants of the fault
// suite must hold throughout.

const nextVersion = "next-e2e"

// buildNext builds B into a temporary directory.
func buildNext(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "chime-next")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "chime_next",
		"-ldflags", "-X main.version="+nextVersion, "-o", bin, "../cmd/chime")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -tags chime_next ./cmd/chime: %v\n%s", err, out)
	}
	return bin, nil
}

func TestFaultRollingUpgrade(t *testing.T) {
	if os.Getenv("CHIME_CHAOS") == "" {
		t.Skip("chaos scenario: set CHIME_CHAOS=1 (make chaos)")
	}
	needBinary(t)

	// B builds while the cluster starts and the workload is set up.
	type built struct {
		bin string
		err error
	}
	buildCtx, cancelBuild := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancelBuild()
	binDir := t.TempDir()
	buildDone := make(chan built, 1)
	go func() {
		bin, err := buildNext(buildCtx, binDir)
		buildDone <- built{bin, err}
	}()

	// Small snapshot settings, so that B's snapshots exist soon after the
	// upgrade and a restarted node may be sent one by the leader.
	r := newFaultRun(t, "rolling-upgrade", 3, 80*time.Second,
		"--raft-snapshot-threshold", "100", "--raft-snapshot-interval", "1s", "--raft-trailing-logs", "50")
	var b built
	select {
	case b = <-buildDone:
	case <-r.ctx.Done():
		t.Fatal("building B: ", r.ctx.Err())
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	ids := []string{"n1", "n2", "n3"}

	// replace stops p with SIGTERM and starts it again from the same data dir
	// and flags with bin; it returns once p is ready and all three are voters.
	replace := func(p *proc, bin, version string) (exit, total time.Duration) {
		start := time.Now()
		code, took := p.Term()
		if code != 0 {
			t.Errorf("%s: exit code %d after SIGTERM", p.id, code)
		}
		p.setBin(bin)
		p.Restart()
		waitReady(r.ctx, t, 30*time.Second, p)
		waitVoters(r.ctx, t, 30*time.Second, r.leader(), ids...)
		waitFor(r.ctx, t, 15*time.Second, p.id+" to show version "+version, func(ctx context.Context) (bool, string) {
			st, err := r.leader().status(ctx)
			if err != nil {
				return false, err.Error()
			}
			n, _ := st.node(p.id)
			return n.Version == version, fmt.Sprintf("%s has version %q", p.id, n.Version)
		})
		return took, time.Since(start)
	}

	// 1. Upgrade: followers first, the leader last.
	r.at(5 * time.Second)
	leader := r.leader()
	order := append(r.c.others(leader.id), leader)
	var replaced []string
	for _, p := range order {
		wasLeader := p == leader
		stopAt := time.Now()
		exit, total := replace(p, b.bin, nextVersion)
		if wasLeader {
			r.leaderLost(stopAt)
		}
		role := "follower"
		if wasLeader {
			role = "leader"
		}
		r.note("upgraded %s %s to B: SIGTERM exit after %s, ready and a voter after %s", role, p.id, exit.Round(time.Millisecond), total.Round(time.Millisecond))
		replaced = append(replaced, fmt.Sprintf("%s(%s)=%s", p.id, role, total.Round(100*time.Millisecond)))
	}

	// B's leader applies heartbeats and B's state counts them. Leadership
	// moved while B nodes were followers, so the count carries the
	// heartbeats of the earlier B leaders, if there were any.
	var hb heartbeat
	waitFor(r.ctx, t, 15*time.Second, "the B leader to apply heartbeats", func(ctx context.Context) (bool, string) {
		l := r.leader()
		hb = lastHeartbeat(l)
		return hb.count >= 3 && !hb.ignored, fmt.Sprintf("%s: last heartbeat %+v", l.id, hb)
	})
	r.note("B leader %s applied heartbeat #%d at index %d", r.leader().id, hb.count, hb.index)

	// 2. Downgrade a follower once its newest local snapshot was written by B
	// (it holds a 0x81 record).
	f := r.c.others(r.leader().id)[0]
	var snapIndex uint64
	waitFor(r.ctx, t, 30*time.Second, f.id+" to hold a snapshot written by B", func(context.Context) (bool, string) {
		idx, types, err := newestSnapshot(f.dataDir)
		if err != nil {
			return false, err.Error()
		}
		snapIndex = idx
		return types[0x81] > 0, fmt.Sprintf("newest snapshot at index %d has record types %v", idx, types)
	})
	logFrom := logSize(f)
	exit, total := replace(f, chimeBin, "dev")
	r.note("downgraded follower %s to A (B snapshot at index %d on disk): SIGTERM exit after %s, ready and a voter after %s",
		f.id, snapIndex, exit.Round(time.Millisecond), total.Round(time.Millisecond))

	// A restored B's snapshot (skipping its 0x81 record) and goes on applying
	// the log, skipping the 0x81 commands: it passes a heartbeat the B leader
	// applied after A started, and is still running.
	// (Raft falls back to an older snapshot when the newest does not restore:
	// the index shows which one A restored.)
	restored := uint64(0)
	for _, m := range restoredLine.FindAllStringSubmatch(readFrom(f.logPath, logFrom), -1) {
		restored, _ = strconv.ParseUint(m[1], 10, 64)
	}
	if restored < snapIndex {
		t.Errorf("%s (A) restored the snapshot at index %d, not B's at %d or a later one", f.id, restored, snapIndex)
	}
	var after heartbeat
	waitFor(r.ctx, t, 20*time.Second, f.id+" (A) to apply past a later heartbeat", func(ctx context.Context) (bool, string) {
		if why := checkRunning([]*proc{f}); why != "" {
			return false, why
		}
		after = lastHeartbeat(r.leader())
		if after.count <= hb.count+1 {
			return false, fmt.Sprintf("last heartbeat %+v", after)
		}
		st, err := f.status(ctx)
		if err != nil {
			return false, err.Error()
		}
		return st.Raft.AppliedIndex >= after.index, fmt.Sprintf("%s applied %d, heartbeat at %d", f.id, st.Raft.AppliedIndex, after.index)
	})
	r.note("%s (A) restored the snapshot at index %d and applied past heartbeat #%d at index %d", f.id, restored, after.count, after.index)

	r.summary = func() string {
		refusals := 0
		for _, p := range r.c.procs {
			refusals += countRefusals(tail(p.logPath, 1<<30))
		}
		if refusals > 0 {
			t.Errorf("%d refusal lines in the logs (unknown command or snapshot record, or a newer snapshot version)", refusals)
		}
		return fmt.Sprintf("upgrade A→B replaced %s; downgrade of %s to A with a B snapshot: works, ready and a voter after %s, "+
			"skipped heartbeats up to #%d; refusals %d", strings.Join(replaced, " "), f.id, total.Round(100*time.Millisecond), after.count, refusals)
	}
	r.finish()
}

type heartbeat struct {
	index, count uint64
	ignored      bool
}

var heartbeatLine = regexp.MustCompile(`msg="next heartbeat applied".* raft_index=(\d+) ignored=(\w+) count=(\d+)`)

// lastHeartbeat is the last heartbeat p logged applying (zero if none).
func lastHeartbeat(p *proc) heartbeat {
	var hb heartbeat
	for _, line := range strings.Split(tail(p.logPath, 400), "\n") {
		if m := heartbeatLine.FindStringSubmatch(line); m != nil {
			hb.index, _ = strconv.ParseUint(m[1], 10, 64)
			hb.ignored = m[2] == "true"
			hb.count, _ = strconv.ParseUint(m[3], 10, 64)
		}
	}
	return hb
}

var restoredLine = regexp.MustCompile(`msg="fsm: restored snapshot".* raft_index=(\d+)`)

var refusalText = []string{"failed to restore snapshot", "refusing to apply log", "upgrade this node", "newer than this node supports", "failed to load any existing snapshots"}

func countRefusals(log string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		for _, s := range refusalText {
			if strings.Contains(line, s) {
				n++
				break
			}
		}
	}
	return n
}

func logSize(p *proc) int64 {
	fi, err := os.Stat(p.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func readFrom(path string, off int64) string {
	b, err := os.ReadFile(path)
	if err != nil || off > int64(len(b)) {
		return ""
	}
	return string(b[off:])
}

// newestSnapshot reads the newest snapshot of a node's data dir and counts
// its records by type. The stream format is fsm/snapshot.go's: "CHIMESNP",
// uvarint length and header, then records (type byte, uvarint length, body)
// up to the end marker (type 0, length 0).
func newestSnapshot(dataDir string) (uint64, map[byte]int, error) {
	dirs, err := filepath.Glob(filepath.Join(dataDir, "raft", "snapshots", "*", "meta.json"))
	if err != nil || len(dirs) == 0 {
		return 0, nil, fmt.Errorf("no snapshots yet (%v)", err)
	}
	var newest string
	var index uint64
	for _, m := range dirs {
		b, err := os.ReadFile(m)
		if err != nil {
			continue // being written or reaped
		}
		var meta struct{ Index uint64 }
		if json.Unmarshal(b, &meta) == nil && meta.Index > index {
			newest, index = filepath.Dir(m), meta.Index
		}
	}
	if newest == "" {
		return 0, nil, fmt.Errorf("no readable snapshot meta among %d", len(dirs))
	}
	b, err := os.ReadFile(filepath.Join(newest, "state.bin"))
	if err != nil {
		return index, nil, err
	}
	br := bufio.NewReader(bytes.NewReader(b))
	magic := make([]byte, 8)
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != "CHIMESNP" {
		return index, nil, fmt.Errorf("%s: bad magic", newest)
	}
	skip := func() error {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return err
		}
		_, err = br.Discard(int(n))
		return err
	}
	if err := skip(); err != nil {
		return index, nil, fmt.Errorf("%s: header: %w", newest, err)
	}
	types := map[byte]int{}
	for {
		typ, err := br.ReadByte()
		if err != nil {
			return index, nil, fmt.Errorf("%s: truncated", newest)
		}
		if typ == 0 {
			return index, types, nil
		}
		if err := skip(); err != nil {
			return index, nil, fmt.Errorf("%s: truncated", newest)
		}
		types[typ]++
	}
}
