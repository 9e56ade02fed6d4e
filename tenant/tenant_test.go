package tenant

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/quotagate/quotagate/quota"
)

const (
	haiku  = "anthropic.claude-3-haiku-20240307-v1:0"
	sonnet = "anthropic.claude-3-5-sonnet-20240620-v1:0"
	llama  = "meta.llama3-70b-instruct-v1:0"
)

func TestFromConfig(t *testing.T) {
	searchKey, otherKey := "qg-search-key", "qg-other-key"
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("QG_TEST_SECRET", "env-secret")
	dir, err := FromConfig(map[string]quota.TenantConfig{
		"search": {
			APIKeys:    []string{HashAPIKey(searchKey)},
			AccessKeys: []quota.AccessKeyConfig{{ID: "QGAKSEARCH000000001", SecretEnv: "QG_TEST_SECRET"}},
			Models:     []string{"anthropic.*"},
			Budgets: map[string]quota.TenantBudget{
				quota.AllModels: {Limits: quota.Limits{TPM: 1000}},
				haiku:           {Limits: quota.Limits{TPM: 500}, GuaranteedTPM: 200},
			},
		},
		"other": {
			APIKeys:    []string{HashAPIKey(otherKey)},
			AccessKeys: []quota.AccessKeyConfig{{ID: "QGAKOTHER0000000001", SecretFile: secretFile}},
			Budgets:    map[string]quota.TenantBudget{haiku: {GuaranteedTPM: 100}},
		},
	}, SourceFile)
	if err != nil {
		t.Fatal(err)
	}
	if dir.Open() {
		t.Error("Open: got true with tenants configured")
	}

	tn, keyID, ok := dir.ByAPIKey(searchKey)
	if !ok || tn.ID != "search" || tn.Source != SourceFile {
		t.Fatalf("ByAPIKey(search key): got %v, %v", tn, ok)
	}
	if want := APIKeyID(searchKey); keyID != want || !regexp.MustCompile(`^k-[0-9a-f]{16}$`).MatchString(keyID) {
		t.Errorf("key id: got %q, want %q of the form k-<16 hex>", keyID, want)
	}
	for _, k := range []string{"", "qg-wrong", searchKey + " "} {
		if _, _, ok := dir.ByAPIKey(k); ok {
			t.Errorf("ByAPIKey(%q): found a tenant", k)
		}
	}
	if tn, _, _ := dir.ByAPIKey(otherKey); tn == nil || tn.ID != "other" {
		t.Errorf("ByAPIKey(other key): got %v", tn)
	}

	if tn, secret, ok := dir.ByAccessKey("QGAKSEARCH000000001"); !ok || tn.ID != "search" || secret != "env-secret" {
		t.Errorf("ByAccessKey(env): got %v, %q, %v", tn, secret, ok)
	}
	if _, secret, ok := dir.ByAccessKey("QGAKOTHER0000000001"); !ok || secret != "file-secret" {
		t.Errorf("ByAccessKey(file): got %q, %v; want the file's content without its newline", secret, ok)
	}
	if _, _, ok := dir.ByAccessKey("QGAKNOBODY"); ok {
		t.Error("ByAccessKey(unknown): found a tenant")
	}

	search, _ := dir.Get("search")
	for model, want := range map[string]bool{
		haiku:  true,
		sonnet: true,
		llama:  false,
		"arn:aws:bedrock:us-east-1::foundation-model/" + haiku: true, // by its pool id
		"arn:aws:bedrock:us-east-1::foundation-model/" + llama: false,
	} {
		if got := search.Allows(model); got != want {
			t.Errorf("search.Allows(%q): got %v, want %v", model, got, want)
		}
	}
	other, _ := dir.Get("other")
	if !other.Allows(llama) {
		t.Error("a tenant with no models listed must be allowed every model")
	}
	if b, ok := search.Budget(haiku); !ok || b.Limits.TPM != 500 {
		t.Errorf("Budget(haiku): got %+v, %v", b, ok)
	}
	if b, ok := search.Budget(quota.AllModels); !ok || b.Limits.TPM != 1000 {
		t.Errorf(`Budget("*"): got %+v, %v`, b, ok)
	}
	if _, ok := search.Budget(sonnet); ok {
		t.Error("Budget(sonnet): found a budget the tenant does not have")
	}
	if got, want := dir.Guarantees(haiku), []Guarantee{{"other", 100}, {"search", 200}}; !slices.Equal(got, want) {
		t.Errorf("Guarantees(haiku): got %v, want %v", got, want)
	}
	if got := dir.List(); len(got) != 2 || got[0].ID != "other" || got[1].ID != "search" {
		t.Errorf("List: got %v, want other and search", got)
	}
	if _, ok := dir.Get(DefaultID); ok {
		t.Error("Get(DefaultID): found in a directory with tenants")
	}
}

func TestFromConfigOpen(t *testing.T) {
	dir, err := FromConfig(nil, SourceFile)
	if err != nil {
		t.Fatal(err)
	}
	if !dir.Open() {
		t.Error("Open: got false with no tenants")
	}
	if tn, ok := dir.Get(DefaultID); !ok || tn.ID != DefaultID || !tn.Allows(haiku) {
		t.Errorf("Get(DefaultID) in open mode: got %v, %v", tn, ok)
	}
	if len(dir.List()) != 0 {
		t.Error("List: the open-mode tenant is not a configured one")
	}
}

func TestFromConfigSecretErrors(t *testing.T) {
	t.Setenv("QG_TEST_SET", "the-secret-value")
	_, err := FromConfig(map[string]quota.TenantConfig{
		"a": {AccessKeys: []quota.AccessKeyConfig{{ID: "QGAKAAAAAAAAAAAAAAA1", SecretEnv: "QG_TEST_UNSET_VARIABLE"}}},
		"b": {AccessKeys: []quota.AccessKeyConfig{{ID: "QGAKBBBBBBBBBBBBBBB1", SecretFile: filepath.Join(t.TempDir(), "missing")}}},
		"c": {AccessKeys: []quota.AccessKeyConfig{{ID: "QGAKCCCCCCCCCCCCCCC1", SecretEnv: "QG_TEST_SET"}}},
	}, SourceFile)
	if err == nil {
		t.Fatal("FromConfig: no error for unresolvable secrets")
	}
	msg := err.Error()
	for _, want := range []string{`tenant "a"`, "QGAKAAAAAAAAAAAAAAA1", "QG_TEST_UNSET_VARIABLE", `tenant "b"`, "QGAKBBBBBBBBBBBBBBB1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %s", msg, want)
		}
	}
	if strings.Contains(msg, "the-secret-value") || strings.Contains(msg, `"c"`) {
		t.Errorf("error %q mentions the resolvable key or its secret", msg)
	}
}

func TestDuplicateCredentialRefused(t *testing.T) {
	// A credential two tenants claim (a race between the file and an
	// override that validation could not see) identifies neither.
	key := "qg-shared"
	dir, err := FromConfig(map[string]quota.TenantConfig{
		"a": {APIKeys: []string{HashAPIKey(key)}},
		"b": {APIKeys: []string{HashAPIKey(key)}},
	}, SourceFile)
	if err != nil {
		t.Fatal(err)
	}
	if tn, _, ok := dir.ByAPIKey(key); ok {
		t.Errorf("ByAPIKey: a shared key identified tenant %s", tn.ID)
	}
}

func TestNewKeys(t *testing.T) {
	key, hash, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^qg-[A-Za-z0-9_-]{43}$`).MatchString(key) || hash != HashAPIKey(key) {
		t.Errorf("NewAPIKey: got %q, %q", key, hash)
	}
	id, secret, err := NewAccessKey()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^QGAK[A-Z2-7]{16}$`).MatchString(id) || len(secret) != 40 {
		t.Errorf("NewAccessKey: got id %q and a secret of %d characters", id, len(secret))
	}
	// The id must be one the budgets file accepts too, so that an issued
	// key can be moved into the file.
	body := `{"access_keys": [{"id": "` + id + `", "secret_env": "X"}], "api_keys": ["` + hash + `"]}`
	if _, err := quota.ParseTenant("t", []byte(body)); err != nil {
		t.Errorf("ParseTenant refuses issued credentials: %v", err)
	}
	if id2, _, _ := NewAccessKey(); id2 == id {
		t.Error("NewAccessKey returned the same id twice")
	}
}

func TestSealer(t *testing.T) {
	s, err := newSealer([]byte("0123456789abcdef-secrets-key"))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.seal("search", "QGAKX", "the secret")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "the secret") {
		t.Fatal("sealed form contains the secret")
	}
	if got, err := s.open("search", "QGAKX", sealed); err != nil || got != "the secret" {
		t.Errorf("open: got %q, %v", got, err)
	}
	if _, err := s.open("other", "QGAKX", sealed); err == nil {
		t.Error("open under another tenant: no error")
	}
	other, _ := newSealer([]byte("another secrets key, long enough"))
	if _, err := other.open("search", "QGAKX", sealed); err == nil {
		t.Error("open with another secrets key: no error")
	}
	if _, err := newSealer([]byte("short")); err == nil {
		t.Error("newSealer accepted a 5-byte key")
	}
}

func BenchmarkByAPIKey(b *testing.B) {
	tenants := map[string]quota.TenantConfig{}
	for i := range 1000 {
		tenants[fmt.Sprintf("t%d", i)] = quota.TenantConfig{APIKeys: []string{HashAPIKey(fmt.Sprintf("qg-key-%d", i))}}
	}
	dir, err := FromConfig(tenants, SourceFile)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := dir.ByAPIKey("qg-key-500"); !ok {
			b.Fatal("not found")
		}
	}
}
