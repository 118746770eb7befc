package cluster

import (
	"encoding/json"
	"testing"

	"github.com/hashicorp/raft"
)

// The leader switches quota enforcement on only once every server in the
// Raft configuration gossips a level that enforces them.
func TestServersAtLeast(t *testing.T) {
	cfg := func(ids ...string) []raft.Server {
		var out []raft.Server
		for _, id := range ids {
			out = append(out, raft.Server{ID: raft.ServerID(id), Suffrage: raft.Voter})
		}
		return out
	}
	mem := func(id string, level int, state string) Member {
		return Member{nodeMeta: nodeMeta{ID: id, Level: level}, State: state}
	}
	for _, c := range []struct {
		name    string
		servers []raft.Server
		members []Member
		self    int
		want    bool
	}{
		{"all upgraded", cfg("a", "b", "c"), []Member{mem("b", 1, GossipAlive), mem("c", 2, GossipSuspect)}, 1, true},
		{"one older (no level gossiped)", cfg("a", "b", "c"), []Member{mem("b", 1, GossipAlive), mem("c", 0, GossipAlive)}, 1, false},
		{"one never heard of", cfg("a", "b", "c"), []Member{mem("b", 1, GossipAlive)}, 1, false},
		{"one left", cfg("a", "b"), []Member{mem("b", 1, GossipLeft)}, 1, false},
		{"a dead one counts with its last level", cfg("a", "b"), []Member{mem("b", 1, GossipDead)}, 1, true},
		{"a dead older one", cfg("a", "b"), []Member{mem("b", 0, GossipDead)}, 1, false},
		{"self older", cfg("a", "b"), []Member{mem("b", 1, GossipAlive)}, 0, false},
		{"members outside the configuration do not matter", cfg("a"), []Member{mem("x", 0, GossipAlive)}, 1, true},
		{"no configuration", nil, nil, 1, false},
	} {
		if got := serversAtLeast(c.servers, c.members, "a", c.self, LevelQuotas); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

// An older node's metadata has no level: it reads as 0. This build's has.
func TestNodeMetaLevel(t *testing.T) {
	var old nodeMeta
	if err := json.Unmarshal([]byte(`{"id":"n1","raft":"127.0.0.1:1","http":"127.0.0.1:2","ver":"0.9"}`), &old); err != nil || old.Level != 0 {
		t.Fatalf("older metadata: %+v, %v", old, err)
	}
	b, _ := json.Marshal(nodeMeta{ID: "n1", Level: FeatureLevel})
	var got nodeMeta
	if err := json.Unmarshal(b, &got); err != nil || got.Level != FeatureLevel {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
}
