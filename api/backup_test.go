package api

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/chime-sched/chime/fsm"
)

func download(t *testing.T, srv *httptest.Server) []byte {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + "/v1/cluster/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("snapshot: %d %s", resp.StatusCode, b)
	}
	return b
}

func upload(t *testing.T, srv *httptest.Server, query string, b []byte) response {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/cluster/restore"+query, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/octet-stream")
	return roundTrip(t, req)
}

// Issue 12, item 8: a backup with the root token's hash swapped for the hash
// of a token the attacker knows restored fine, and the planted token became
// root. A backup is now signed with a key derived from the cluster key: any
// changed byte is refused, foreign flag or not, and nothing is restored.
func TestRestoreRefusesATamperedBackup(t *testing.T) {
	srv, c := newNode(t)
	snap := download(t, srv)
	if !bytes.HasPrefix(snap, []byte("CHIMESNP")) {
		t.Fatal("a backup still starts with the snapshot stream")
	}
	if _, err := fsm.ReadSnapshotHeader(bytes.NewReader(snap)); err != nil {
		t.Fatalf("the backup's header: %v", err)
	}
	planted := "chime_planted-token-0123456789abcdef"
	rootHash, plantedHash := []byte(HashToken(testRootToken)), []byte(HashToken(planted))
	if len(rootHash) != len(plantedHash) || bytes.Count(snap, rootHash) != 1 {
		t.Fatalf("the root token's hash is not in the backup once")
	}
	forged := bytes.Replace(snap, rootHash, plantedHash, 1)
	before := c.FSM().AppliedIndex()
	for _, q := range []string{"", "?foreign=true"} {
		r := upload(t, srv, q, forged)
		if code, _ := errorOf(t, r); r.status != 400 || code != "invalid_snapshot" {
			t.Fatalf("forged backup%s: %d %s", q, r.status, r.raw)
		}
	}
	// Also one changed byte at the end, in the signature itself.
	flipped := bytes.Clone(snap)
	flipped[len(flipped)-1] ^= 1
	if r := upload(t, srv, "", flipped); r.status != 400 {
		t.Fatalf("flipped signature: %d %s", r.status, r.raw)
	}
	if c.FSM().Restores() != 0 || c.FSM().AppliedIndex() != before {
		t.Fatal("a refused restore changed the state")
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v1/tokens", nil)
	req.Header.Set("Authorization", "Bearer "+planted)
	if r := roundTrip(t, req); r.status != http.StatusUnauthorized {
		t.Fatalf("the planted token works: %d", r.status)
	}
	if r := upload(t, srv, "", snap); r.status != 200 {
		t.Fatalf("the untouched backup: %d %s", r.status, r.raw)
	}
}

// A backup this cluster did not sign (an older release's, or another
// cluster's) needs ?foreign=true.
func TestRestoreOfAnUnsignedBackupNeedsForeign(t *testing.T) {
	srv, c := newNode(t)
	do(t, srv, "POST", "/v1/projects", `{"name":"kept"}`)
	var plain bytes.Buffer // what a release before signing saved
	if err := fsm.WriteSnapshot(&plain, c.FSM().State()); err != nil {
		t.Fatal(err)
	}
	do(t, srv, "DELETE", "/v1/projects/kept", "")
	r := upload(t, srv, "", plain.Bytes())
	if code, field := errorOf(t, r); r.status != 400 || code != "unverified_snapshot" || field != "foreign" {
		t.Fatalf("unsigned backup: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "GET", "/v1/projects/kept", ""); r.status != 404 {
		t.Fatal("a refused restore changed the state")
	}
	if r := upload(t, srv, "?foreign=maybe", plain.Bytes()); r.status != 400 {
		t.Fatalf("?foreign=maybe: %d", r.status)
	}
	if r := upload(t, srv, "?foreign=true", plain.Bytes()); r.status != 200 {
		t.Fatalf("unsigned backup with foreign=true: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "GET", "/v1/projects/kept", ""); r.status != 200 {
		t.Fatalf("restored project missing: %d", r.status)
	}
}

// A backup of another cluster (another key) is refused through a follower
// too (the refusal crosses the forwarding hop with its code), and restores
// with foreign=true.
func TestRestoreOfAnotherClustersBackupThroughAFollower(t *testing.T) {
	other := newSingleNode(t) // its cluster key differs from the cluster's below
	do(t, other, "POST", "/v1/projects", `{"name":"from-elsewhere"}`)
	snap := download(t, other)

	nodes := startAPICluster(t, 3)
	f := followerOf(t, nodes)
	send := func(query string) response {
		req, _ := http.NewRequest("POST", f.srv.URL+"/v1/cluster/restore"+query, bytes.NewReader(snap))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Authorization", "Bearer "+testRootToken)
		return roundTrip(t, req)
	}
	r := send("")
	if code, _ := errorOf(t, r); r.status != 400 || code != "unverified_snapshot" {
		t.Fatalf("another cluster's backup: %d %s", r.status, r.raw)
	}
	if r := send("?foreign=true"); r.status != 200 {
		t.Fatalf("with foreign=true: %d %s", r.status, r.raw)
	}
	onWant(t, f, "", "GET", "/v1/projects/from-elsewhere", "", 200)
}
