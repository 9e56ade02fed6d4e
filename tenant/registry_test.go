package tenant

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/internal/redistest"
	"github.com/quotagate/quotagate/quota"
)

func TestRegistryRevokeOnOtherReplica(t *testing.T) {
	fileKey := "qg-file-key"
	file := map[string]quota.TenantConfig{"search": {APIKeys: []string{HashAPIKey(fileKey)}}}
	rs, _, _ := replicas(t, 2, file)
	ctx := context.Background()

	bearer, err := rs[0].IssueKey(ctx, "search", KeyBearer)
	if err != nil {
		t.Fatal(err)
	}
	sigv4, err := rs[0].IssueKey(ctx, "search", KeySigV4)
	if err != nil {
		t.Fatal(err)
	}
	// Replica 2 knows both keys from its very next lookup: no waiting.
	dir := rs[1].Current(ctx)
	if tn, id, ok := dir.ByAPIKey(bearer.Secret); !ok || tn.ID != "search" || id != bearer.ID {
		t.Fatalf("replica 2: issued bearer key: got %v, %q, %v", tn, id, ok)
	}
	if tn, secret, ok := dir.ByAccessKey(sigv4.ID); !ok || tn.ID != "search" || secret != sigv4.Secret {
		t.Fatalf("replica 2: issued access key: got %v, %v", tn, ok)
	}

	for _, keyID := range []string{bearer.ID, sigv4.ID, APIKeyID(fileKey)} {
		if err := rs[0].RevokeKey(ctx, "search", keyID); err != nil {
			t.Fatalf("RevokeKey(%s): %v", keyID, err)
		}
	}
	dir = rs[1].Current(ctx)
	if _, _, ok := dir.ByAPIKey(bearer.Secret); ok {
		t.Error("replica 2: a revoked issued bearer key still works")
	}
	if _, _, ok := dir.ByAccessKey(sigv4.ID); ok {
		t.Error("replica 2: a revoked issued access key still works")
	}
	if _, _, ok := dir.ByAPIKey(fileKey); ok {
		t.Error("replica 2: a revoked file key still works")
	}
	if err := rs[1].RevokeKey(ctx, "search", bearer.ID); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("revoking twice: got %v, want ErrKeyNotFound", err)
	}
	if err := rs[1].RevokeKey(ctx, "nobody", bearer.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking for an unknown tenant: got %v, want ErrNotFound", err)
	}
}

func TestRegistryPrecedence(t *testing.T) {
	fileKey := "qg-file-key"
	file := map[string]quota.TenantConfig{
		"search": {
			APIKeys: []string{HashAPIKey(fileKey)},
			Models:  []string{"anthropic.*"},
			Budgets: map[string]quota.TenantBudget{quota.AllModels: {Limits: quota.Limits{TPM: 100}}},
		},
	}
	rs, _, _ := replicas(t, 2, file)
	ctx := context.Background()
	get := func(r *Registry, id string) *Tenant {
		t.Helper()
		tn, _ := r.Current(ctx).Get(id)
		return tn
	}

	// An override replaces the file's definition as a whole.
	if _, created, err := rs[0].Put(ctx, "search", []byte(`{"models": ["meta.*"]}`)); err != nil || created {
		t.Fatalf("Put over a file tenant: created %v, %v", created, err)
	}
	s := get(rs[1], "search")
	if s.Source != SourceAdmin || s.Allows(haiku) || !s.Allows(llama) {
		t.Errorf("overridden tenant: source %s, models %v", s.Source, s.Models)
	}
	if _, ok := s.Budget(quota.AllModels); ok {
		t.Error("overridden tenant kept the file's budget")
	}
	if _, _, ok := rs[1].Current(ctx).ByAPIKey(fileKey); ok {
		t.Error("overridden tenant kept the file's key")
	}

	// A file edit does not reach an overridden tenant.
	edited := map[string]quota.TenantConfig{"search": {
		APIKeys: []string{HashAPIKey(fileKey)},
		Budgets: map[string]quota.TenantBudget{quota.AllModels: {Limits: quota.Limits{TPM: 200}}},
	}}
	for _, r := range rs {
		if err := r.SetFile(edited); err != nil {
			t.Fatal(err)
		}
	}
	if s := get(rs[1], "search"); s.Source != SourceAdmin {
		t.Errorf("after a file edit: source %s, want admin", s.Source)
	}

	// Reset: the file's (edited) definition is in force again.
	if err := rs[0].Reset(ctx, "search"); err != nil {
		t.Fatal(err)
	}
	s = get(rs[1], "search")
	if b, _ := s.Budget(quota.AllModels); s.Source != SourceFile || b.Limits.TPM != 200 {
		t.Errorf("after reset: source %s, budget %+v; want the edited file's", s.Source, b)
	}
	if _, _, ok := rs[1].Current(ctx).ByAPIKey(fileKey); !ok {
		t.Error("after reset: the file's key does not work")
	}
	if err := rs[0].Reset(ctx, "search"); !errors.Is(err, ErrNoOverride) {
		t.Errorf("second reset: got %v, want ErrNoOverride", err)
	}

	// A tombstone hides the file's tenant; the directory does not fall
	// open even though no tenant is left.
	if err := rs[0].Delete(ctx, "search"); err != nil {
		t.Fatal(err)
	}
	dir := rs[1].Current(ctx)
	if _, ok := dir.Get("search"); ok {
		t.Error("a deleted file tenant is still in force")
	}
	if _, _, ok := dir.ByAPIKey(fileKey); ok {
		t.Error("a deleted tenant's key still works")
	}
	if dir.Open() {
		t.Error("deleting the last tenant opened the gateway")
	}
	if err := rs[1].Delete(ctx, "search"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting a deleted tenant: got %v, want ErrNotFound", err)
	}
	if _, err := rs[1].Patch(ctx, "search", []byte(`{}`)); !errors.Is(err, ErrNotFound) {
		t.Errorf("patching a deleted tenant: got %v, want ErrNotFound", err)
	}
	if err := rs[0].Reset(ctx, "search"); err != nil {
		t.Fatal(err)
	}
	if s := get(rs[1], "search"); s == nil || s.Source != SourceFile {
		t.Errorf("after reset of a tombstone: got %v, want the file's tenant", s)
	}

	// A revoked file key stays revoked through a reset.
	if err := rs[0].RevokeKey(ctx, "search", APIKeyID(fileKey)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rs[0].Put(ctx, "search", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := rs[0].Reset(ctx, "search"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := rs[1].Current(ctx).ByAPIKey(fileKey); ok {
		t.Error("a revoked file key came back with a reset")
	}
}

func TestRegistryIssuedKeysFollowTheTenant(t *testing.T) {
	rs, _, _ := replicas(t, 1, map[string]quota.TenantConfig{"search": {}})
	r, ctx := rs[0], context.Background()
	k, err := r.IssueKey(ctx, "search", KeyBearer)
	if err != nil {
		t.Fatal(err)
	}
	// A PUT replaces the definition but keeps issued keys.
	if _, err := r.Patch(ctx, "search", []byte(`{"models": ["meta.*"]}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := r.Current(ctx).ByAPIKey(k.Secret); !ok {
		t.Error("an issued key did not survive a PATCH")
	}
	// Deleting the tenant discards them: re-creating it does not bring
	// them back.
	if err := r.Delete(ctx, "search"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Put(ctx, "search", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := r.Current(ctx).ByAPIKey(k.Secret); ok {
		t.Error("an issued key survived the deletion of its tenant")
	}
}

func TestRegistryConcurrentPatches(t *testing.T) {
	rs, _, _ := replicas(t, 2, map[string]quota.TenantConfig{"search": {
		Budgets: map[string]quota.TenantBudget{quota.AllModels: {Limits: quota.Limits{TPM: 100}}},
	}})
	ctx := context.Background()
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			patch := fmt.Sprintf(`{"budgets": {"test.model-%d": {"tpm": %d}}}`, i, i+1)
			if _, err := rs[i%2].Patch(ctx, "search", []byte(patch)); err != nil {
				errs <- fmt.Errorf("patch %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s, _ := rs[0].Current(ctx).Get("search")
	for i := range n {
		if b, ok := s.Budget(fmt.Sprintf("test.model-%d", i)); !ok || b.Limits.TPM != int64(i+1) {
			t.Errorf("budget test.model-%d: got %+v, %v: an update was lost", i, b, ok)
		}
	}
	if b, _ := s.Budget(quota.AllModels); b.Limits.TPM != 100 {
		t.Errorf(`"*" budget: got %+v, want the file's tpm 100 kept by every patch`, b)
	}
}

func TestRegistryInProcess(t *testing.T) {
	r, err := NewRegistry(Options{SecretsKey: testSecretsKey, Config: testConfig})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if !r.Current(ctx).Open() || !r.Loaded() {
		t.Fatal("an empty in-process registry must be open and loaded")
	}
	if _, created, err := r.Put(ctx, "search", []byte("models: [\"anthropic.*\"]\n")); err != nil || !created {
		t.Fatalf("Put (YAML body): created %v, %v", created, err)
	}
	dir := r.Current(ctx)
	if dir.Open() {
		t.Error("a registry with a tenant is open")
	}
	k, err := r.IssueKey(ctx, "search", KeySigV4)
	if err != nil {
		t.Fatal(err)
	}
	if _, secret, ok := r.Current(ctx).ByAccessKey(k.ID); !ok || secret != k.Secret {
		t.Error("issued access key not in force")
	}
	if err := r.RevokeKey(ctx, "search", k.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := r.Current(ctx).ByAccessKey(k.ID); ok {
		t.Error("revoked access key still in force")
	}
	if err := r.Delete(ctx, "search"); err != nil {
		t.Fatal(err)
	}
	if r.Current(ctx).Open() {
		t.Error("deleting the only tenant opened the gateway")
	}
}

func TestRegistryNoSecretsKey(t *testing.T) {
	r, err := NewRegistry(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := r.Put(ctx, "search", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.IssueKey(ctx, "search", KeySigV4); !errors.Is(err, ErrNoSecretsKey) {
		t.Errorf("IssueKey(sigv4) without a secrets key: got %v", err)
	}
	if _, err := r.IssueKey(ctx, "search", KeyBearer); err != nil {
		t.Errorf("IssueKey(bearer) without a secrets key: %v", err)
	}
	if _, err := NewRegistry(Options{SecretsKey: []byte("short")}); err == nil {
		t.Error("NewRegistry accepted a 5-byte secrets key")
	}
}

func TestRegistryRunPolls(t *testing.T) {
	rs, _, _ := replicas(t, 2, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rs[1].o.PollInterval = 5 * time.Millisecond
	done := make(chan struct{})
	go func() {
		defer close(done)
		rs[1].Run(ctx)
	}()
	if _, _, err := rs[0].Put(ctx, "search", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	want := rs[0].cur.Load().version
	// No Current on replica 2: only Run can bring it up to date. The
	// deadline only keeps a broken Run from hanging the test.
	for deadline := time.Now().Add(10 * time.Second); rs[1].cur.Load().version != want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("replica 2 never loaded the change")
		}
	}
	if _, ok := rs[1].cur.Load().dir.Get("search"); !ok {
		t.Error("replica 2 polled the version but not the tenant")
	}
	cancel()
	<-done
}

func TestRegistryRedisLostData(t *testing.T) {
	rs, c, prefix := replicas(t, 2, nil)
	ctx := context.Background()
	if _, _, err := rs[0].Put(ctx, "search", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, ok := rs[1].Current(ctx).Get("search"); !ok {
		t.Fatal("replica 2 does not see the tenant")
	}
	// As a Redis restarted without persistence: everything gone.
	if err := c.Del(ctx, prefix+"{tenants}:overrides", prefix+"{tenants}:version").Err(); err != nil {
		t.Fatal(err)
	}
	if _, ok := rs[1].Current(ctx).Get("search"); ok {
		t.Error("replica 2 still serves a tenant Redis lost")
	}
	if _, _, err := rs[1].Put(ctx, "other", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, ok := rs[0].Current(ctx).Get("other"); !ok {
		t.Error("replica 1 does not see a tenant written after the loss")
	}
}

func TestRegistryRedisDown(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { c.Close() })
	var logs bytes.Buffer
	r, err := NewRegistry(Options{Client: c, Logger: slog.New(slog.NewTextHandler(&logs, nil)), ErrorLogInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := r.Put(ctx, "search", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	k, err := r.IssueKey(ctx, "search", KeyBearer)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	for range 5 {
		dir := r.Current(ctx)
		if _, _, ok := dir.ByAPIKey(k.Secret); !ok {
			t.Fatal("with Redis down, the last directory is not served")
		}
	}
	if n := strings.Count(logs.String(), "tenant overrides unavailable"); n != 1 {
		t.Errorf("Redis failure logged %d times in 5 requests, want once:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), k.Secret) {
		t.Error("a key was logged")
	}
	if _, _, err := r.Put(ctx, "other", []byte(`{}`)); err == nil {
		t.Error("a write with Redis down reported success")
	}
}

func TestRegistryNeverOpenBeforeLoad(t *testing.T) {
	// A Redis that does not answer: until the overrides are read, admin
	// tenants may exist, so the directory must not be open.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	r, err := NewRegistry(Options{Client: c, Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if dir := r.Current(context.Background()); dir.Open() || r.Loaded() {
		t.Errorf("before any load: open %v, loaded %v; want neither", dir.Open(), r.Loaded())
	}
}

// countingStore counts loads, to see that concurrent requests noticing one
// change reload once.
type countingStore struct {
	overrideStore
	mu    sync.Mutex
	loads int
}

func (s *countingStore) load(ctx context.Context) (stored, error) {
	s.mu.Lock()
	s.loads++
	s.mu.Unlock()
	return s.overrideStore.load(ctx)
}

func TestRegistryCurrentReloadsOnce(t *testing.T) {
	rs, _, _ := replicas(t, 2, nil)
	ctx := context.Background()
	cs := &countingStore{overrideStore: rs[1].st}
	rs[1].st = cs
	if _, _, err := rs[0].Put(ctx, "search", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if _, ok := rs[1].Current(ctx).Get("search"); !ok {
				t.Error("a request was served the directory from before the change")
			}
		})
	}
	wg.Wait()
	if cs.loads != 1 {
		t.Errorf("32 concurrent requests after one change loaded %d times, want 1", cs.loads)
	}
}

func BenchmarkCurrentRedis(b *testing.B) {
	rs, _, _ := replicasB(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = rs.Current(ctx)
		}
	})
}

func replicasB(b *testing.B) (*Registry, redis.UniversalClient, string) {
	c, prefix := redistest.New(b)
	r, err := NewRegistry(Options{Client: c, KeyPrefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := r.Put(context.Background(), "search", []byte(`{}`)); err != nil {
		b.Fatal(err)
	}
	return r, c, prefix
}

func TestRegistryOnlyNewProblemsRefused(t *testing.T) {
	guarantee := func(g int64) map[string]quota.TenantConfig {
		return map[string]quota.TenantConfig{"a": {Budgets: map[string]quota.TenantBudget{haiku: {GuaranteedTPM: g}}}}
	}
	rs, _, _ := replicas(t, 1, guarantee(600))
	r, ctx := rs[0], context.Background()
	if _, _, err := r.Put(ctx, "b", []byte(`{"budgets": {"`+haiku+`": {"guaranteed_tpm": 400}}}`)); err != nil {
		t.Fatal(err)
	}
	// A file edit oversubscribes the pool (600+400 -> 700+400 of 1000).
	if err := r.SetFile(guarantee(700)); err != nil {
		t.Fatal(err)
	}
	// A write that leaves the problem as it is goes through...
	if _, err := r.Patch(ctx, "b", []byte(`{"budgets": {"*": {"rpm": 5}}}`)); err != nil {
		t.Errorf("an unrelated write was refused for the file's problem: %v", err)
	}
	if _, err := r.IssueKey(ctx, "b", KeyBearer); err != nil {
		t.Errorf("issuing a key was refused for the file's problem: %v", err)
	}
	// ...one that makes it worse does not, and one that fixes it does.
	var inv *InvalidError
	if _, err := r.Patch(ctx, "b", []byte(`{"budgets": {"`+haiku+`": {"guaranteed_tpm": 450}}}`)); !errors.As(err, &inv) {
		t.Errorf("raising a guarantee in an oversubscribed pool: got %v, want InvalidError", err)
	}
	if _, err := r.Patch(ctx, "b", []byte(`{"budgets": {"`+haiku+`": {"guaranteed_tpm": 300}}}`)); err != nil {
		t.Errorf("the fix was refused: %v", err)
	}
}

// TestDirectoryLoaded: a directory says whether the overrides were read, so
// that an unknown credential can be told apart from one not known yet.
func TestDirectoryLoaded(t *testing.T) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	logger, _ := testLogger()
	down, err := NewRegistry(Options{Client: c, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := down.SetFile(map[string]quota.TenantConfig{"search": {}}); err != nil {
		t.Fatal(err)
	}
	if down.Current(ctx).Loaded() {
		t.Error("Redis down at start-up: the directory says it is loaded")
	}
	rs, _, _ := replicas(t, 1, nil)
	if !rs[0].Current(ctx).Loaded() {
		t.Error("after a load: the directory says it is not loaded")
	}
	inProcess, err := NewRegistry(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !inProcess.Current(ctx).Loaded() {
		t.Error("in process: the directory says it is not loaded")
	}
	fixed, err := FromConfig(nil, SourceFile)
	if err != nil {
		t.Fatal(err)
	}
	if !fixed.Loaded() {
		t.Error("FromConfig: the directory says it is not loaded")
	}
}

// failingVersions counts version checks and fails them while fail is set.
type failingVersions struct {
	overrideStore
	checks atomic.Int64
	fail   atomic.Bool
}

func (s *failingVersions) version(ctx context.Context) (int64, error) {
	s.checks.Add(1)
	if s.fail.Load() {
		return 0, errors.New("dial tcp: connection refused")
	}
	return s.overrideStore.version(ctx)
}

// TestRegistryRedisDownChecksOncePerPoll: while Redis fails, requests are
// served from the last directory without each paying a version check (and
// its timeout); one check per PollInterval finds Redis back.
func TestRegistryRedisDownChecksOncePerPoll(t *testing.T) {
	rs, _, _ := replicas(t, 2, nil)
	r, ctx := rs[0], context.Background()
	logger, _ := testLogger()
	r.logger = logger
	const poll = 300 * time.Millisecond
	r.o.PollInterval = poll
	fv := &failingVersions{overrideStore: r.st}
	r.st = fv
	if _, _, err := r.Put(ctx, "search", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	fv.fail.Store(true)
	start := time.Now()
	for range 100 {
		if _, ok := r.Current(ctx).Get("search"); !ok {
			t.Fatal("with Redis down, the last directory is not served")
		}
	}
	if time.Since(start) < poll {
		if n := fv.checks.Load(); n != 1 {
			t.Errorf("100 requests with Redis down made %d version checks, want 1", n)
		}
	}
	time.Sleep(poll + 50*time.Millisecond)
	before := fv.checks.Load()
	_ = r.Current(ctx)
	_ = r.Current(ctx)
	if n := fv.checks.Load() - before; n != 1 {
		t.Errorf("after PollInterval: %d checks for 2 requests, want 1", n)
	}
	// Redis back, and changed meanwhile: the next check sees it.
	fv.fail.Store(false)
	if _, _, err := rs[1].Put(ctx, "other", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(poll + 50*time.Millisecond)
	if _, ok := r.Current(ctx).Get("other"); !ok {
		t.Error("Redis back: the change made meanwhile is not served")
	}
	before = fv.checks.Load()
	_ = r.Current(ctx)
	if n := fv.checks.Load() - before; n != 1 {
		t.Errorf("Redis healthy: %d checks for one request, want 1 (every request checks)", n)
	}
}

// TestRegistrySetConfigWarnsOfOverrideConflicts: a budgets file that makes
// the overrides conflict (guarantees over a pool it shrank) is put in
// force, since only the admin can fix the overrides, but the conflict is
// logged; a file with a problem of its own is refused.
func TestRegistrySetConfigWarnsOfOverrideConflicts(t *testing.T) {
	c, prefix := redistest.New(t)
	file := map[string]quota.TenantConfig{"a": {Budgets: map[string]quota.TenantBudget{haiku: {GuaranteedTPM: 600}}}}
	r, logs := newLoggedRegistry(t, Options{Client: c, KeyPrefix: prefix}, file)
	ctx := context.Background()
	if _, _, err := r.Put(ctx, "b", []byte(`{"budgets": {"`+haiku+`": {"guaranteed_tpm": 400}}}`)); err != nil {
		t.Fatal(err)
	}
	shrunk := &quota.Config{Models: map[string]quota.ModelBudget{haiku: {Limits: quota.Limits{TPM: 800}}}, Tenants: file}
	if err := r.SetConfig(shrunk); err != nil {
		t.Fatalf("a file that makes the overrides conflict was refused: %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, `pool \"`+haiku+`\"`) {
		t.Errorf("no warning naming the oversubscribed pool:\n%s", out)
	}
	t.Setenv("QG_TEST_UNSET_SECRET", "")
	bad := &quota.Config{Models: shrunk.Models, Tenants: map[string]quota.TenantConfig{
		"a": {AccessKeys: []quota.AccessKeyConfig{{ID: "QGAKUNSET00000001", SecretEnv: "QG_TEST_UNSET_SECRET"}}},
	}}
	if err := r.SetConfig(bad); err == nil || !strings.Contains(err.Error(), "QGAKUNSET00000001") {
		t.Errorf("a file with an unreadable secret: got %v, want refused naming the key", err)
	}
	if a, ok := r.Current(ctx).Get("a"); !ok || len(a.AccessKeys) != 0 {
		t.Error("a refused file was put in force")
	}
}

// TestRegistryRevokedKeyNeverComesBack: a revoked key id is refused
// everywhere, not only in the tenant it was revoked from: an admin write
// that names it is refused with the field, and a file that moves it to
// another tenant does not bring it back.
func TestRegistryRevokedKeyNeverComesBack(t *testing.T) {
	fileKey, adminKey := "qg-file-key", "qg-admin-key"
	const akid = "QGAKREVOKED000001"
	t.Setenv("QG_TEST_REVOKED_SECRET", "revoked-secret")
	file := map[string]quota.TenantConfig{"a": {APIKeys: []string{HashAPIKey(fileKey)}}, "c": {}}
	rs, c, prefix := replicas(t, 2, file)
	ctx := context.Background()
	body := `{"api_keys": ["` + HashAPIKey(adminKey) + `"], "access_keys": [{"id": "` + akid + `", "secret_env": "QG_TEST_REVOKED_SECRET"}]}`
	if _, _, err := rs[0].Put(ctx, "b", []byte(body)); err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{APIKeyID(adminKey), akid} {
		if err := rs[0].RevokeKey(ctx, "b", kid); err != nil {
			t.Fatal(err)
		}
	}
	if err := rs[0].RevokeKey(ctx, "a", APIKeyID(fileKey)); err != nil {
		t.Fatal(err)
	}
	wantRefused := func(what string, err error, field string) {
		t.Helper()
		var inv *InvalidError
		if !errors.As(err, &inv) {
			t.Errorf("%s: got %v, want InvalidError", what, err)
			return
		}
		if inv.Problems[0].Path != field || !strings.Contains(inv.Problems[0].Msg, "revoked") {
			t.Errorf("%s: got %q: %s, want field %q, saying it is revoked", what, inv.Problems[0].Path, inv.Problems[0].Msg, field)
		}
	}
	_, _, err := rs[1].Put(ctx, "c", []byte(`{"api_keys": ["`+HashAPIKey(adminKey)+`"]}`))
	wantRefused("PUT of another tenant with a revoked bearer key", err, "api_keys[0]")
	_, err = rs[1].Patch(ctx, "c", []byte(`{"access_keys": [{"id": "`+akid+`", "secret_env": "QG_TEST_REVOKED_SECRET"}]}`))
	wantRefused("PATCH of another tenant with a revoked access key", err, "access_keys[0].id")
	_, _, err = rs[1].Put(ctx, "b", []byte(`{"models": ["*"], "api_keys": ["`+HashAPIKey(adminKey)+`"]}`))
	wantRefused("PUT of the same tenant with its revoked key", err, "api_keys[0]")
	_, _, err = rs[1].Put(ctx, "c", []byte(`{"api_keys": ["`+HashAPIKey(fileKey)+`"]}`))
	wantRefused("PUT with a revoked file key", err, "api_keys[0]")
	if _, _, ok := rs[1].Current(ctx).ByAPIKey(adminKey); ok {
		t.Error("a revoked key works again")
	}
	// Editing a file tenant whose definition still lists its revoked key
	// is not refused: the write does not bring the key back.
	if _, err := rs[1].Patch(ctx, "a", []byte(`{"models": ["anthropic.*"]}`)); err != nil {
		t.Errorf("PATCH of a file tenant with a revoked file key: %v", err)
	}
	// The file moves the revoked key to another tenant: still refused.
	moved := map[string]quota.TenantConfig{"a": {}, "c": {APIKeys: []string{HashAPIKey(fileKey)}}}
	for _, r := range rs {
		if err := r.SetFile(moved); err != nil {
			t.Fatal(err)
		}
	}
	if tn, _, ok := rs[1].Current(ctx).ByAPIKey(fileKey); ok {
		t.Errorf("a revoked file key moved to tenant %q works again", tn.ID)
	}
	// Redis loses its data: a running replica still remembers.
	redistest.DeleteByPrefix(t, c, prefix)
	if _, _, ok := rs[1].Current(ctx).ByAPIKey(fileKey); ok {
		t.Error("a revoked file key works again after Redis lost its data")
	}
}
