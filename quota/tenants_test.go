package quota

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Hashes of "foo", "bar" and "baz" (printf %s foo | sha256sum).
const (
	hashFoo = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
	hashBar = "sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9"
	hashBaz = "sha256:baa5a0964d3320fbc0c6a922140453c8513ea24ab8fd0577034804a967248096"
)

// badTenantFixtures are TestParseConfigBad's rows for the tenants section.
var badTenantFixtures = []struct {
	file string
	want []string
}{
	{"tenants_not_mapping.yaml", []string{"line 1: tenants: must be a mapping from tenant id to tenant, got a list"}},
	{"tenant_not_mapping.yaml", []string{`line 2: tenants["search"]: a tenant must be a mapping with api_keys, access_keys, models and budgets, got a list`}},
	{"tenant_id_invalid.yaml", []string{`line 2: tenants["Search"]: a tenant id is lowercase letters, digits, '_', '.' and '-'`, "Redis keys, metric labels and URLs"}},
	{"tenant_id_too_long.yaml", []string{"line 2: ", "a tenant id is at most 64 characters, got 65"}},
	{"tenant_unknown_field.yaml", []string{
		`line 3: tenants["search"].api_key: unknown field "api_key" (did you mean "api_keys"?)`,
		`line 5: tenants["search"].budgets["*"].tmp: unknown field "tmp" (did you mean "tpm"?)`,
	}},
	{"tenant_limit_outside_budgets.yaml", []string{`line 3: tenants["search"]: tpm belongs in a budget: budgets: {"*": {tpm: ...}}`}},
	{"tenant_api_key_short.yaml", []string{`line 3: tenants["search"].api_keys[0]: a SHA-256 hash is 64 hex digits, got 2 characters`}},
	{"tenant_api_key_raw.yaml", []string{`line 3: tenants["search"].api_keys[0]: this looks like a raw key`, `printf %s "$KEY" | sha256sum`, "replace the key"}},
	{"tenant_api_key_uppercase.yaml", []string{`line 4: tenants["search"].api_keys[0]: write the hex digits in lowercase`}},
	{"tenant_api_key_not_list.yaml", []string{`line 3: tenants["search"].api_keys: must be a list of "sha256:<hex>" key hashes, got a string`}},
	{"tenant_duplicate_api_key.yaml", []string{`line 6: tenants["chat"].api_keys[0]: tenant "chat" holds the same bearer key as tenant "search" (tenants["search"].api_keys[0], line 4)`}},
	{"tenant_duplicate_access_key.yaml", []string{`line 7: tenants["chat"].access_keys[0].id: tenant "chat" holds the same access key id QGAKEXAMPLE12345 as tenant "search" (tenants["search"].access_keys[0].id, line 4)`}},
	{"tenant_access_key_secret.yaml", []string{`line 5: tenants["search"].access_keys[0]: "secret": secrets never go in the budgets file`, "secret_env", "secret_file"}},
	{"tenant_access_key_both.yaml", []string{`line 6: tenants["search"].access_keys[0]: set one of secret_env and secret_file, not both`}},
	{"tenant_access_key_no_secret.yaml", []string{`line 4: tenants["search"].access_keys[0]: missing secret_env or secret_file`}},
	{"tenant_access_key_id.yaml", []string{
		`line 4: tenants["search"].access_keys[0].id: an access key id is 16 to 128 characters (AWS style), got 7`,
		`line 5: tenants["search"].access_keys[1].id: an access key id is upper-case letters A-Z and digits 0-9 only`,
	}},
	{"tenant_secret_env_value.yaml", []string{`line 5: tenants["search"].access_keys[0].secret_env: must name an environment variable`, "not the secret itself"}},
	{"tenant_models_bad_glob.yaml", []string{
		`line 3: tenants["search"].models[1]: "meta.llama3-[8" is not a valid glob`,
		`line 3: tenants["search"].models[2]: a model id must not contain white space`,
	}},
	{"tenant_models_not_list.yaml", []string{`line 3: tenants["search"].models: must be a list of model ids or globs`}},
	{"tenant_budget_negative.yaml", []string{
		`line 7: tenants["search"].budgets["*"].tpm: must be a non-negative integer, got -5`,
		`line 8: tenants["search"].budgets["*"].rpm: must be a non-negative integer, got 1.5`,
	}},
	{"tenant_budget_glob_key.yaml", []string{`line 4: tenants["search"].budgets["anthropic.*"]: budgets are per model pool, matched exactly, so a glob matches nothing`}},
	{"tenant_budget_arn_key.yaml", []string{`an ARN draws on the pool of the model id it names; write "anthropic.x"`}},
	{"tenant_budget_model_cap.yaml", []string{`line 4: tenants["search"].budgets["anthropic.x"]: max_output_tokens is a per-request cap of the model pool: set it under models`}},
	{"tenant_guarantee_under_all.yaml", []string{`line 4: tenants["search"].budgets["*"].guaranteed_tpm: guaranteed_tpm cannot be set under "*": a guarantee is a floor in one model pool`}},
	{"tenant_guarantee_over_tpm.yaml", []string{`line 6: tenants["search"].budgets["anthropic.x"].guaranteed_tpm: guaranteed_tpm 20000 exceeds this budget's tpm 10000`}},
	{"tenant_guarantee_sum.yaml", []string{`line 6: pool "anthropic.x": guaranteed_tpm of tenants chat 50000, search 60000 sums to 110000, over the pool's tpm 100000 (models["anthropic.x"].tpm)`}},
	{"tenant_guarantee_default_pool.yaml", []string{`pool "anthropic.x": guaranteed_tpm of tenants chat 50000, search 60000 sums to 110000, over the pool's tpm 100000 (default_model.tpm)`}},
	{"tenant_guarantee_unlimited.yaml", []string{
		`line 6: tenants["search"].budgets["anthropic.x"].guaranteed_tpm: pool "anthropic.x" has no TPM limit (models["anthropic.x"].tpm is not set)`,
		`line 7: tenants["search"].budgets["anthropic.y"].guaranteed_tpm: pool "anthropic.y" has no TPM limit (it is not listed under models and there is no default_model)`,
	}},
	{"tenant_many.yaml", []string{
		`line 5: tenants["Search"]: a tenant id is lowercase letters`,
		`line 7: tenants["chat"].api_keys[1]: the same key as tenants["chat"].api_keys[0] (line 7)`,
		`line 8: tenants["chat"].access_keys[0]: missing id`,
		`line 9: tenants["chat"].models[0]: "[" is not a valid glob`,
		`line 11: tenants["chat"].budgets["*"].guaranteed_tpm: guaranteed_tpm cannot be set under "*"`,
		`line 12: pool "anthropic.x": guaranteed_tpm of tenants chat 2000 sums to 2000, over the pool's tpm 1000`,
	}},
}

// TestParseConfigTenantManyCount: every problem of tenant_many.yaml is its
// own *ConfigError with a line, none is lost and none repeated (the
// cross-tenant checks see only what the parser accepted).
func TestParseConfigTenantManyCount(t *testing.T) {
	data, err := os.ReadFile("testdata/bad/tenant_many.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseConfig(data)
	errs := configErrors(t, err)
	if got, want := len(errs), 6; got != want {
		t.Errorf("got %d errors, want %d:\n%v", got, want, err)
	}
	for _, e := range errs {
		if e.Line == 0 {
			t.Errorf("%q has no line", e)
		}
	}
}

// TestParseConfigTenantsNeverEchoSecrets: errors are logged, so a secret or
// raw key written into the file by mistake must not appear in them.
func TestParseConfigTenantsNeverEchoSecrets(t *testing.T) {
	for _, tc := range []struct{ file, secret string }{
		{"tenant_api_key_raw.yaml", "ABSKQmVkcm9ja0FQSUtleS1leGFtcGxlLXJhdy1rZXk="},
		{"tenant_access_key_secret.yaml", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		{"tenant_secret_env_value.yaml", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		{"tenant_api_key_not_list.yaml", hashFoo[len("sha256:"):]},
	} {
		_, err := LoadConfig(filepath.Join("testdata/bad", tc.file))
		if err == nil {
			t.Errorf("%s: got no error", tc.file)
			continue
		}
		if strings.Contains(err.Error(), tc.secret) {
			t.Errorf("%s: the error quotes the secret: %v", tc.file, err)
		}
	}
}

func TestParseConfigTenants(t *testing.T) {
	full := mustLoadConfig(t, "testdata/good/full.yaml")
	const sonnet = "anthropic.claude-3-5-sonnet-20240620-v1:0"
	want := map[string]TenantConfig{
		"search": {
			APIKeys:    []string{hashFoo},
			AccessKeys: []AccessKeyConfig{{ID: "QGAKEXAMPLE12345", SecretEnv: "SEARCH_SECRET"}},
			Models:     []string{"anthropic.*", "meta.llama3-70b-instruct-v1:0"},
			Budgets: map[string]TenantBudget{
				AllModels: {Limits: Limits{TPM: 100000, RPM: 100, Concurrency: 20, TokensPerDay: 50000000}},
				sonnet:    {Limits: Limits{TPM: 50000}, GuaranteedTPM: 20000},
			},
		},
		"chat": {
			APIKeys:    []string{hashBar, hashBaz},
			AccessKeys: []AccessKeyConfig{{ID: "QGAKCHAT0000000000000001", SecretFile: "/var/run/secrets/quotagate/chat"}},
			Budgets: map[string]TenantBudget{
				sonnet:                            {GuaranteedTPM: 100000},
				"mistral.mistral-large-2402-v1:0": {GuaranteedTPM: 60000},
			},
			NoCrossFamily: true,
		},
		"batch": {Budgets: map[string]TenantBudget{}},
	}
	if !reflect.DeepEqual(full.Tenants, want) {
		t.Errorf("full.yaml tenants:\ngot  %+v\nwant %+v", full.Tenants, want)
	}

	c := mustLoadConfig(t, "testdata/good/tenants.yaml")
	small := Limits{TPM: 10000, RPM: 10}
	if got := c.Tenants["default"].Budgets[AllModels].Limits; got != small {
		t.Errorf(`"default" tenant (allowed as an id): got %+v, want %+v`, got, small)
	}
	// A key written in the budget wins over a merged one.
	teamB := TenantBudget{Limits: Limits{TPM: 150000, RPM: 10}, GuaranteedTPM: 100000}
	if got := c.Tenants["team-b"].Budgets["anthropic.claude-3-haiku-20240307-v1:0"]; got != teamB {
		t.Errorf("team-b with a merge key: got %+v, want %+v", got, teamB)
	}
	for _, id := range []string{"empty", "commented"} {
		tc, ok := c.Tenants[id]
		if !ok || tc.APIKeys != nil || tc.AccessKeys != nil || tc.Models != nil || tc.Budgets == nil || len(tc.Budgets) != 0 {
			t.Errorf("%s: got %+v, %t; want a tenant with nil lists and an empty Budgets map", id, tc, ok)
		}
	}

	none := mustLoadConfig(t, "testdata/good/minimal.yaml")
	if none.Tenants == nil || len(none.Tenants) != 0 {
		t.Errorf("no tenants section: got %#v, want an empty map", none.Tenants)
	}
}

func TestCheckTenantID(t *testing.T) {
	for _, id := range []string{"search", "default", "a", "team-a.prod_1", "0", strings.Repeat("a", 64)} {
		if msg := CheckTenantID(id); msg != "" {
			t.Errorf("CheckTenantID(%q) = %q, want ok", id, msg)
		}
	}
	for _, tc := range []struct{ id, want string }{
		{"", "empty tenant id"},
		{strings.Repeat("a", 65), "at most 64 characters, got 65"},
		{"Search", `got "Search"`},
		{"-search", "starting with a letter or digit"},
		{".", "starting with a letter or digit"},
		{"..", "starting with a letter or digit"},
		{"a/b", "lowercase letters"},
		{"a:b", "lowercase letters"}, // a Redis key separator
		{"a b", "lowercase letters"},
		{"é", "lowercase letters"},
	} {
		if got := CheckTenantID(tc.id); !strings.Contains(got, tc.want) {
			t.Errorf("CheckTenantID(%q) = %q, want it to contain %q", tc.id, got, tc.want)
		}
	}
}

// A tenant body as the admin API receives it: JSON, indented with tabs.
const tenantJSON = `{
	"api_keys": ["` + hashFoo + `"],
	"access_keys": [{"id": "QGAKEXAMPLE12345", "secret_env": "SEARCH_SECRET"}],
	"models": ["anthropic.*"],
	"budgets": {
		"*": {"tpm": 100000, "rpm": 100},
		"anthropic.x": {"tpm": 50000, "guaranteed_tpm": 20000}
	}
}`

func TestParseTenantJSON(t *testing.T) {
	got, err := ParseTenant("search", []byte(tenantJSON))
	if err != nil {
		t.Fatal(err)
	}
	want := TenantConfig{
		APIKeys:    []string{hashFoo},
		AccessKeys: []AccessKeyConfig{{ID: "QGAKEXAMPLE12345", SecretEnv: "SEARCH_SECRET"}},
		Models:     []string{"anthropic.*"},
		Budgets: map[string]TenantBudget{
			AllModels:     {Limits: Limits{TPM: 100000, RPM: 100}},
			"anthropic.x": {Limits: Limits{TPM: 50000}, GuaranteedTPM: 20000},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}

	yamlBody := `
api_keys: ["` + hashFoo + `"]
access_keys: [{id: QGAKEXAMPLE12345, secret_env: SEARCH_SECRET}]
models: [anthropic.*]
budgets:
  "*": {tpm: 100000, rpm: 100}
  anthropic.x: {tpm: 50000, guaranteed_tpm: 20000}
`
	fromYAML, err := ParseTenant("search", []byte(yamlBody))
	if err != nil || !reflect.DeepEqual(fromYAML, want) {
		t.Errorf("the same tenant in YAML: got %+v, %v; want %+v", fromYAML, err, want)
	}
}

func TestParseTenantEmpty(t *testing.T) {
	for _, body := range []string{"", "  \n", "null", "---\n", "# nothing\n"} {
		_, err := ParseTenant("search", []byte(body))
		if err == nil || !strings.Contains(err.Error(), "empty tenant definition") {
			t.Errorf("ParseTenant(%q): got %v, want an empty-definition error", body, err)
		}
	}
	got, err := ParseTenant("search", []byte("{}"))
	if err != nil || !reflect.DeepEqual(got, TenantConfig{Budgets: map[string]TenantBudget{}}) {
		t.Errorf(`ParseTenant("{}") = %+v, %v; want a tenant with nothing, no error`, got, err)
	}
}

// TestParseTenantBad: each problem is reported with its path relative to
// the tenant, as the admin API shows it.
func TestParseTenantBad(t *testing.T) {
	for _, tc := range []struct {
		id, body   string
		path, want string
	}{
		{"Search", `{}`, "id", "a tenant id is lowercase letters"},
		{"search", `[1, 2]`, "", "a tenant must be a mapping"},
		{"search", `{"api_keys": ["sha256:00"]}`, "api_keys[0]", "64 hex digits"},
		{"search", `{"api_keys": ["my-raw-key"]}`, "api_keys[0]", "this looks like a raw key"},
		{"search", `{"api_keys": [5]}`, "api_keys[0]", `must be a string "sha256:`},
		{"search", `{"access_keys": [{"id": "QGAKEXAMPLE12345", "secret": "x"}]}`, "access_keys[0]", "secrets never go in the budgets file"},
		{"search", `{"access_keys": [{"id": "QGAKEXAMPLE12345", "secret_evn": "X"}]}`, "access_keys[0].secret_evn", `unknown field "secret_evn" (did you mean "secret_env"?)`},
		{"search", `{"access_keys": [{"id": "", "secret_env": "X"}]}`, "access_keys[0].id", "must be a non-empty string, got an empty string"},
		{"search", `{"access_keys": [{}]}`, "access_keys[0]", "missing id"},
		{"search", `{"access_keys": [{}]}`, "access_keys[0]", "missing secret_env or secret_file"},
		{"search", `{"access_keys": [{"id": "QGAKEXAMPLE12345", "secret_file": "/run/a\nb"}]}`, "access_keys[0].secret_file", "not the secret itself"},
		{"search", `{"access_keys": ["QGAKEXAMPLE12345"]}`, "access_keys[0]", "must be a mapping {id, secret_env or secret_file}, got a string"},
		{"search", `{"access_keys": [{"id": "QGAKEXAMPLE12345", "secret_env": "A"}, {"id": "QGAKEXAMPLE12345", "secret_env": "B"}]}`,
			"access_keys[1].id", "access key id QGAKEXAMPLE12345 is listed twice (first at access_keys[0].id (line 1))"},
		{"search", `{"models": ["anthropic.*", "a[", "anthropic.*"]}`, "models[1]", `"a[" is not a valid glob`},
		{"search", `{"models": ["anthropic.*", "anthropic.*"]}`, "models[1]", `"anthropic.*" is listed twice (first at models[0] (line 1))`},
		{"search", `{"models": ["anthropic.claude%3A0"]}`, "models[0]", "percent-encoded"},
		{"search", `{"budgets": {"*": {"tpm": -5}}}`, `budgets["*"].tpm`, "must be a non-negative integer, got -5"},
		{"search", `{"budgets": {"*": {"tpm": "5"}}}`, `budgets["*"].tpm`, `got the string "5"`},
		{"search", `{"budgets": {"*": {"guaranteed_tpm": 5}}}`, `budgets["*"].guaranteed_tpm`, "a guarantee is a floor in one model pool"},
		{"search", `{"budgets": {"m": {"tpm": 5, "guaranteed_tpm": 6}}}`, `budgets["m"].guaranteed_tpm`, "guaranteed_tpm 6 exceeds this budget's tpm 5"},
		{"search", `{"budgets": {"m*": {}}}`, `budgets["m*"]`, "a glob matches nothing"},
		{"search", `{"budgets": {"": {}}}`, `budgets[""]`, "empty model id"},
		{"search", `{"budgets": {"m": {"burst": 5}}}`, `budgets["m"].burst`, `unknown field "burst" (known fields: tpm, rpm, concurrency, tokens_per_day, guaranteed_tpm)`},
		{"search", `{"budgets": {"m": 5}}`, `budgets["m"]`, "must be a mapping of limits"},
		{"search", `{"budgets": []}`, "budgets", "must be a mapping from model id"},
		{"search", `{"budget": {}}`, "budget", `unknown field "budget" (did you mean "budgets"?)`},
		{"search", `{"api_keys": [], "api_keys": []}`, "", `duplicate key "api_keys"`},
		{"search", `{"tpm": 5`, "", "invalid YAML"},
		{"search", "{}\n---\n{}\n", "", "a second YAML document: a tenant definition must hold one document"},
	} {
		_, err := ParseTenant(tc.id, []byte(tc.body))
		if err == nil {
			t.Errorf("ParseTenant(%q, %s): got no error, want %s: %s", tc.id, tc.body, tc.path, tc.want)
			continue
		}
		if !hasConfigError(configErrors(t, err), tc.path, tc.want) {
			t.Errorf("ParseTenant(%q, %s): no error at %q containing %q; got:\n%v", tc.id, tc.body, tc.path, tc.want, err)
		}
	}
}

// TestParseTenantManyProblems: one request reports every problem, so that
// an operator fixes them in one round trip.
func TestParseTenantManyProblems(t *testing.T) {
	body := `{
	"api_keys": ["sha256:00", "` + hashFoo + `"],
	"access_keys": [{"id": "short", "secret_env": "X", "secret_file": "/f"}],
	"models": ["a[", "b c"],
	"budgets": {"*": {"tpm": -1, "guaranteed_tpm": 1}, "m": {"tmp": 1}}
}`
	_, err := ParseTenant("Bad Id", []byte(body))
	errs := configErrors(t, err)
	want := []struct{ path, msg string }{
		{"id", "lowercase letters"},
		{"api_keys[0]", "64 hex digits"},
		{"access_keys[0].id", "16 to 128 characters"},
		{"models[0]", "not a valid glob"},
		{"models[1]", "white space"},
		{`budgets["*"].tpm`, "non-negative integer, got -1"},
		{`budgets["*"].guaranteed_tpm`, "floor in one model pool"},
		{`budgets["m"].tmp`, `unknown field "tmp" (did you mean "tpm"?)`},
	}
	if len(errs) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for _, w := range want {
		if !hasConfigError(errs, w.path, w.msg) {
			t.Errorf("no error at %q containing %q; got:\n%v", w.path, w.msg, err)
		}
	}
	for _, e := range errs {
		if e.Path != "id" && e.Line == 0 {
			t.Errorf("%q has no line", e)
		}
	}
}

func TestCheckTenants(t *testing.T) {
	cfg := &Config{
		Default: &ModelBudget{Limits: Limits{TPM: 1000}},
		Models: map[string]ModelBudget{
			"limited":   {Limits: Limits{TPM: 100000}},
			"unlimited": {Limits: Limits{RPM: 10}},
		},
	}
	guarantee := func(pool string, tpm int64) TenantConfig {
		return TenantConfig{Budgets: map[string]TenantBudget{pool: {GuaranteedTPM: tpm}}}
	}
	for _, tc := range []struct {
		name    string
		cfg     *Config
		tenants map[string]TenantConfig
		path    string
		want    []string // fragments of one error; none: no error
	}{
		{"guarantees fill the pool exactly", cfg,
			map[string]TenantConfig{"a": guarantee("limited", 60000), "b": guarantee("limited", 40000)}, "", nil},
		{"guarantees over the pool's tpm", cfg,
			map[string]TenantConfig{"a": guarantee("limited", 60000), "b": guarantee("limited", 40001)},
			"", []string{`pool "limited": guaranteed_tpm of tenants a 60000, b 40001 sums to 100001, over the pool's tpm 100000 (models["limited"].tpm)`}},
		{"an unlisted pool takes default_model's tpm", cfg,
			map[string]TenantConfig{"a": guarantee("other", 600), "b": guarantee("other", 600)},
			"", []string{`pool "other"`, "sums to 1200, over the pool's tpm 1000 (default_model.tpm)"}},
		{"guarantee in a pool with no tpm", cfg,
			map[string]TenantConfig{"a": guarantee("unlimited", 1)},
			`tenants["a"].budgets["unlimited"].guaranteed_tpm`, []string{`pool "unlimited" has no TPM limit (models["unlimited"].tpm is not set)`}},
		{"guarantee with no budgets at all", &Config{},
			map[string]TenantConfig{"a": guarantee("m", 1)},
			`tenants["a"].budgets["m"].guaranteed_tpm`, []string{"not listed under models and there is no default_model"}},
		{"guarantee with a nil config", nil,
			map[string]TenantConfig{"a": guarantee("m", 1)},
			`tenants["a"].budgets["m"].guaranteed_tpm`, []string{"has no TPM limit"}},
		{`guarantee under "*"`, cfg,
			map[string]TenantConfig{"a": guarantee(AllModels, 1)},
			`tenants["a"].budgets["*"].guaranteed_tpm`, []string{"a guarantee is a floor in one model pool"}},
		{"guarantee over the tenant's tpm over all models", cfg,
			map[string]TenantConfig{"a": {Budgets: map[string]TenantBudget{"limited": {GuaranteedTPM: 20}, AllModels: {Limits: Limits{TPM: 10}}}}},
			`tenants["a"].budgets["limited"].guaranteed_tpm`, []string{"exceeds the tenant's tpm over all models"}},
		{"guarantee in a pool the tenant may not call", cfg,
			map[string]TenantConfig{"a": {Models: []string{"meta.*"}, Budgets: map[string]TenantBudget{"limited": {GuaranteedTPM: 20}}}},
			`tenants["a"].budgets["limited"].guaranteed_tpm`, []string{`the tenant's models do not include "limited"`}},
		{"guarantee in a pool the tenant may call by glob", cfg,
			map[string]TenantConfig{"a": {Models: []string{"lim*"}, Budgets: map[string]TenantBudget{"limited": {GuaranteedTPM: 20}}}}, "", nil},
		{"guarantee over the tenant's own tpm", cfg,
			map[string]TenantConfig{"a": {Budgets: map[string]TenantBudget{"limited": {Limits: Limits{TPM: 10}, GuaranteedTPM: 20}}}},
			`tenants["a"].budgets["limited"].guaranteed_tpm`, []string{"guaranteed_tpm 20 exceeds this budget's tpm 10"}},
		{"a bearer key held by two tenants", cfg,
			map[string]TenantConfig{"a": {APIKeys: []string{hashFoo}}, "b": {APIKeys: []string{hashBar, hashFoo}}},
			`tenants["b"].api_keys[1]`, []string{`tenant "b" holds the same bearer key as tenant "a" (tenants["a"].api_keys[0])`}},
		{"an access key id held by two tenants", cfg,
			map[string]TenantConfig{
				"a": {AccessKeys: []AccessKeyConfig{{ID: "QGAKEXAMPLE12345", SecretEnv: "A"}}},
				"b": {AccessKeys: []AccessKeyConfig{{ID: "QGAKEXAMPLE12345", SecretFile: "/b"}}},
			},
			`tenants["b"].access_keys[0].id`, []string{`holds the same access key id QGAKEXAMPLE12345 as tenant "a"`}},
		{"a key listed twice by one tenant built in code", cfg,
			map[string]TenantConfig{"a": {APIKeys: []string{hashFoo, hashFoo}}},
			`tenants["a"].api_keys[1]`, []string{`the same bearer key as tenants["a"].api_keys[0]`}},
		{"no tenants", cfg, nil, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckTenants(tc.cfg, tc.tenants)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			errs := configErrors(t, err)
			if len(errs) != 1 {
				t.Errorf("got %d errors, want 1:\n%v", len(errs), err)
			}
			for _, frag := range tc.want {
				if !hasConfigError(errs, tc.path, frag) {
					t.Errorf("no error at %q containing %q; got:\n%v", tc.path, frag, err)
				}
			}
			for _, e := range errs {
				if e.Line != 0 { // a pure function of its arguments knows no file
					t.Errorf("%q has a line", e)
				}
			}
		})
	}
}

// TestCheckTenantsMerged: how the admin API uses ParseTenant and
// CheckTenants together: a run-time tenant is checked against the file's
// tenants and pools before it is stored.
func TestCheckTenantsMerged(t *testing.T) {
	c := mustLoadConfig(t, "testdata/good/full.yaml")
	if err := CheckTenants(c, c.Tenants); err != nil {
		t.Fatalf("the file's own tenants: %v", err)
	}
	merged := func(id, body string) map[string]TenantConfig {
		t.Helper()
		tc, err := ParseTenant(id, []byte(body))
		if err != nil {
			t.Fatalf("ParseTenant(%s): %v", body, err)
		}
		m := make(map[string]TenantConfig, len(c.Tenants)+1)
		for k, v := range c.Tenants {
			m[k] = v
		}
		m[id] = tc
		return m
	}
	const sonnet = "anthropic.claude-3-5-sonnet-20240620-v1:0"
	// search 20000 + chat 100000 of the pool's 400000: 280000 left.
	if err := CheckTenants(c, merged("new", `{"budgets": {"`+sonnet+`": {"guaranteed_tpm": 280000}}}`)); err != nil {
		t.Errorf("a guarantee that fits: %v", err)
	}
	err := CheckTenants(c, merged("new", `{"budgets": {"`+sonnet+`": {"guaranteed_tpm": 280001}}}`))
	if err == nil || !strings.Contains(err.Error(), "chat 100000, new 280001, search 20000 sums to 400001, over the pool's tpm 400000") {
		t.Errorf("a guarantee that does not fit: got %v", err)
	}
	err = CheckTenants(c, merged("new", `{"api_keys": ["`+hashBaz+`"]}`))
	if err == nil || !strings.Contains(err.Error(), `tenant "new" holds the same bearer key as tenant "chat"`) {
		t.Errorf("a key already held by a file tenant: got %v", err)
	}
	// Replacing a file tenant by a run-time definition of the same id
	// takes its credentials and guarantees out of the sums.
	if err := CheckTenants(c, merged("chat", `{"api_keys": ["`+hashBaz+`"], "budgets": {"`+sonnet+`": {"guaranteed_tpm": 380000}}}`)); err != nil {
		t.Errorf("overriding a file tenant: %v", err)
	}
}

func TestParseConfigGoodTenantsPassCheckTenants(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	for _, f := range files {
		c := mustLoadConfig(t, f)
		if err := CheckTenants(c, c.Tenants); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// configErrors returns the *ConfigError in err, which must be an
// errors.Join of them.
func configErrors(t *testing.T, err error) []*ConfigError {
	t.Helper()
	if err == nil {
		t.Fatal("got no error")
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("got %T, want an errors.Join", err)
	}
	var out []*ConfigError
	for _, e := range joined.Unwrap() {
		var ce *ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("got %#v, want a *ConfigError", e)
		}
		out = append(out, ce)
	}
	return out
}

func hasConfigError(errs []*ConfigError, path, frag string) bool {
	for _, e := range errs {
		if e.Path == path && strings.Contains(e.Msg, frag) {
			return true
		}
	}
	return false
}

func TestCheckAPIKeyHash(t *testing.T) {
	hexFoo := hashFoo[len("sha256:"):]
	for _, tc := range []struct{ v, want string }{
		{hashFoo, ""},
		{"SHA256:" + hexFoo, `write the prefix "sha256:" in lowercase`},
		{hexFoo, `needs the prefix "sha256:"`},
		{"ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl", "this looks like a raw key"},
		{"sha256:" + hexFoo[:63], "64 hex digits, got 63 characters"},
		{"sha256:" + hexFoo[:63] + "g", "hex digits 0-9 and a-f"},
		{"sha256:" + strings.ToUpper(hexFoo), "lowercase"},
	} {
		got := checkAPIKeyHash(tc.v)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("checkAPIKeyHash(%q) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
