package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDiskFull runs one node whose data dir is a small tmpfs and fills it,
// first to below the node's free-space reserve, then to the last byte.
// Issue 12 (item 12): the first failing write answered 500, then the node
// flapped through an election a second. Now writes are refused with 503
// disk_full and Retry-After while the disk is short, readiness says why, the
// node does not flap, and it takes writes again once space is freed.
//
// It needs to mount a tmpfs (root on Linux, as CI is); elsewhere it skips.
func TestDiskFull(t *testing.T) {
	needBinary(t)
	if runtime.GOOS != "linux" {
		t.Skip("mounts a tmpfs: Linux only")
	}
	p := newProc(t, procOpts{id: "n1", clusterKey: randomKey(t), extra: []string{"--disk-reserve", "8MiB", "--allow-private-targets"}})
	if err := os.MkdirAll(p.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", p.dataDir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, bytes.TrimSpace(out))
	}
	// Registered after newProc's cleanup, so it runs first: the node is
	// killed before the mount goes (lazily, in case a file is still open).
	t.Cleanup(func() {
		p.kill(false)
		_ = exec.Command("umount", "-l", p.dataDir).Run()
	})
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	p.start()
	waitReady(ctx, t, 20*time.Second, p)
	if code, err := p.createProject(ctx, "before"); err != nil || code != http.StatusCreated {
		t.Fatalf("create with free space: HTTP %d, %v", code, err)
	}

	// Below the reserve (8 MiB) but not full: refused before anything
	// reaches the disk, so Raft never fails a write and nothing flaps.
	filler := filepath.Join(p.dataDir, "filler")
	fill(t, filler, 4<<20)
	waitFor(ctx, t, 5*time.Second, "readiness to report the short disk", func(ctx context.Context) (bool, string) {
		ok, why := p.ready(ctx)
		return !ok && strings.Contains(why, "disk"), why
	})
	elections := leaderStates(t, p)
	for i := range 3 {
		expectDiskFull(ctx, t, p, fmt.Sprintf("short-%d", i))
	}
	if n := leaderStates(t, p) - elections; n > 0 {
		t.Errorf("the node stood in %d elections with a disk below its reserve; want none", n)
	}

	// Space freed: writes work again within a few seconds.
	_ = os.Remove(filler)
	recovered(ctx, t, p, "after-short")

	// Filled to the last byte at once, before the guard's next look: a
	// write with a large payload needs new pages in the log store, reaches
	// Raft and fails with ENOSPC, and still answers 503; the node then backs
	// off instead of standing in an election every second.
	elections = leaderStates(t, p)
	fill(t, filler, 0)
	big := strings.Repeat("x", 200<<10)
	for i := range 3 {
		expectDiskFullAt(ctx, t, p, "/v1/jobs", fmt.Sprintf(`{"name":"full-%d","callbackUrl":"http://127.0.0.1:9/x","delaySeconds":3600,"payload":{"pad":%q}}`, i, big))
	}
	sleepCtx(ctx, 12*time.Second)
	flaps := leaderStates(t, p) - elections
	if b, err := os.ReadFile(p.logPath); err == nil && !bytes.Contains(b, []byte("no space left on device")) {
		t.Log("note: no write reached the disk in the full phase (the guard saw it first); the ENOSPC path was not exercised")
	}
	if flaps > 3 {
		t.Errorf("the node became leader %d times in about 12 s with a full disk; want at most 3 (it flaps)", flaps)
	}
	_ = os.Remove(filler)
	took := recovered(ctx, t, p, "after-full")
	t.Logf("full disk: became leader %d times in 12 s; writes accepted again %s after the space was freed", flaps, took.Round(time.Millisecond))
}

// recovered waits until a write succeeds and the node is ready again.
func recovered(ctx context.Context, t *testing.T, p *proc, name string) time.Duration {
	t.Helper()
	took := waitFor(ctx, t, 45*time.Second, "a write to succeed after freeing the disk", func(ctx context.Context) (bool, string) {
		code, err := p.createProject(ctx, name)
		return code == http.StatusCreated, fmt.Sprintf("HTTP %d %v", code, err)
	})
	waitReady(ctx, t, 10*time.Second, p)
	return took
}

// expectDiskFull checks that a write is refused with 503 disk_full and a
// Retry-After.
func expectDiskFull(ctx context.Context, t *testing.T, p *proc, name string) {
	t.Helper()
	expectDiskFullAt(ctx, t, p, "/v1/projects", `{"name":"`+name+`"}`)
}

func expectDiskFullAt(ctx context.Context, t *testing.T, p *proc, path, body string) {
	t.Helper()
	name := path
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.url(path), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+rootToken)
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", name, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(b.String(), `"disk_full"`) || resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST %s on a short disk: HTTP %d Retry-After %q %.300s; want 503 disk_full with Retry-After",
			name, resp.StatusCode, resp.Header.Get("Retry-After"), bytes.TrimSpace(b.Bytes()))
	}
}

// fill writes zeros to path until the file system has at most leave bytes
// free (0: until it is full).
func fill(t *testing.T, path string, leave int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
			t.Fatal(err)
		}
		free := int64(st.Bavail) * int64(st.Bsize)
		if free <= leave {
			return
		}
		n := min(int64(len(chunk)), free-leave)
		if _, err := f.Write(chunk[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

// leaderStates counts the times the node's log says it became leader.
func leaderStates(t *testing.T, p *proc) int {
	t.Helper()
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("entering leader state"))
}

// randomKey is a fresh cluster key: 32 random bytes in hex.
func randomKey(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
