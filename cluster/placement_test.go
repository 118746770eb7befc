package cluster

import (
	"fmt"
	"math"
	"testing"
	"time"
)

func TestPlaceIsStableAndBalanced(t *testing.T) {
	nodes := []string{"n1", "n2", "n3"}
	counts := map[string]int{}
	const keys = 30000
	owner := map[string]string{}
	for i := range keys {
		k := fmt.Sprintf("dlv_%08d", i)
		o := Place(k, nodes)
		if o != Place(k, []string{"n3", "n1", "n2"}) {
			t.Fatalf("owner of %s depends on list order", k)
		}
		owner[k] = o
		counts[o]++
	}
	for _, n := range nodes {
		share := float64(counts[n]) / keys
		if math.Abs(share-1.0/3) > 0.02 {
			t.Errorf("%s owns %.3f of the keys, want about 1/3 (%v)", n, share, counts)
		}
	}
	// Removing n2 moves only n2's keys.
	moved := 0
	for k, o := range owner {
		n := Place(k, []string{"n1", "n3"})
		if o != "n2" && n != o {
			t.Fatalf("%s moved from %s to %s though %s is still there", k, o, n, o)
		}
		if o == "n2" {
			moved++
		}
	}
	if moved != counts["n2"] {
		t.Fatalf("moved %d, want %d", moved, counts["n2"])
	}
}

func TestDeliveryNodesExcludeLeaderWhileItHasHelp(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(5 * time.Second)
	for _, n := range tc.running() {
		eventually(t, 5*time.Second, n.id+" sees the two followers deliver", func() bool {
			got := n.c.DeliveryNodes()
			return len(got) == 2 && got[0] != leader.id && got[1] != leader.id && got[0] < got[1]
		})
	}
	for _, n := range tc.running() {
		if n != leader {
			n.c.Kill()
			n.c = nil
		}
	}
	eventually(t, 5*time.Second, "leader delivers alone", func() bool {
		got := leader.c.DeliveryNodes()
		return len(got) == 1 && got[0] == leader.id
	})
}
