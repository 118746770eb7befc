package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "chime.yaml")
	if err := os.WriteFile(file, []byte("http-addr: 127.0.0.1:9000\nraft-addr: 127.0.0.1:9001\njoin: [a:1, b:2]\npoll-interval: 1m\ncluster-key:\nallowed-target-cidrs: [10.9.0.0/16]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CHIME_RAFT_ADDR", "127.0.0.1:9501")
	t.Setenv("CHIME_GOSSIP_ADDR", "127.0.0.1:9502")
	t.Setenv("CHIME_ALLOWED_TARGET_CIDRS", "")  // empty: unset, the file's value holds
	t.Setenv("CHIME_ALLOW_PRIVATE_TARGETS", "") // empty: unset, not a bad bool
	var f agentFlags
	fs := agentFlagSet(&f)
	if err := loadSettings(fs, []string{"--config", file, "--gossip-addr", "127.0.0.1:9902"}); err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]string{
		"file only":          {f.httpAddr, "127.0.0.1:9000"},
		"env beats file":     {f.raftAddr, "127.0.0.1:9501"},
		"flag beats env":     {f.gossipAddr, "127.0.0.1:9902"},
		"list from file":     {f.join.String(), "a:1,b:2"},
		"default kept":       {f.clusterName, "chime"},
		"empty value unset":  {f.clusterKey, ""},
		"duration from file": {f.pollInterval.String(), time.Minute.String()},
		"empty env unset":    {f.allowedTargetCIDRs.String(), "10.9.0.0/16"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s: got %q, want %q", name, c[0], c[1])
		}
	}
}

func TestSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("htp-addr: x\n"), 0o600)
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown file key", []string{"--config", bad}, nil, `unknown setting "htp-addr"`},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, nil, "--config"},
		{"bad env value", nil, map[string]string{"CHIME_BOOTSTRAP_EXPECT": "three"}, "CHIME_BOOTSTRAP_EXPECT"},
		{"stray argument", []string{"extra"}, nil, `unexpected argument "extra"`},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var f agentFlags
			fs := agentFlagSet(&f)
			fs.SetOutput(&strings.Builder{})
			err := loadSettings(fs, tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
