package quota

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/internal/redistest"
)

// TestRedisCluster runs the shared suite through a Cluster client against
// three redis-server processes in cluster mode. Each test's budgets have
// their own hash tag, so the scripts run on every node.
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	redistest.ServerBinary(t)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		if redistest.Required() {
			t.Fatalf("QUOTAGATE_TEST_REQUIRE_REDIS=1 but redis-cli is not installed: %v", err)
		}
		t.Skip("redis-cli is not installed")
	}
	var nodes []*redistest.Server
	var addrs []string
	for range 3 {
		n := redistest.StartServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr())
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	waitClusterOK(t, addrs)

	url := "redis+cluster://" + strings.Join(addrs, ",")
	client, err := NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })

	testStore(t, func(t *testing.T, o Options) Store {
		o.KeyPrefix = redistest.Prefix(t)
		return NewRedisStore(client, o)
	})

	// The keys really are spread over the nodes.
	used := 0
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		n, err := c.DBSize(context.Background()).Result()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			used++
		}
	}
	if used < 2 {
		t.Errorf("nodes holding keys: got %d, want the tests' tags spread over at least 2 of 3", used)
	}
}

func waitClusterOK(t *testing.T, addrs []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := c.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Fatalf("cluster node %s: not ok after 30s: %v %s", a, err, firstLine(info))
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return fmt.Sprintf("%q", strings.TrimSpace(line))
}
