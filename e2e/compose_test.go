//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fault suite against docker-compose.yml's containers (make chaos-compose):
// the image that `make image` builds, three nodes under their own compose
// project (never `make up`'s, "chime"), their own env file, host ports and
// network, and the workload's receiver on that network's gateway. Faults are
// Docker's: `docker kill` of the leader's container, and `docker network
// disconnect` of the leader for 20 s.

const composeProject = "chime-e2e"

// composeRun is one compose cluster of the test: the command, and the
// environment it passes to compose (its own env file, ports, network and the
// receiver's range).
type composeRun struct {
	t       *testing.T
	cmd     []string // "docker compose" or "docker-compose", then -p project -f file
	env     []string
	net     string // the first three octets of the /24
	network string // Docker's name of the compose network
	ports   [3]int
}

// composeCommand is `docker compose` or the standalone docker-compose, found
// the way the Makefile does.
func composeCommand() []string {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	return nil
}

func (c *composeRun) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	all := append(append([]string{}, c.cmd...), args...)
	cmd := exec.CommandContext(ctx, all[0], all[1:]...)
	cmd.Dir = ".." // the repository root: docker-compose.yml, Makefile
	cmd.Env = c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %v\n%s", strings.Join(all, " "), err, out.String())
	}
	return out.String(), err
}

func (c *composeRun) must(timeout time.Duration, args ...string) string {
	c.t.Helper()
	out, err := c.run(timeout, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// docker runs the plain docker command.
func (c *composeRun) docker(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// container is the id of a service's container.
func (c *composeRun) container(service string) string {
	c.t.Helper()
	id := strings.TrimSpace(c.must(30*time.Second, "ps", "-q", service))
	if id == "" {
		c.t.Fatalf("no container for %s", service)
	}
	return id
}

// nodeIP is a service's fixed address on the compose network (chime1 is .11).
func (c *composeRun) nodeIP(service string) string {
	n, _ := strconv.Atoi(strings.TrimPrefix(service, "chime"))
	return fmt.Sprintf("%s.%d", c.net, 10+n)
}

// startCompose builds the image and starts the three containers; they are
// removed, with their volumes, when the test ends.
func startCompose(t *testing.T) *composeRun {
	t.Helper()
	if os.Getenv("CHIME_CHAOS_COMPOSE") == "" {
		t.Skip("the compose fault run: set CHIME_CHAOS_COMPOSE=1 (make chaos-compose)")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("docker is not usable: %v: %s", err, bytes.TrimSpace(out))
	}
	cc := composeCommand()
	if cc == nil {
		t.Skip(`neither "docker compose" nor docker-compose is installed`)
	}
	// Not 172.28.71, the default of `make up`, which may be running.
	netPrefix := os.Getenv("CHIME_E2E_NET")
	if netPrefix == "" {
		netPrefix = "172.28.72"
	}
	c := &composeRun{t: t, net: netPrefix, network: composeProject + "_chime"}
	c.cmd = append(cc, "-p", composeProject, "-f", "docker-compose.yml")

	key := make([]byte, 32)
	rand.Read(key)
	envFile := filepath.Join(t.TempDir(), "chime.env")
	if err := os.WriteFile(envFile, []byte("CHIME_CLUSTER_KEY="+hex.EncodeToString(key)+"\nCHIME_ROOT_TOKEN="+rootToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Compose substitutes these into docker-compose.yml; the containers get
	// only what the file gives them.
	c.env = append(os.Environ(), "CHIME_ENV_FILE="+envFile, "CHIME_NET="+netPrefix, "CHIME_IMAGE=chime:latest",
		"CHIME_ALLOWED_TARGET_CIDRS="+netPrefix+".0/24")
	for i := range c.ports {
		c.ports[i] = freePort(t)
		c.env = append(c.env, fmt.Sprintf("CHIME_PORT%d=%d", i+1, c.ports[i]))
	}

	build := exec.Command("make", "image")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	// A run that died before its cleanup leaves its own project behind.
	c.must(2*time.Minute, "down", "--volumes", "--remove-orphans")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.run(time.Minute, "logs", "--no-color", "--tail", "80")
			t.Logf("---- compose logs ----\n%s", out)
		}
		if out, err := c.run(2*time.Minute, "down", "--volumes", "--remove-orphans"); err != nil {
			t.Errorf("compose down: %v", err)
		} else {
			t.Logf("compose down: %s", strings.TrimSpace(out))
		}
	})
	c.must(3*time.Minute, "up", "-d")
	return c
}

// TestFaultCompose is the fault suite on containers: the leader's container
// killed and started again, then the new leader cut off the network for 20 s.
func TestFaultCompose(t *testing.T) {
	c := startCompose(t)
	// The network exists now: the receiver listens on its gateway, which the
	// containers reach and CHIME_ALLOWED_TARGET_CIDRS allows.
	rcv := newFaultReceiverOn(t, c.net+".1")
	cl := &cluster{t: t, key: "compose"}
	for i, port := range c.ports {
		cl.procs = append(cl.procs, externalProc(t, fmt.Sprintf("chime%d", i+1), fmt.Sprintf("127.0.0.1:%d", port)))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	took := waitReady(ctx, t, 2*time.Minute, cl.procs...)
	cancel()
	t.Logf("compose: 3 containers ready %s after up; receiver %s", took.Round(time.Millisecond), rcv.url)

	r := startFaultRun(t, "compose", cl, rcv, envDuration("CHIME_FAULT_COMPOSE_RUN", 100*time.Second))

	// (a) docker kill the leader's container; a new leader; start it again.
	r.at(20 * time.Second)
	l := r.leader()
	id := c.container(l.id)
	l.live.Store(false)
	if err := c.docker("kill", id); err != nil {
		t.Fatal(err)
	}
	r.leaderLost(time.Now())
	nl, took := waitLeader(r.ctx, t, 20*time.Second, r.live(), l.id)
	r.note("docker kill leader %s; %s leads after %s", l.id, nl, took.Round(time.Millisecond))
	sleepCtx(r.ctx, 5*time.Second)
	if err := c.docker("start", id); err != nil {
		t.Fatal(err)
	}
	l.live.Store(true)
	took = waitReady(r.ctx, t, 60*time.Second, l)
	r.note("docker start %s, ready after %s", l.id, took.Round(time.Millisecond))
	waitVoters(r.ctx, t, 30*time.Second, r.leader(), "chime1", "chime2", "chime3")

	// (b) the (new) leader off the compose network for 20 s, then back with
	// its fixed address and its service name.
	r.at(50 * time.Second)
	l = r.leader()
	id = c.container(l.id)
	l.live.Store(false) // its published port goes with the network
	if err := c.docker("network", "disconnect", c.network, id); err != nil {
		t.Fatal(err)
	}
	r.leaderLost(time.Now())
	nl, took = waitLeader(r.ctx, t, 20*time.Second, r.live(), l.id)
	r.note("docker network disconnect leader %s; %s leads after %s", l.id, nl, took.Round(time.Millisecond))
	sleepCtx(r.ctx, 20*time.Second-took)
	if err := c.docker("network", "connect", "--ip", c.nodeIP(l.id), "--alias", l.id, c.network, id); err != nil {
		t.Fatal(err)
	}
	l.live.Store(true)
	took = waitReady(r.ctx, t, 60*time.Second, l)
	took += waitVoters(r.ctx, t, 60*time.Second, l, "chime1", "chime2", "chime3")
	r.note("docker network connect %s (%s), ready and a voter again after %s", l.id, c.nodeIP(l.id), took.Round(time.Millisecond))

	r.finish()
}
