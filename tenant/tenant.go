// Package tenant knows who is calling: the tenants in force (from the
// budgets file, overridden at run time through the admin API and stored in
// Redis), their credentials, the models they may call and their budgets.
package tenant

// CONTRACT SKELETON: the signatures below are the agreed API; bodies are
// filled in by the tenant work.

import (
	"context"

	"github.com/quotagate/quotagate/quota"
)

// DefaultID is the single tenant the gateway runs as when no tenant is
// configured (open mode).
const DefaultID = "default"

// Tenant is one tenant in force. Immutable once in a Directory.
type Tenant struct {
	ID string
	// Source is "file" or "admin": where the definition in force came from.
	Source string
	quota.TenantConfig
}

// Allows reports whether the tenant may call model (an id as requested,
// decoded; ARNs are matched by quota.PoolID of the id as well).
func (t *Tenant) Allows(model string) bool { panic("not implemented") }

// Budget returns the tenant's budget for a model pool id or quota.AllModels.
func (t *Tenant) Budget(pool string) (quota.TenantBudget, bool) { panic("not implemented") }

// Guarantee is one tenant's guaranteed TPM in a pool.
type Guarantee struct {
	Tenant string
	TPM    int64
}

// Directory is an immutable snapshot of the tenants in force.
type Directory struct{}

// Open reports whether no tenant is configured: the gateway then serves
// everyone as the DefaultID tenant without authentication.
func (d *Directory) Open() bool { panic("not implemented") }

// ByAPIKey finds the tenant of a bearer key. The key is hashed and the hash
// compared in constant time; keyID is the key's public id (for logs and
// revocation), never the key.
func (d *Directory) ByAPIKey(key string) (t *Tenant, keyID string, ok bool) {
	panic("not implemented")
}

// ByAccessKey finds the tenant and secret of a SigV4 access key id.
func (d *Directory) ByAccessKey(id string) (t *Tenant, secret string, ok bool) {
	panic("not implemented")
}

// Get returns a tenant by id.
func (d *Directory) Get(id string) (*Tenant, bool) { panic("not implemented") }

// List returns every tenant, sorted by id.
func (d *Directory) List() []*Tenant { panic("not implemented") }

// Guarantees returns every tenant's guaranteed TPM in a pool (a pool id as
// quota.PoolID gives it), sorted by tenant id. The slice is shared: do not
// modify it.
func (d *Directory) Guarantees(pool string) []Guarantee { panic("not implemented") }

// Source yields the directory in force for a request. Implementations make
// a run-time change (a revoked key) effective on the very next request.
type Source interface {
	Current(ctx context.Context) *Directory
}

// FromConfig builds a directory from tenant definitions (source "file" or
// "admin" for all of them), resolving access-key secrets from their
// environment variables or files. An unresolvable secret is an error naming
// the tenant and key id, never the secret.
func FromConfig(tenants map[string]quota.TenantConfig, source string) (*Directory, error) {
	panic("not implemented")
}
