// Package redistest gives tests a real Redis: the shared test server with a
// key prefix of the test's own (an embedded miniredis where none answers and
// CI does not require one), and redis-server processes a test starts, stops
// and restarts itself, for Cluster and failure tests.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Tests run against a real redis-server: 127.0.0.1:6379 unless
// QUOTAGATE_TEST_REDIS_URL names another (any NewClient form). Without one,
// and unless QUOTAGATE_TEST_REQUIRE_REDIS=1 (as in CI), they fall back to an
// embedded miniredis and say so once on stderr.

const defaultTestRedisURL = "redis://127.0.0.1:6379"

// URL is the test Redis: QUOTAGATE_TEST_REDIS_URL, else 127.0.0.1:6379.
func URL() string {
	if u := os.Getenv("QUOTAGATE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return defaultTestRedisURL
}

// Required reports whether a missing Redis must fail the tests (CI sets
// QUOTAGATE_TEST_REQUIRE_REDIS=1) rather than fall back or skip.
func Required() bool { return os.Getenv("QUOTAGATE_TEST_REQUIRE_REDIS") == "1" }

var (
	probeOnce sync.Once
	probeErr  error
)

// Reachable pings the test server once per test binary and, when it does
// not answer and Redis is not Required, says once on stderr that tests fall
// back to an embedded miniredis.
func Reachable() error {
	probeOnce.Do(func() {
		c, err := client(URL())
		if err != nil {
			probeErr = err
			return
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		probeErr = c.Ping(ctx).Err()
		if probeErr != nil && !Required() {
			fmt.Fprintf(os.Stderr, "redistest: no redis-server at %s; using embedded miniredis\n", strings.TrimPrefix(URL(), "redis://"))
		}
	})
	return probeErr
}

// New returns a client and a key prefix of this test's own; every
// key under the prefix is deleted when the test ends. It never flushes a
// server: the server may be someone else's.
func New(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	prefix := Prefix(t)
	if err := Reachable(); err != nil {
		if Required() {
			t.Fatalf("QUOTAGATE_TEST_REQUIRE_REDIS=1 but no redis at %s: %v", URL(), err)
		}
		m := miniredis.RunT(t)
		c := redis.NewClient(&redis.Options{Addr: m.Addr()})
		t.Cleanup(func() { c.Close() })
		return c, prefix
	}
	c, err := client(URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		DeleteByPrefix(t, c, prefix)
		c.Close()
	})
	return c, prefix
}

var unsafeKeyChars = regexp.MustCompile(`[^A-Za-z0-9_./-]`)

// Prefix is "qgtest:<test name>:<random>:", safe as a SCAN pattern.
func Prefix(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "qgtest:" + unsafeKeyChars.ReplaceAllString(t.Name(), "_") + ":" + hex.EncodeToString(b[:]) + ":"
}

// DeleteByPrefix removes the test's keys with SCAN and DEL, one key at a
// time so that it works on a Cluster too.
func DeleteByPrefix(t testing.TB, c redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	del := func(ctx context.Context, node redis.Cmdable) error {
		iter := node.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return del(ctx, n) })
	} else {
		err = del(ctx, c)
	}
	if err != nil {
		t.Logf("cleaning keys %s*: %v", prefix, err)
	}
}

// Server is a redis-server process a test started itself, on a free
// loopback port, so that it may stop and restart it.
type Server struct {
	t    testing.TB
	port int
	dir  string
	args []string
	cmd  *exec.Cmd
}

// ServerBinary returns the redis-server path, or skips the test when
// there is none and CI does not require one.
func ServerBinary(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if Required() {
			t.Fatalf("QUOTAGATE_TEST_REQUIRE_REDIS=1 but redis-server is not installed: %v", err)
		}
		t.Skip("redis-server is not installed; set QUOTAGATE_TEST_REQUIRE_REDIS=1 to make this a failure")
	}
	return path
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartServer starts redis-server on a free port with extra arguments;
// it is killed when the test ends.
func StartServer(t testing.TB, extra ...string) *Server {
	t.Helper()
	ServerBinary(t)
	s := &Server{t: t, port: FreePort(t), dir: t.TempDir(), args: extra}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Start (re)starts the server on its port, empty.
func (s *Server) Start() {
	s.t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log")}, s.args...)
	s.cmd = exec.Command(ServerBinary(s.t), args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	// Wait until it answers.
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server on %s did not answer: %v\n%s", s.Addr(), err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server, as a crash would, and reaps it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// client opens the test server; QUOTAGATE_TEST_REDIS_URL takes redis:// and
// rediss:// forms.
func client(url string) (redis.UniversalClient, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	o.ContextTimeoutEnabled = true
	return redis.NewClient(o), nil
}

// ServerAddr returns the host:port of a Redis that another process can use,
// with a key prefix of the test's own (cleaned up at the end): the shared
// test server, or an embedded miniredis listening on loopback.
func ServerAddr(t testing.TB) (addr, prefix string) {
	t.Helper()
	c, prefix := New(t)
	if rc, ok := c.(*redis.Client); ok {
		return rc.Options().Addr, prefix
	}
	t.Fatalf("redistest: test server is not a single node")
	return "", ""
}
