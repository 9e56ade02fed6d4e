package quota

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/internal/redistest"
)

// TestRedisStoreClock runs the exact-time suite through the Lua scripts,
// on miniredis, whose TIME the test can set: a real redis-server's clock
// cannot be moved. It checks that admit.lua and MemoryStore agree to the
// millisecond.
func TestRedisStoreClock(t *testing.T) {
	testStoreClock(t, func(t *testing.T, o Options) (Store, func(time.Time)) {
		m := miniredis.RunT(t)
		c := redis.NewClient(&redis.Options{Addr: m.Addr()})
		t.Cleanup(func() { c.Close() })
		return NewRedisStore(c, o), m.SetTime
	})
}

// TestRedisKeysExpire checks that every key an admission writes has a TTL,
// so that abandoned budgets and waiters vanish by themselves.
func TestRedisKeysExpire(t *testing.T) {
	c, prefix := redistest.New(t)
	s := NewRedisStore(c, Options{KeyPrefix: prefix, Window: 2 * time.Second, Buckets: 20})
	ctx := context.Background()
	b := []Budget{{Scope: "s", Tag: "pool", ID: "pool", Limits: Limits{TPM: 100, RPM: 10, Concurrency: 1, TokensPerDay: 1000}}}
	wantAllowed(t, s, Request{Budgets: b, Tokens: 10})
	d := wantDenied(t, s, Request{Budgets: b, Tokens: 10}, "s", Concurrency)
	if d.Ticket == "" {
		t.Fatal("no ticket")
	}
	keys := []string{"{pool}:pool:w", "{pool}:pool:d", "{pool}:pool:c", "{pool}:pool:q", "{pool}:leases", "{pool}:tickets", "{pool}:ticketinfo"}
	for _, k := range keys {
		ttl, err := c.PTTL(ctx, prefix+k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 {
			t.Errorf("PTTL %s: got %v, want a positive TTL", k, ttl)
		}
	}
	if n, err := c.Exists(ctx, prefix+"{pool}:pool:w").Result(); err != nil || n != 1 {
		t.Errorf("key layout: %s{pool}:pool:w: got %d, %v; want it to exist", prefix, n, err)
	}
}

// TestRedisStoreErrors checks how failures are reported: a dead Redis is
// ErrUnavailable; a caller that gave up gets its own context's error.
func TestRedisStoreErrors(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true})
	defer c.Close()
	s := NewRedisStore(c, Options{})
	b := []Budget{{Scope: "s", Tag: "pool", ID: "pool", Limits: Limits{TPM: 100, Concurrency: 1}}}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Admit(ctx, Request{Budgets: b, Tokens: 1})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Errorf("Admit with a cancelled context: got %v, want context.Canceled and not ErrUnavailable", err)
	}

	m.SetError("LOADING Redis is loading the dataset in memory")
	_, err = s.Admit(context.Background(), Request{Budgets: b, Tokens: 1})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Admit while Redis errs: got %v, want ErrUnavailable", err)
	}
	l := Lease{ID: "x", Tag: "pool", Budgets: b, Tokens: 1, Store: StoreRedis}
	for name, err := range map[string]error{
		"Settle": s.Settle(context.Background(), l, 1),
		"Renew":  s.Renew(context.Background(), l, 0),
		"Cancel": s.Cancel(context.Background(), "pool", "ticket"),
	} {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s while Redis errs: got %v, want ErrUnavailable", name, err)
		}
	}
	m.SetError("")
	wantAllowed(t, s, Request{Budgets: b, Tokens: 1})
}

// TestRedisScriptFlush checks that the scripts come back after the server
// loses its script cache (a restart, a failover, SCRIPT FLUSH): EVALSHA's
// NOSCRIPT falls back to EVAL.
func TestRedisScriptFlush(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer c.Close()
	s := NewRedisStore(c, Options{})
	b := []Budget{{Scope: "s", Tag: "pool", ID: "pool", Limits: Limits{TPM: 100}}}
	wantAllowed(t, s, Request{Budgets: b, Tokens: 1})
	if err := c.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	d := wantAllowed(t, s, Request{Budgets: b, Tokens: 1})
	if err := s.Settle(context.Background(), d.Lease, 0); err != nil {
		t.Fatal(err)
	}
}

func TestNewClient(t *testing.T) {
	cases := []struct {
		url  string
		kind string // "single", "cluster", "sentinel"
		addr []string
		user string
		pass string
		db   int
		opt  func(t *testing.T, c redis.UniversalClient)
	}{
		{url: "redis://localhost:6380/2", kind: "single", addr: []string{"localhost:6380"}, db: 2},
		{url: "redis://:s3cret@10.0.0.1", kind: "single", addr: []string{"10.0.0.1:6379"}, pass: "s3cret"},
		{url: "rediss://app:pw@cache.example.com:6380?dial_timeout=3s", kind: "single", addr: []string{"cache.example.com:6380"}, user: "app", pass: "pw",
			opt: func(t *testing.T, c redis.UniversalClient) {
				o := c.(*redis.Client).Options()
				if o.TLSConfig == nil || o.DialTimeout != 3*time.Second || o.ReadTimeout != defaultIOTimeout || !o.ContextTimeoutEnabled {
					t.Errorf("options: got TLS %v dial %v read %v context timeouts %v; want TLS, 3s, %v, true",
						o.TLSConfig != nil, o.DialTimeout, o.ReadTimeout, o.ContextTimeoutEnabled, defaultIOTimeout)
				}
			}},
		{url: "unix:///run/redis.sock?db=1", kind: "single", addr: []string{"/run/redis.sock"}, db: 1},
		{url: "redis+cluster://:pw@h1:7000,h2:7001,h3:7002", kind: "cluster", addr: []string{"h1:7000", "h2:7001", "h3:7002"}, pass: "pw"},
		{url: "rediss+cluster://h1:7000?addr=h2:7001&read_timeout=2s", kind: "cluster", addr: []string{"h1:7000", "h2:7001"},
			opt: func(t *testing.T, c redis.UniversalClient) {
				o := c.(*redis.ClusterClient).Options()
				if o.TLSConfig == nil || o.ReadTimeout != 2*time.Second || o.DialTimeout != defaultDialTimeout {
					t.Errorf("options: got TLS %v read %v dial %v; want TLS, 2s, %v", o.TLSConfig != nil, o.ReadTimeout, o.DialTimeout, defaultDialTimeout)
				}
			}},
		{url: "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/3?sentinel_password=spw", kind: "sentinel", addr: []string{"s1:26379", "s2:26379"}, pass: "pw", db: 3},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			client, err := NewClient(c.url)
			if err != nil {
				t.Fatalf("NewClient: %v", err)
			}
			defer client.Close()
			switch cl := client.(type) {
			case *redis.Client:
				o := cl.Options()
				kind := "single"
				if strings.HasPrefix(o.Addr, "FailoverClient") {
					kind = "sentinel"
				}
				if kind != c.kind {
					t.Fatalf("kind: got %s, want %s", kind, c.kind)
				}
				if kind == "single" && o.Addr != c.addr[0] {
					t.Errorf("addr: got %q, want %q", o.Addr, c.addr[0])
				}
				if o.Username != c.user || o.Password != c.pass || o.DB != c.db {
					t.Errorf("user, password, db: got %q %q %d, want %q %q %d", o.Username, o.Password, o.DB, c.user, c.pass, c.db)
				}
			case *redis.ClusterClient:
				o := cl.Options()
				if c.kind != "cluster" {
					t.Fatalf("kind: got cluster, want %s", c.kind)
				}
				if strings.Join(o.Addrs, ",") != strings.Join(c.addr, ",") || o.Password != c.pass {
					t.Errorf("addrs, password: got %v %q, want %v %q", o.Addrs, o.Password, c.addr, c.pass)
				}
			default:
				t.Fatalf("client type: got %T", client)
			}
			if c.opt != nil {
				c.opt(t, client)
			}
		})
	}

	// Sentinel's own options, which the client hides.
	o, err := parseSentinel("redis", ":pw@s1:26379,s2:26379/mymaster/3?sentinel_password=spw&sentinel_username=su")
	if err != nil {
		t.Fatal(err)
	}
	if o.MasterName != "mymaster" || strings.Join(o.SentinelAddrs, ",") != "s1:26379,s2:26379" || o.SentinelUsername != "su" ||
		o.SentinelPassword != "spw" || o.Password != "pw" || o.DB != 3 {
		t.Errorf("sentinel options: got master %q sentinels %v sentinel user %q password %q; password %q db %d",
			o.MasterName, o.SentinelAddrs, o.SentinelUsername, o.SentinelPassword, o.Password, o.DB)
	}

	for _, bad := range []string{
		"localhost:6379",
		"http://localhost",
		"redis://localhost?nonsense=1",
		"redis+cluster://h1:7000/3",
		"redis+sentinel://s1:26379",
		"redis+sentinel://:secret@s1:26379/a/b/c",
	} {
		_, err := NewClient(bad)
		if err == nil {
			t.Errorf("NewClient(%q): got no error", bad)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("NewClient(%q): error shows the password: %v", bad, err)
		}
	}
}
