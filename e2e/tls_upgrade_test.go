package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// preTLSCommit is the last main commit before the Raft port spoke TLS: its
// nodes run the HMAC handshake in plaintext and close a connection that
// starts with anything else (a TLS hello).
const preTLSCommit = "5be3086"

// buildCommit builds ./cmd/chime as of a git commit of this repository into
// dir, from a `git archive` of it, with the module cache this build uses.
func buildCommit(ctx context.Context, commit, dir string) (string, error) {
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	archive := exec.CommandContext(ctx, "sh", "-c", fmt.Sprintf("git archive --format=tar %s | tar -x -C %s", commit, src))
	archive.Dir = ".."
	if out, err := archive.CombinedOutput(); err != nil {
		return "", fmt.Errorf("git archive %s: %v\n%s", commit, err, out)
	}
	bin := filepath.Join(dir, "chime-"+commit)
	build := exec.CommandContext(ctx, "go", "build", "-ldflags", "-X main.version=pre-tls", "-o", bin, "./cmd/chime")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOPROXY=off")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/chime at %s: %v\n%s", commit, err, out)
	}
	return bin, nil
}

// TestFaultTLSUpgradeFromPlaintext is the documented two-step upgrade of a
// cluster from the version before TLS: three nodes of that build (the pre-TLS
// main commit, built from git), each replaced by this build with --tls-mode
// upgrade (followers first, the leader last, each ready and a voter before
// the next), then each restarted with --tls-mode on. Writes through every
// node are acknowledged and replicated after every step. The mixed phases
// really are mixed: an upgrade node logs that it speaks plaintext to an old
// peer.
func TestFaultTLSUpgradeFromPlaintext(t *testing.T) {
	if os.Getenv("CHIME_CHAOS") == "" {
		t.Skip("upgrade scenario: set CHIME_CHAOS=1 (make chaos)")
	}
	needBinary(t)
	if err := exec.Command("git", "-C", "..", "cat-file", "-e", preTLSCommit+"^{commit}").Run(); err != nil {
		t.Skipf("commit %s not in this checkout's git history", preTLSCommit)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	bctx, bcancel := context.WithTimeout(ctx, 4*time.Minute)
	oldBin, err := buildCommit(bctx, preTLSCommit, t.TempDir())
	bcancel()
	if err != nil {
		t.Fatal(err)
	}

	key := newClusterKey(t)
	var procs []*proc
	for i := 1; i <= 3; i++ {
		procs = append(procs, newProc(t, procOpts{id: fmt.Sprintf("n%d", i), clusterKey: key, bootstrapExpect: 3}))
	}
	for _, p := range procs {
		var others []string
		for _, o := range procs {
			if o != p {
				others = append(others, o.gossip)
			}
		}
		p.setJoin(others)
		p.setBin(oldBin)
		p.start()
	}
	waitReady(ctx, t, 60*time.Second, procs...)
	ids := []string{"n1", "n2", "n3"}
	var names []string
	writeEach := func(step string) {
		t.Helper()
		for _, p := range procs {
			name := fmt.Sprintf("%s-via-%s", step, p.id)
			mustCreate(ctx, t, name, p)
			names = append(names, name)
		}
		for _, p := range procs {
			waitHasAll(ctx, t, 15*time.Second, p, names)
		}
	}
	writeEach("old")

	// roll restarts every node with SIGTERM, followers first and the leader
	// last, as this build with --tls-mode mode.
	roll := func(mode string) {
		t.Helper()
		leader, _ := waitLeader(ctx, t, 15*time.Second, procs, "")
		var order []*proc
		var last *proc
		for _, p := range procs {
			if p.id == leader {
				last = p
			} else {
				order = append(order, p)
			}
		}
		for _, p := range append(order, last) {
			start := time.Now()
			if code, _ := p.Term(); code != 0 {
				t.Errorf("%s: exit code %d after SIGTERM", p.id, code)
			}
			p.setBin(chimeBin)
			p.args = setFlag(p.args, "--tls-mode", mode)
			p.Restart()
			waitReady(ctx, t, 45*time.Second, procs...)
			waitVoters(ctx, t, 45*time.Second, p, ids...)
			writeEach(mode + "-" + p.id)
			t.Logf("%s restarted with --tls-mode %s: ready, a voter, writes through every node after %s",
				p.id, mode, time.Since(start).Round(100*time.Millisecond))
		}
	}
	roll("upgrade")
	fellBack := 0
	for _, p := range procs {
		fellBack += strings.Count(tail(p.logPath, 1<<20), "speaking plaintext to it")
	}
	if fellBack == 0 {
		t.Error("no upgrade node spoke plaintext to an old one: the mixed phase was not tested")
	}
	roll("on")
	t.Logf("old → upgrade → on: %d projects written through every node at every step; %d plaintext fallbacks while mixed", len(names), fellBack)
}

// setFlag returns args with flag set to value (replaced if present).
func setFlag(args []string, flag, value string) []string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			out := append([]string(nil), args...)
			out[i+1] = value
			return out
		}
	}
	return append(append([]string(nil), args...), flag, value)
}
