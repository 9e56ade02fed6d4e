// Package tenant knows who is calling: the tenants in force (from the
// budgets file, overridden at run time through the admin API and stored in
// Redis), their credentials, the models they may call and their budgets.
//
// A Directory is an immutable snapshot of the tenants in force, safe to
// share between request goroutines. A Source yields the directory for each
// request; Registry is the Source of a gateway replica, and FromConfig
// builds a fixed directory (tests, tools).
//
// # Precedence
//
// The budgets file is the GitOps bootstrap; the admin API overrides it at
// run time, per tenant id. For each id, the registry holds at most one
// override, stored in Redis (or in process without Redis) and seen by every
// replica:
//
//   - An override with a definition (admin PUT or PATCH) replaces the file's
//     definition of that tenant as a whole: models, budgets and the
//     credentials listed in it. Later edits of that tenant in the file have
//     no effect until the override is removed.
//   - A tombstone (admin DELETE) hides the tenant, whatever the file says.
//   - Keys issued through the admin API are added to whichever definition
//     is in force (file or override), and survive a PUT or PATCH. Deleting
//     the tenant or removing its override discards them.
//   - A revoked key id stays revoked for good, in every tenant, file keys
//     included, even after the override is removed or the tenant deleted: a
//     reset must not silently bring back a key that was revoked for cause,
//     nor may a write or a file edit hand it to another tenant. An admin
//     write that names a revoked key is refused; a file that lists one
//     (under any tenant) is logged, and the key stays refused. To drop a
//     revoked file key, remove it from the file; keys are random, so
//     nothing else ever takes its id. Remove it in any case: revocations
//     live in Redis, and a replica started after Redis lost its data knows
//     none (a running one remembers them).
//   - Removing the override (reset) makes the tenant exactly the file's
//     definition again, less its revoked keys; a tenant only the admin API
//     defined is then gone.
//
// # Storage
//
// In Redis, under the key prefix (Options.KeyPrefix):
//
//	{tenants}:overrides  hash    tenant id -> override (JSON): definition,
//	                             tombstone, issued keys (bearer keys as
//	                             SHA-256, access-key secrets sealed with
//	                             AES-256-GCM), revoked key ids
//	{tenants}:version    string  a counter bumped by every write, in the
//	                             same Lua script as the write
//	{tenants}:revoked    set     every key id ever revoked, of any tenant
//	{tenants}:closed     string  the closed marker, set by the first write
//	                             or by a replica that loads file tenants,
//	                             and never cleared (see Open mode)
//
// A write compares the version it read and retries on a conflict, so
// concurrent admin writes lose no update and the checks of the whole set
// (guarantees fit their pool) hold. Every request reads the version (one
// GET) and reloads when it changed; Registry.Run polls it every 500ms for
// replicas with no traffic. While Redis fails, the last tenants loaded are
// served and the version is read at most once per poll interval.
//
// # Open mode
//
// A registry that finds no tenant configured when it first loads (none in
// the file, no override of any kind, and no closed marker in the override
// store) is open: the gateway serves everyone as the DefaultID tenant,
// unauthenticated, and says so at start-up. That is the only way to be
// open. Once a registry has seen a tenant (in the file or in the
// overrides) or the closed marker, or when Options.RequireAuth is set, it
// is closed for the life of the process: if the tenants later run out (the
// last one deleted and its tombstone removed, a file reload that drops the
// last one, Redis losing its data), it logs an error once and refuses every
// request until a tenant is defined again. It never falls open at run time.
//
// The closed marker carries that to replicas started later: every override
// write sets it, as does every replica that loads tenants from its file,
// and nothing removes it, so a replica that starts with no tenant left
// (in Redis or in its file) stays closed too. A registry in process (no Redis) keeps it
// only for its own life. The marker lives in Redis with the overrides, so
// if Redis loses its data (a restart without persistence) and then every
// replica restarts, nothing remembers that tenants existed, and a gateway
// with no tenant in its file starts open. That cannot be told apart from a
// fresh install; set Options.RequireAuth (QUOTAGATE_REQUIRE_AUTH=true)
// wherever tenants are meant to exist, so that it refuses everyone instead.
// Without Redis, a replica restarted with a file that lists no tenant
// starts open unless RequireAuth is set.
package tenant

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/quotagate/quotagate/quota"
)

// DefaultID is the single tenant the gateway runs as when no tenant is
// configured (open mode).
const DefaultID = "default"

// The sources of a tenant's definition.
const (
	SourceFile  = "file"
	SourceAdmin = "admin"
)

// Tenant is one tenant in force. Immutable once in a Directory.
type Tenant struct {
	// ID is the tenant id, as in the budgets file and the admin API's URLs.
	ID string
	// Source is "file" or "admin": where the definition in force came from.
	Source string
	// TenantConfig is the tenant in force: its definition, with the keys
	// issued through the admin API added and revoked keys removed.
	quota.TenantConfig

	def     quota.TenantConfig            // the definition as written (file or admin), for the admin API
	budgets map[string]quota.TenantBudget // by pool id (quota.PoolID of the key) and AllModels
	keys    []KeyInfo
}

// KeyInfo describes one credential of a tenant without its secret.
type KeyInfo struct {
	// ID is the public id: "k-<16 hex>" for a bearer key, the access key
	// id for a SigV4 key.
	ID string
	// Type is KeyBearer or KeySigV4.
	Type string
	// Origin is where the key comes from: "file" or "admin" (listed in the
	// definition in force) or "issued" (issued through the admin API).
	Origin string
}

// The types of key.
const (
	KeyBearer = "bearer"
	KeySigV4  = "sigv4"
)

// OriginIssued is the KeyInfo.Origin of a key issued through the admin API.
const OriginIssued = "issued"

// Allows reports whether the tenant may call model (an id as requested,
// decoded; ARNs are matched by quota.PoolID of the id as well).
//
// Patterns are path.Match globs, in which '*' stops at '/': "anthropic.*"
// matches the foundation-model ARN of an Anthropic model only through its
// pool id. A lone "*" matches every model, ARNs included, since that is
// what anyone writing it means.
func (t *Tenant) Allows(model string) bool {
	if len(t.Models) == 0 {
		return true
	}
	pool := quota.PoolID(model)
	for _, p := range t.Models {
		if p == "*" || p == model || p == pool {
			return true
		}
		if ok, _ := path.Match(p, model); ok {
			return true
		}
		if pool != model {
			if ok, _ := path.Match(p, pool); ok {
				return true
			}
		}
	}
	return false
}

// Budget returns the tenant's budget for a model pool id or quota.AllModels.
// A budget written under an ARN applies to the pool the ARN names.
func (t *Tenant) Budget(pool string) (quota.TenantBudget, bool) {
	b, ok := t.budgets[pool]
	return b, ok
}

// Keys returns the tenant's credentials in force, by id, without secrets.
// The slice is shared: do not modify it.
func (t *Tenant) Keys() []KeyInfo { return t.keys }

// Definition returns the tenant's definition as written in the file or
// through the admin API, without the keys issued through the admin API:
// what a PUT replaces and a PATCH patches.
func (t *Tenant) Definition() quota.TenantConfig { return t.def }

// Guarantee is one tenant's guaranteed TPM in a pool.
type Guarantee struct {
	Tenant string
	TPM    int64
}

// Directory is an immutable snapshot of the tenants in force.
type Directory struct {
	open       bool
	loaded     bool
	tenants    map[string]*Tenant
	list       []*Tenant
	apiKeys    map[[sha256.Size]byte]apiKeyEntry
	accessKeys map[string]accessKeyEntry
	guarantees map[string][]Guarantee
}

type apiKeyEntry struct {
	hash   [sha256.Size]byte
	id     string
	tenant *Tenant
}

type accessKeyEntry struct {
	secret string
	tenant *Tenant
}

// openTenant is the tenant everyone is served as in open mode: no budgets
// of its own, every model.
var openTenant = &Tenant{ID: DefaultID, Source: SourceFile, budgets: map[string]quota.TenantBudget{}}

// Open reports whether the gateway runs open: it serves everyone as the
// DefaultID tenant without authentication. Only a registry that never saw
// a tenant is open (see the package doc); a directory with no tenant that
// is not open refuses everyone.
func (d *Directory) Open() bool { return d.open }

// Loaded reports whether the directory was built from the overrides as
// read from the override store. It is false while a registry has not yet
// read them (Redis down at start-up): only the file's tenants are known,
// so a credential not found may be one issued through the admin API, and
// the caller should be told to retry rather than that it is unknown.
func (d *Directory) Loaded() bool { return d.loaded }

// ByAPIKey finds the tenant of a bearer key. The key is hashed and the hash
// compared in constant time; keyID is the key's public id (for logs and
// revocation), never the key.
func (d *Directory) ByAPIKey(key string) (t *Tenant, keyID string, ok bool) {
	if key == "" {
		return nil, "", false
	}
	sum := sha256.Sum256([]byte(key))
	// The map lookup is not constant time, but what its timing could leak
	// is the SHA-256 of the key presented, not of a stored key: a caller
	// learns at most which hashes of its own guesses are near stored
	// hashes in the map's layout, and because valid keys are 256-bit random
	// values hashed by a preimage-resistant function, that gives no way
	// toward a valid key. The constant-time compare keeps the equality test
	// itself free of early exits.
	e, found := d.apiKeys[sum]
	if !found || subtle.ConstantTimeCompare(e.hash[:], sum[:]) != 1 {
		return nil, "", false
	}
	return e.tenant, e.id, true
}

// ByAccessKey finds the tenant and secret of a SigV4 access key id.
func (d *Directory) ByAccessKey(id string) (t *Tenant, secret string, ok bool) {
	e, found := d.accessKeys[id]
	if !found {
		return nil, "", false
	}
	return e.tenant, e.secret, true
}

// Get returns a tenant by id. In an open directory, DefaultID is the tenant
// everyone is served as, with no budgets of its own.
func (d *Directory) Get(id string) (*Tenant, bool) {
	if d.open && id == DefaultID {
		return openTenant, true
	}
	t, ok := d.tenants[id]
	return t, ok
}

// List returns every tenant, sorted by id. The slice is shared: do not
// modify it.
func (d *Directory) List() []*Tenant { return d.list }

// Guarantees returns every tenant's guaranteed TPM in a pool (a pool id as
// quota.PoolID gives it), sorted by tenant id. The slice is shared: do not
// modify it.
func (d *Directory) Guarantees(pool string) []Guarantee { return d.guarantees[pool] }

// Source yields the directory in force for a request. Implementations make
// a run-time change (a revoked key) effective on the very next request.
type Source interface {
	Current(ctx context.Context) *Directory
}

// Static is a Source that always yields one directory.
type Static struct {
	// Dir is the directory yielded.
	Dir *Directory
}

// Current returns s.Dir.
func (s Static) Current(context.Context) *Directory { return s.Dir }

var _ Source = Static{}

// FromConfig builds a directory from tenant definitions (source "file" or
// "admin" for all of them), resolving access-key secrets from their
// environment variables or files. An unresolvable secret is an error naming
// the tenant and key id, never the secret.
func FromConfig(tenants map[string]quota.TenantConfig, source string) (*Directory, error) {
	secrets, err := resolveSecrets(tenants)
	if err != nil {
		return nil, err
	}
	members := make([]member, 0, len(tenants))
	for id, cfg := range tenants {
		members = append(members, plainMember(id, source, cfg, secrets[id]))
	}
	d := build(members, nil)
	d.open, d.loaded = len(tenants) == 0, true
	return d, nil
}

// plainMember is a tenant with no override: its credentials are those of its
// definition.
func plainMember(id, source string, cfg quota.TenantConfig, secrets map[string]string) member {
	m := member{id: id, source: source, def: cfg, cfg: cfg, secrets: secrets, origins: map[string]string{}}
	for _, h := range cfg.APIKeys {
		m.origins[hashKeyID(h)] = source
	}
	for _, ak := range cfg.AccessKeys {
		m.origins[ak.ID] = source
	}
	return m
}

// resolveSecrets reads the secret of every access key, by tenant and key id.
// Every failure is reported, joined.
func resolveSecrets(tenants map[string]quota.TenantConfig) (map[string]map[string]string, error) {
	out := make(map[string]map[string]string, len(tenants))
	var errs []error
	for _, id := range sortedKeys(tenants) {
		for _, ak := range tenants[id].AccessKeys {
			s, err := ResolveSecret(ak)
			if err != nil {
				errs = append(errs, fmt.Errorf("tenant %q access key %s: %w", id, ak.ID, err))
				continue
			}
			if out[id] == nil {
				out[id] = map[string]string{}
			}
			out[id][ak.ID] = s
		}
	}
	return out, errors.Join(errs...)
}

// ResolveSecret reads an access key's secret from its environment variable
// or its file. A file's trailing newline is dropped: editors and `echo`
// add one, and Kubernetes secrets written by hand often carry one. The
// error names the variable or file, never the secret.
func ResolveSecret(ak quota.AccessKeyConfig) (string, error) {
	var s string
	switch {
	case ak.SecretEnv != "" && ak.SecretFile != "":
		return "", errors.New("set one of secret_env and secret_file, not both")
	case ak.SecretEnv != "":
		s = os.Getenv(ak.SecretEnv)
		if s == "" {
			return "", fmt.Errorf("environment variable %s is not set or empty", ak.SecretEnv)
		}
	case ak.SecretFile != "":
		data, err := os.ReadFile(ak.SecretFile)
		if err != nil {
			// os errors name the path and the cause, never the content.
			return "", fmt.Errorf("reading secret_file: %w", err)
		}
		s = strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
		if s == "" {
			return "", fmt.Errorf("secret_file %s is empty", ak.SecretFile)
		}
	default:
		return "", errors.New("no secret_env or secret_file")
	}
	return s, nil
}

// member is one tenant on its way into a directory: its definition, its
// credentials in force and their secrets.
type member struct {
	id, source string
	def        quota.TenantConfig // as written
	cfg        quota.TenantConfig // in force: issued keys added, revoked removed
	secrets    map[string]string  // access key id -> secret
	origins    map[string]string  // key id -> KeyInfo.Origin
}

// build makes a directory, neither open nor loaded until its caller says
// so (before anyone else sees it). A credential claimed by two tenants is given to
// neither, and logged: admin writes and file checks refuse duplicates, so
// this only guards against a race between the file and an override, where
// serving either tenant could let one spend the other's budget.
func build(members []member, logger *slog.Logger) *Directory {
	slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.id, b.id) })
	d := &Directory{
		tenants:    make(map[string]*Tenant, len(members)),
		list:       make([]*Tenant, 0, len(members)),
		apiKeys:    map[[sha256.Size]byte]apiKeyEntry{},
		accessKeys: map[string]accessKeyEntry{},
		guarantees: map[string][]Guarantee{},
	}
	dupAPI := map[[sha256.Size]byte]bool{}
	dupAccess := map[string]bool{}
	for _, m := range members {
		t := &Tenant{ID: m.id, Source: m.source, TenantConfig: m.cfg, def: m.def, budgets: make(map[string]quota.TenantBudget, len(m.cfg.Budgets))}
		// Exact pool keys first, so that a budget written under the pool id
		// wins over one written under an ARN of the same pool.
		for _, k := range sortedKeys(m.cfg.Budgets) {
			if k == quota.AllModels || quota.PoolID(k) == k {
				t.budgets[k] = m.cfg.Budgets[k]
			}
		}
		for _, k := range sortedKeys(m.cfg.Budgets) {
			if p := quota.PoolID(k); p != k {
				if _, ok := t.budgets[p]; !ok {
					t.budgets[p] = m.cfg.Budgets[k]
				}
			}
		}
		for _, pool := range sortedKeys(t.budgets) {
			if g := t.budgets[pool].GuaranteedTPM; g > 0 && pool != quota.AllModels {
				d.guarantees[pool] = append(d.guarantees[pool], Guarantee{Tenant: m.id, TPM: g})
			}
		}
		for _, h := range m.cfg.APIKeys {
			sum, ok := parseKeyHash(h)
			if !ok {
				logf(logger, slog.LevelError, "tenant bearer key is not sha256:<64 hex>; ignored", "tenant", m.id)
				continue
			}
			id := keyIDOfSum(sum)
			t.keys = append(t.keys, KeyInfo{ID: id, Type: KeyBearer, Origin: m.origins[id]})
			if prev, taken := d.apiKeys[sum]; taken && prev.tenant.ID != m.id {
				dupAPI[sum] = true
				logf(logger, slog.LevelError, "bearer key listed by two tenants; refused for both", "key_id", id, "tenants", []string{prev.tenant.ID, m.id})
				continue
			}
			d.apiKeys[sum] = apiKeyEntry{hash: sum, id: id, tenant: t}
		}
		for _, ak := range m.cfg.AccessKeys {
			secret, ok := m.secrets[ak.ID]
			if !ok {
				continue // unresolvable, reported where it was resolved
			}
			t.keys = append(t.keys, KeyInfo{ID: ak.ID, Type: KeySigV4, Origin: m.origins[ak.ID]})
			if prev, taken := d.accessKeys[ak.ID]; taken && prev.tenant.ID != m.id {
				dupAccess[ak.ID] = true
				logf(logger, slog.LevelError, "access key listed by two tenants; refused for both", "key_id", ak.ID, "tenants", []string{prev.tenant.ID, m.id})
				continue
			}
			d.accessKeys[ak.ID] = accessKeyEntry{secret: secret, tenant: t}
		}
		d.tenants[m.id] = t
		d.list = append(d.list, t)
	}
	for sum := range dupAPI {
		delete(d.apiKeys, sum)
	}
	for id := range dupAccess {
		delete(d.accessKeys, id)
	}
	return d
}

// KeyHashPrefix starts a bearer key's hash as the budgets file writes it.
const KeyHashPrefix = "sha256:"

// HashAPIKey returns a bearer key's hash as the budgets file lists it:
// "sha256:<64 lowercase hex>".
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return KeyHashPrefix + hex.EncodeToString(sum[:])
}

// APIKeyID returns the public id of a bearer key: "k-" and the first 16
// hex digits of its SHA-256. It names the key in logs and in revocation
// without revealing it; 64 bits keep ids of different keys apart.
func APIKeyID(key string) string { return keyIDOfSum(sha256.Sum256([]byte(key))) }

// hashKeyID returns the id of a key listed as "sha256:<hex>", or "" when
// the hash is malformed.
func hashKeyID(h string) string {
	sum, ok := parseKeyHash(h)
	if !ok {
		return ""
	}
	return keyIDOfSum(sum)
}

func keyIDOfSum(sum [sha256.Size]byte) string { return "k-" + hex.EncodeToString(sum[:8]) }

func parseKeyHash(h string) (sum [sha256.Size]byte, ok bool) {
	hexSum, found := strings.CutPrefix(h, KeyHashPrefix)
	if !found || len(hexSum) != 2*sha256.Size {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(strings.ToLower(hexSum))); err != nil {
		return sum, false
	}
	return sum, true
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func logf(l *slog.Logger, level slog.Level, msg string, args ...any) {
	if l == nil {
		l = slog.Default()
	}
	l.Log(context.Background(), level, msg, args...)
}
