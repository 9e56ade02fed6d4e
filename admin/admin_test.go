package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/admin"
	"github.com/quotagate/quotagate/internal/logbuf"
	"github.com/quotagate/quotagate/internal/redistest"
	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/tenant"
)

const (
	adminToken = "test-admin-token-0123456789"
	haiku      = "anthropic.claude-3-haiku-20240307-v1:0"
	sonnet     = "anthropic.claude-3-5-sonnet-20240620-v1:0"
	llama      = "meta.llama3-70b-instruct-v1:0"
	titan      = "amazon.titan-text-express-v1"
)

// testConfig is the budgets file: haiku has a TPM, so guarantees in it are
// checked against it; llama is listed with no TPM.
func testConfig() *quota.Config {
	return &quota.Config{Models: map[string]quota.ModelBudget{
		haiku: {Limits: quota.Limits{TPM: 1000}},
		llama: {},
	}}
}

// replica is one gateway replica's admin side.
type replica struct {
	reg  *tenant.Registry
	h    *admin.Handler
	logs *logbuf.Buffer
}

// replicas starts n replicas on one Redis (nil client: one in-process
// replica), each with the same file tenants.
func replicas(t *testing.T, n int, c redis.UniversalClient, prefix string, file map[string]quota.TenantConfig) []replica {
	t.Helper()
	rs := make([]replica, n)
	for i := range rs {
		logs := &logbuf.Buffer{}
		logger := slog.New(slog.NewTextHandler(logs, nil))
		reg, err := tenant.NewRegistry(tenant.Options{
			Client: c, KeyPrefix: prefix, SecretsKey: []byte("test secrets key, 32 bytes long!"),
			Config: testConfig, Logger: logger,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := reg.SetFile(file); err != nil {
			t.Fatal(err)
		}
		rs[i] = replica{reg: reg, logs: logs, h: &admin.Handler{Token: adminToken, Tenants: reg, Config: testConfig, Logger: logger}}
	}
	return rs
}

func redisReplicas(t *testing.T, n int, file map[string]quota.TenantConfig) ([]replica, redis.UniversalClient, string) {
	t.Helper()
	c, prefix := redistest.New(t)
	return replicas(t, n, c, prefix, file), c, prefix
}

type response struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

func call(t *testing.T, h http.Handler, method, path, body string) response {
	t.Helper()
	return callAs(t, h, "Bearer "+adminToken, method, path, body)
}

func callAs(t *testing.T, h http.Handler, auth, method, path, body string) response {
	t.Helper()
	r := httptest.NewRequest(method, "http://gateway.test"+path, strings.NewReader(body))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := response{status: w.Code, header: w.Header(), raw: w.Body.String()}
	if res.raw != "" {
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
		}
		if err := json.Unmarshal(w.Body.Bytes(), &res.body); err != nil {
			t.Fatalf("%s %s: response is not a JSON object: %v\n%s", method, path, err, res.raw)
		}
	}
	return res
}

func want(t *testing.T, res response, status int) {
	t.Helper()
	if res.status != status {
		t.Fatalf("got status %d, want %d: %s", res.status, status, res.raw)
	}
}

// budgetTPM reads budgets[key].tpm from a tenant view.
func budgetTPM(view map[string]any, key string) any {
	b, _ := view["budgets"].(map[string]any)
	m, _ := b[key].(map[string]any)
	return m["tpm"]
}

func keyIDs(view map[string]any) []string {
	var ids []string
	ks, _ := view["keys"].([]any)
	for _, k := range ks {
		ids = append(ids, k.(map[string]any)["key_id"].(string))
	}
	return ids
}

func TestAdminChangeSeenByOtherReplica(t *testing.T) {
	rs, _, _ := redisReplicas(t, 2, nil)
	ctx := context.Background()

	res := call(t, rs[0].h, "PUT", "/admin/v1/tenants/search", `{"models": ["anthropic.*"], "budgets": {"*": {"tpm": 5000}}}`)
	want(t, res, http.StatusCreated)
	if res.body["id"] != "search" || res.body["source"] != "admin" {
		t.Errorf("PUT response: %s", res.raw)
	}
	// Replica 2 serves it from its very next lookup.
	tn, ok := rs[1].reg.Current(ctx).Get("search")
	if !ok || !tn.Allows(haiku) || tn.Allows(llama) {
		t.Fatalf("replica 2: got %v, %v", tn, ok)
	}
	if b, _ := tn.Budget(quota.AllModels); b.Limits.TPM != 5000 {
		t.Errorf(`replica 2: "*" budget %+v, want tpm 5000`, b)
	}
	res = call(t, rs[1].h, "GET", "/admin/v1/tenants/search", "")
	want(t, res, http.StatusOK)
	if got := budgetTPM(res.body, "*"); got != 5000.0 {
		t.Errorf("replica 2 GET: tpm %v, want 5000", got)
	}

	// And the other way round, with a merge patch.
	res = call(t, rs[1].h, "PATCH", "/admin/v1/tenants/search", `{"budgets": {"*": {"tpm": 7000, "rpm": 10}}, "models": null}`)
	want(t, res, http.StatusOK)
	tn, _ = rs[0].reg.Current(ctx).Get("search")
	if b, _ := tn.Budget(quota.AllModels); b.Limits.TPM != 7000 || b.Limits.RPM != 10 || !tn.Allows(llama) {
		t.Errorf("replica 1 after PATCH: budget %+v, models %v", b, tn.Models)
	}

	// A second PUT replaces: 200, not 201.
	want(t, call(t, rs[0].h, "PUT", "/admin/v1/tenants/search", `{}`), http.StatusOK)
	res = call(t, rs[1].h, "GET", "/admin/v1/tenants", "")
	want(t, res, http.StatusOK)
	if ts := res.body["tenants"].([]any); len(ts) != 1 || budgetTPM(ts[0].(map[string]any), "*") != nil {
		t.Errorf("replica 2 list after PUT {}: %s", res.raw)
	}
}

func TestAdminRevokeOnOtherReplica(t *testing.T) {
	fileKey := "qg-file-key-of-search"
	rs, _, _ := redisReplicas(t, 2, map[string]quota.TenantConfig{"search": {APIKeys: []string{tenant.HashAPIKey(fileKey)}}})
	ctx := context.Background()

	res := call(t, rs[0].h, "POST", "/admin/v1/tenants/search/keys", `{"type": "bearer"}`)
	want(t, res, http.StatusCreated)
	key, keyID := res.body["api_key"].(string), res.body["key_id"].(string)
	res = call(t, rs[0].h, "POST", "/admin/v1/tenants/search/keys", `{"type": "sigv4"}`)
	want(t, res, http.StatusCreated)
	akid, secret := res.body["access_key_id"].(string), res.body["secret_access_key"].(string)

	dir := rs[1].reg.Current(ctx)
	if tn, id, ok := dir.ByAPIKey(key); !ok || tn.ID != "search" || id != keyID {
		t.Fatalf("replica 2: issued key: %v, %q, %v", tn, id, ok)
	}
	if _, s, ok := dir.ByAccessKey(akid); !ok || s != secret {
		t.Fatal("replica 2: issued access key not in force")
	}

	for _, id := range []string{keyID, akid, tenant.APIKeyID(fileKey)} {
		want(t, call(t, rs[0].h, "DELETE", "/admin/v1/tenants/search/keys/"+id, ""), http.StatusNoContent)
	}
	// The very next lookup on replica 2: no poll, no wait.
	dir = rs[1].reg.Current(ctx)
	if _, _, ok := dir.ByAPIKey(key); ok {
		t.Error("replica 2: revoked issued key still works")
	}
	if _, _, ok := dir.ByAccessKey(akid); ok {
		t.Error("replica 2: revoked access key still works")
	}
	if _, _, ok := dir.ByAPIKey(fileKey); ok {
		t.Error("replica 2: revoked file key still works")
	}
	want(t, call(t, rs[1].h, "DELETE", "/admin/v1/tenants/search/keys/"+keyID, ""), http.StatusNotFound)
	want(t, call(t, rs[1].h, "DELETE", "/admin/v1/tenants/nobody/keys/"+keyID, ""), http.StatusNotFound)
}

func TestAdminSecretsShownOnce(t *testing.T) {
	rs, c, prefix := redisReplicas(t, 2, nil)
	want(t, call(t, rs[0].h, "PUT", "/admin/v1/tenants/search", `{}`), http.StatusCreated)
	bearer := call(t, rs[0].h, "POST", "/admin/v1/tenants/search/keys", `{"type": "bearer"}`)
	want(t, bearer, http.StatusCreated)
	sigv4 := call(t, rs[0].h, "POST", "/admin/v1/tenants/search/keys", `{"type": "sigv4"}`)
	want(t, sigv4, http.StatusCreated)
	if bearer.header.Get("Cache-Control") != "no-store" {
		t.Error("the response with a secret may be cached")
	}
	key, secret := bearer.body["api_key"].(string), sigv4.body["secret_access_key"].(string)
	if !strings.HasPrefix(key, tenant.APIKeyPrefix) || len(secret) != 40 {
		t.Errorf("issued: key %q..., secret of %d characters", key[:6], len(secret))
	}

	var seen []string
	for _, r := range rs {
		for _, path := range []string{"/admin/v1/tenants", "/admin/v1/tenants/search"} {
			res := call(t, r.h, "GET", path, "")
			want(t, res, http.StatusOK)
			seen = append(seen, res.raw)
		}
		seen = append(seen, r.logs.String())
	}
	stored, err := c.HGetAll(context.Background(), prefix+"{tenants}:overrides").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range stored {
		seen = append(seen, v)
	}
	for _, s := range seen {
		if strings.Contains(s, key) || strings.Contains(s, secret) {
			t.Errorf("a secret appears after its issue:\n%s", s)
		}
	}
	res := call(t, rs[1].h, "GET", "/admin/v1/tenants/search", "")
	ids := keyIDs(res.body)
	if !slices.Contains(ids, bearer.body["key_id"].(string)) || !slices.Contains(ids, sigv4.body["access_key_id"].(string)) {
		t.Errorf("GET lists keys %v, want both issued ids", ids)
	}
}

func TestAdminTombstoneAndReset(t *testing.T) {
	file := map[string]quota.TenantConfig{"search": {Budgets: map[string]quota.TenantBudget{quota.AllModels: {Limits: quota.Limits{TPM: 100}}}}}
	rs, _, _ := redisReplicas(t, 2, file)

	res := call(t, rs[1].h, "GET", "/admin/v1/tenants/search", "")
	want(t, res, http.StatusOK)
	if res.body["source"] != "file" {
		t.Errorf("source %v, want file", res.body["source"])
	}
	want(t, call(t, rs[0].h, "DELETE", "/admin/v1/tenants/search", ""), http.StatusNoContent)
	want(t, call(t, rs[1].h, "GET", "/admin/v1/tenants/search", ""), http.StatusNotFound)
	if ts := call(t, rs[1].h, "GET", "/admin/v1/tenants", "").body["tenants"].([]any); len(ts) != 0 {
		t.Errorf("a deleted tenant is listed: %v", ts)
	}
	if rs[1].reg.Current(context.Background()).Open() {
		t.Error("deleting the only tenant opened the gateway")
	}
	want(t, call(t, rs[0].h, "DELETE", "/admin/v1/tenants/search", ""), http.StatusNotFound)

	want(t, call(t, rs[0].h, "DELETE", "/admin/v1/tenants/search/override", ""), http.StatusNoContent)
	res = call(t, rs[1].h, "GET", "/admin/v1/tenants/search", "")
	want(t, res, http.StatusOK)
	if res.body["source"] != "file" || budgetTPM(res.body, "*") != 100.0 {
		t.Errorf("after reset: %s", res.raw)
	}
	want(t, call(t, rs[0].h, "DELETE", "/admin/v1/tenants/search/override", ""), http.StatusNotFound)

	// A PUT over a file tenant, then a reset, is the file's again.
	want(t, call(t, rs[0].h, "PUT", "/admin/v1/tenants/search", `{"budgets": {"*": {"tpm": 5}}}`), http.StatusOK)
	want(t, call(t, rs[0].h, "DELETE", "/admin/v1/tenants/search/override", ""), http.StatusNoContent)
	if got := budgetTPM(call(t, rs[1].h, "GET", "/admin/v1/tenants/search", "").body, "*"); got != 100.0 {
		t.Errorf("after reset of a PUT: tpm %v, want the file's 100", got)
	}
}

func TestAdminBadInputs(t *testing.T) {
	otherKey := tenant.HashAPIKey("qg-key-of-other")
	rs, c, prefix := redisReplicas(t, 1, map[string]quota.TenantConfig{
		"other": {
			APIKeys: []string{otherKey},
			Budgets: map[string]quota.TenantBudget{haiku: {GuaranteedTPM: 600}},
		},
	})
	h := rs[0].h
	want(t, call(t, h, "PUT", "/admin/v1/tenants/search", `{"budgets": {"*": {"tpm": 100}}}`), http.StatusCreated)
	ctx := context.Background()
	state := func() (string, string) {
		v, _ := c.Get(ctx, prefix+"{tenants}:version").Result()
		docs, err := c.HGetAll(ctx, prefix+"{tenants}:overrides").Result()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(docs)
		return v, string(b)
	}

	cases := []struct {
		name, method, path, body, field string
	}{
		{"negative limit", "PUT", "/tenants/search", `{"budgets": {"*": {"tpm": -5}}}`, `budgets["*"].tpm`},
		{"limit not a number", "PUT", "/tenants/search", `{"budgets": {"*": {"tpm": "lots"}}}`, `budgets["*"].tpm`},
		{"fractional limit", "PUT", "/tenants/search", `{"budgets": {"*": {"rpm": 1.5}}}`, `budgets["*"].rpm`},
		{"guarantee under *", "PUT", "/tenants/search", `{"budgets": {"*": {"guaranteed_tpm": 10}}}`, `budgets["*"].guaranteed_tpm`},
		{"glob budget key", "PUT", "/tenants/search", `{"budgets": {"anthropic.*": {"tpm": 10}}}`, `budgets["anthropic.*"]`},
		{"model cap in a tenant budget", "PUT", "/tenants/search", `{"budgets": {"` + haiku + `": {"max_output_tokens": 10}}}`, `budgets["` + haiku + `"]`},
		{"raw key instead of a hash", "PUT", "/tenants/search", `{"api_keys": ["qg-raw-key"]}`, `api_keys[0]`},
		{"key of another tenant", "PUT", "/tenants/search", `{"api_keys": ["` + otherKey + `"]}`, `api_keys[0]`},
		{"bad access key id", "PUT", "/tenants/search", `{"access_keys": [{"id": "short", "secret_env": "X"}]}`, `access_keys[0].id`},
		{"unset secret variable", "PUT", "/tenants/search", `{"access_keys": [{"id": "QGAKAAAAAAAAAAAAAAAA", "secret_env": "QG_TEST_UNSET_SECRET_VARIABLE"}]}`, `access_keys[0].secret_env`},
		{"bad glob", "PUT", "/tenants/search", `{"models": ["[unclosed"]}`, `models[0]`},
		{"guarantees oversubscribe the pool", "PUT", "/tenants/search", `{"budgets": {"` + haiku + `": {"guaranteed_tpm": 500}}}`, `budgets["` + haiku + `"].guaranteed_tpm`},
		{"guarantee in a pool with no tpm", "PUT", "/tenants/search", `{"budgets": {"` + llama + `": {"guaranteed_tpm": 10}}}`, `budgets["` + llama + `"].guaranteed_tpm`},
		{"id differs from the URL", "PUT", "/tenants/search", `{"id": "other"}`, `id`},
		{"bad tenant id", "PUT", "/tenants/Bad.ID", `{}`, `id`},
		{"unknown field", "PUT", "/tenants/search", `{"budgets": {"*": {"tpmm": 5}}}`, `budgets["*"].tpmm`},
		{"patch: negative limit", "PATCH", "/tenants/search", `{"budgets": {"*": {"rpm": -1}}}`, `budgets["*"].rpm`},
		{"patch: guarantees oversubscribe", "PATCH", "/tenants/search", `{"budgets": {"` + haiku + `": {"guaranteed_tpm": 401}}}`, `budgets["` + haiku + `"].guaranteed_tpm`},
		{"patch: not an object", "PATCH", "/tenants/search", `[1, 2]`, ``},
		{"patch: not JSON", "PATCH", "/tenants/search", `{"budgets":`, ``},
		{"patch: id differs", "PATCH", "/tenants/search", `{"id": "other"}`, `id`},
		{"key type", "POST", "/tenants/search/keys", `{"type": "password"}`, `type`},
		{"unknown top-level field", "PUT", "/tenants/search", `{"modles": ["anthropic.*"]}`, `modles`},
		{"key request: unknown field", "POST", "/tenants/search/keys", `{"type": "bearer", "x": 1}`, `x`},
		{"usage of a glob", "GET", "/tenants/other/usage?model=anthropic.*", ``, `model`},
		{"usage of no model", "GET", "/tenants/other/usage?model=", ``, `model`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v0, docs0 := state()
			res := call(t, h, tc.method, "/admin/v1"+tc.path, tc.body)
			if res.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", res.status, res.raw)
			}
			if got, _ := res.body["field"].(string); got != tc.field {
				t.Errorf("field %q, want %q: %s", got, tc.field, res.raw)
			}
			if msg, _ := res.body["message"].(string); msg == "" {
				t.Error("no message")
			}
			if v1, docs1 := state(); v1 != v0 || docs1 != docs0 {
				t.Errorf("a refused write changed the store: version %s -> %s\n%s\n%s", v0, v1, docs0, docs1)
			}
		})
	}
	// The valid counterpart of the oversubscription case is accepted: the
	// check is against the merged set, not a blanket refusal. (The "*" tpm
	// is raised with it: a guarantee over the tenant's own "*" tpm could
	// never be used, and is refused for that.)
	want(t, call(t, h, "PATCH", "/admin/v1/tenants/search", `{"budgets": {"*": {"tpm": 400}, "`+haiku+`": {"guaranteed_tpm": 400}}}`), http.StatusOK)
}

func TestAdminToken(t *testing.T) {
	reg, err := tenant.NewRegistry(tenant.Options{})
	if err != nil {
		t.Fatal(err)
	}
	disabled := &admin.Handler{Tenants: reg}
	res := callAs(t, disabled, "Bearer anything", "GET", "/admin/v1/tenants", "")
	if res.status != http.StatusForbidden || !strings.Contains(res.raw, "disabled") {
		t.Errorf("no token configured: %d %s, want 403 saying the API is disabled", res.status, res.raw)
	}
	h := &admin.Handler{Token: adminToken, Tenants: reg}
	for _, auth := range []string{"", "Bearer", "Bearer wrong", "Bearer " + adminToken + "x", "Basic " + adminToken, adminToken} {
		res := callAs(t, h, auth, "GET", "/admin/v1/tenants", "")
		if res.status != http.StatusUnauthorized || res.header.Get("WWW-Authenticate") == "" {
			t.Errorf("Authorization %q: %d, want 401 with WWW-Authenticate", auth, res.status)
		}
		if strings.Contains(res.raw, adminToken) {
			t.Error("the token is echoed")
		}
	}
	// Unauthenticated callers learn nothing of the routes either.
	if res := callAs(t, h, "Bearer wrong", "GET", "/admin/v1/nothing", ""); res.status != http.StatusUnauthorized {
		t.Errorf("unknown route without the token: %d, want 401", res.status)
	}
	for _, auth := range []string{"Bearer " + adminToken, "bearer " + adminToken} {
		if res := callAs(t, h, auth, "GET", "/admin/v1/tenants", ""); res.status != http.StatusOK {
			t.Errorf("Authorization %q: %d, want 200", auth, res.status)
		}
	}
}

func TestAdminConcurrentPatches(t *testing.T) {
	rs, _, _ := redisReplicas(t, 2, map[string]quota.TenantConfig{"search": {}})
	const n = 12
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body := fmt.Sprintf(`{"budgets": {"test.model-%d": {"rpm": %d}}}`, i, i+1)
			r := httptest.NewRequest("PATCH", "http://gateway.test/admin/v1/tenants/search", strings.NewReader(body))
			r.Header.Set("Authorization", "Bearer "+adminToken)
			w := httptest.NewRecorder()
			rs[i%2].h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				t.Errorf("patch %d: %d %s", i, w.Code, w.Body)
			}
		})
	}
	wg.Wait()
	res := call(t, rs[0].h, "GET", "/admin/v1/tenants/search", "")
	budgets, _ := res.body["budgets"].(map[string]any)
	for i := range n {
		b, _ := budgets[fmt.Sprintf("test.model-%d", i)].(map[string]any)
		if b["rpm"] != float64(i+1) {
			t.Errorf("test.model-%d: %v, want rpm %d: an update was lost", i, b, i+1)
		}
	}
}

// fakeUsage is a quota.UsageReader with fixed counters per budget.
type fakeUsage struct {
	mu    sync.Mutex
	asked []quota.Budget
}

func (f *fakeUsage) Usage(_ context.Context, b quota.Budget) (quota.Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, b)
	n := int64(len(b.Tag))
	return quota.Usage{WindowTokens: 100 * n, WindowRequests: n, DayTokens: 1000 * n, InFlight: 1}, nil
}

func TestAdminUsage(t *testing.T) {
	rs, _, _ := redisReplicas(t, 1, map[string]quota.TenantConfig{
		"search": {
			Models: []string{"anthropic.*", llama},
			Budgets: map[string]quota.TenantBudget{
				quota.AllModels: {Limits: quota.Limits{TPM: 100}},
				titan:           {Limits: quota.Limits{TPM: 5}},
			},
		},
		"other": {},
	})
	u := &fakeUsage{}
	h := rs[0].h
	h.Usage = u
	res := call(t, h, "GET", "/admin/v1/tenants/search/usage?model=cohere.command-r-v1:0&model="+sonnet, "")
	want(t, res, http.StatusOK)
	var got []string
	for _, m := range res.body["models"].([]any) {
		mm := m.(map[string]any)
		got = append(got, mm["pool"].(string))
		usage := mm["usage"].(map[string]any)
		if n := float64(len(mm["pool"].(string))); usage["window_tokens"] != 100*n || usage["day_tokens"] != 1000*n || usage["in_flight"] != 1.0 {
			t.Errorf("pool %s: usage %v", mm["pool"], usage)
		}
	}
	// The file's models the tenant may call (haiku, not llama's... llama is
	// allowed exactly), its budget keys, its exact models, and those asked.
	wantPools := []string{titan, haiku, sonnet, "cohere.command-r-v1:0", llama}
	slices.Sort(wantPools)
	if !slices.Equal(got, wantPools) {
		t.Errorf("pools reported %v, want %v", got, wantPools)
	}
	all, _ := res.body["all"].(map[string]any)
	if all == nil || all["limits"].(map[string]any)["tpm"] != 100.0 {
		t.Errorf(`"*" budget: %v`, res.body["all"])
	}
	// The counters read are the ones admission charges.
	wantBudgets := []quota.Budget{quota.TenantAllBudget("search", quota.Limits{TPM: 100}), quota.TenantPoolBudget("search", titan, quota.Limits{TPM: 5})}
	for _, wb := range wantBudgets {
		if !slices.ContainsFunc(u.asked, func(b quota.Budget) bool { return b.Tag == wb.Tag && b.ID == wb.ID && b.Limits == wb.Limits }) {
			t.Errorf("budget %+v was not read; read %+v", wb, u.asked)
		}
	}
	// A tenant with no "*" budget has no "all".
	res = call(t, h, "GET", "/admin/v1/tenants/other/usage", "")
	want(t, res, http.StatusOK)
	if _, ok := res.body["all"]; ok {
		t.Errorf(`a tenant without a "*" budget: %s`, res.raw)
	}
	want(t, call(t, h, "GET", "/admin/v1/tenants/nobody/usage", ""), http.StatusNotFound)
	h.Usage = nil
	want(t, call(t, h, "GET", "/admin/v1/tenants/search/usage", ""), http.StatusNotImplemented)
}

func TestAdminInProcess(t *testing.T) {
	rs := replicas(t, 1, nil, "", nil)
	h, reg, ctx := rs[0].h, rs[0].reg, context.Background()
	if !reg.Current(ctx).Open() {
		t.Fatal("an empty registry is not open")
	}
	want(t, call(t, h, "GET", "/admin/v1/tenants/default", ""), http.StatusNotFound)
	want(t, call(t, h, "PUT", "/admin/v1/tenants/search", "budgets:\n  \"*\": {tpm: 10}\n"), http.StatusCreated)
	res := call(t, h, "POST", "/admin/v1/tenants/search/keys", `{"type": "bearer"}`)
	want(t, res, http.StatusCreated)
	key := res.body["api_key"].(string)
	if _, _, ok := reg.Current(ctx).ByAPIKey(key); !ok {
		t.Error("issued key not in force")
	}
	want(t, call(t, h, "PATCH", "/admin/v1/tenants/search", `{"budgets": {"*": {"tpm": 20}}}`), http.StatusOK)
	if got := budgetTPM(call(t, h, "GET", "/admin/v1/tenants/search", "").body, "*"); got != 20.0 {
		t.Errorf("after PATCH: tpm %v", got)
	}
	want(t, call(t, h, "DELETE", "/admin/v1/tenants/search/keys/"+res.body["key_id"].(string), ""), http.StatusNoContent)
	if _, _, ok := reg.Current(ctx).ByAPIKey(key); ok {
		t.Error("revoked key in force")
	}
	want(t, call(t, h, "DELETE", "/admin/v1/tenants/search", ""), http.StatusNoContent)
	want(t, call(t, h, "GET", "/admin/v1/tenants/search", ""), http.StatusNotFound)
}

func TestAdminRoutes(t *testing.T) {
	rs := replicas(t, 1, nil, "", map[string]quota.TenantConfig{"search": {}})
	h := rs[0].h
	res := call(t, h, "POST", "/admin/v1/tenants/search", "")
	if res.status != http.StatusMethodNotAllowed || !strings.Contains(res.header.Get("Allow"), "PATCH") {
		t.Errorf("POST on a tenant: %d, Allow %q", res.status, res.header.Get("Allow"))
	}
	want(t, call(t, h, "GET", "/admin/v1/nothing", ""), http.StatusNotFound)
	want(t, call(t, h, "GET", "/admin/v1/tenants/nobody", ""), http.StatusNotFound)
	want(t, call(t, h, "PATCH", "/admin/v1/tenants/nobody", `{}`), http.StatusNotFound)
	big := `{"models": ["` + strings.Repeat("a", admin.MaxBodyBytes) + `"]}`
	want(t, call(t, h, "PUT", "/admin/v1/tenants/search", big), http.StatusRequestEntityTooLarge)
	want(t, call(t, h, "POST", "/admin/v1/tenants/search/keys", `{"type": "bearer", "extra": 1}`), http.StatusBadRequest)

	// A tenant read with GET can be written back as it is.
	res = call(t, h, "GET", "/admin/v1/tenants/search", "")
	want(t, call(t, h, "PUT", "/admin/v1/tenants/search", res.raw), http.StatusOK)

	noSecrets, err := tenant.NewRegistry(tenant.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := noSecrets.SetFile(map[string]quota.TenantConfig{"search": {}}); err != nil {
		t.Fatal(err)
	}
	h2 := &admin.Handler{Token: adminToken, Tenants: noSecrets}
	want(t, call(t, h2, "POST", "/admin/v1/tenants/search/keys", `{"type": "sigv4"}`), http.StatusNotImplemented)
}

var _ io.Writer = (*logbuf.Buffer)(nil)

// TestAdminRevokedKeyRefused: a key revoked from one tenant cannot be given
// to another: 400 naming the field, and nothing written.
func TestAdminRevokedKeyRefused(t *testing.T) {
	rs, _, _ := redisReplicas(t, 2, nil)
	key := "qg-some-key"
	hash := tenant.HashAPIKey(key)
	want(t, call(t, rs[0].h, "PUT", "/admin/v1/tenants/a", `{"api_keys": ["`+hash+`"]}`), http.StatusCreated)
	want(t, call(t, rs[0].h, "DELETE", "/admin/v1/tenants/a/keys/"+tenant.APIKeyID(key), ""), http.StatusNoContent)
	res := call(t, rs[1].h, "PUT", "/admin/v1/tenants/b", `{"api_keys": ["`+hash+`"]}`)
	want(t, res, http.StatusBadRequest)
	if res.body["field"] != "api_keys[0]" || !strings.Contains(res.body["message"].(string), "revoked") {
		t.Errorf("got field %v, message %v; want api_keys[0], saying the key was revoked", res.body["field"], res.body["message"])
	}
	want(t, call(t, rs[1].h, "GET", "/admin/v1/tenants/b", ""), http.StatusNotFound)
}

// TestAdminUsageOmitsUncountedAll: a "*" budget without limits is never
// counted by admission, so the usage endpoint does not report it (its
// counters would always read 0).
func TestAdminUsageOmitsUncountedAll(t *testing.T) {
	rs, _, _ := redisReplicas(t, 1, map[string]quota.TenantConfig{
		"tracked": {Budgets: map[string]quota.TenantBudget{quota.AllModels: {}, haiku: {}}},
	})
	h := rs[0].h
	h.Usage = &fakeUsage{}
	res := call(t, h, "GET", "/admin/v1/tenants/tracked/usage", "")
	want(t, res, http.StatusOK)
	if _, ok := res.body["all"]; ok {
		t.Errorf(`a "*" budget without limits is reported: %s`, res.raw)
	}
}
