package tenant

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"

	"github.com/quotagate/quotagate/quota"
)

// Definition is a tenant definition in the budgets file's field names, as
// the admin API reads and writes it (JSON). Empty fields are left out:
// no models means every model, no budget field means no limit.
type Definition struct {
	// APIKeys are bearer keys as "sha256:<64 lowercase hex>".
	APIKeys []string `json:"api_keys,omitempty"`
	// AccessKeys are SigV4 key ids and where their secrets are read.
	AccessKeys []AccessKeyDefinition `json:"access_keys,omitempty"`
	// Models are model ids or path.Match globs; empty: every model.
	Models []string `json:"models,omitempty"`
	// Budgets are by model id, and "*" for all models together.
	Budgets map[string]BudgetDefinition `json:"budgets,omitempty"`
	// CrossFamily false forbids fallback to models of another family.
	CrossFamily *bool `json:"cross_family,omitempty"`
}

// AccessKeyDefinition is an access key id and where its secret is read.
type AccessKeyDefinition struct {
	// ID is the access key id callers sign with.
	ID string `json:"id"`
	// SecretEnv names the environment variable holding the secret.
	SecretEnv string `json:"secret_env,omitempty"`
	// SecretFile is the path of a file holding the secret.
	SecretFile string `json:"secret_file,omitempty"`
}

// BudgetDefinition is one budget in the file's field names: limits per
// minute (tpm, rpm), in flight (concurrency) and per UTC day, and the
// guaranteed TPM in a model's pool. Zero is no limit.
type BudgetDefinition struct {
	TPM           int64 `json:"tpm,omitempty"`
	RPM           int64 `json:"rpm,omitempty"`
	Concurrency   int64 `json:"concurrency,omitempty"`
	TokensPerDay  int64 `json:"tokens_per_day,omitempty"`
	GuaranteedTPM int64 `json:"guaranteed_tpm,omitempty"`
}

// DefinitionOf renders a tenant config in the file's field names.
func DefinitionOf(c quota.TenantConfig) Definition {
	d := Definition{APIKeys: slices.Clone(c.APIKeys), Models: slices.Clone(c.Models)}
	if c.NoCrossFamily {
		d.CrossFamily = new(false)
	}
	for _, ak := range c.AccessKeys {
		d.AccessKeys = append(d.AccessKeys, AccessKeyDefinition(ak))
	}
	if len(c.Budgets) > 0 {
		d.Budgets = make(map[string]BudgetDefinition, len(c.Budgets))
		for k, b := range c.Budgets {
			d.Budgets[k] = BudgetDefinition{
				TPM: b.Limits.TPM, RPM: b.Limits.RPM, Concurrency: b.Limits.Concurrency,
				TokensPerDay: b.Limits.TokensPerDay, GuaranteedTPM: b.GuaranteedTPM,
			}
		}
	}
	return d
}

// Config converts the definition back. It does not validate: definitions
// come from quota.ParseTenant before they are stored.
func (d Definition) Config() quota.TenantConfig {
	c := quota.TenantConfig{APIKeys: slices.Clone(d.APIKeys), Models: slices.Clone(d.Models), NoCrossFamily: d.CrossFamily != nil && !*d.CrossFamily}
	for _, ak := range d.AccessKeys {
		c.AccessKeys = append(c.AccessKeys, quota.AccessKeyConfig(ak))
	}
	if len(d.Budgets) > 0 {
		c.Budgets = make(map[string]quota.TenantBudget, len(d.Budgets))
		for k, b := range d.Budgets {
			c.Budgets[k] = quota.TenantBudget{
				Limits:        quota.Limits{TPM: b.TPM, RPM: b.RPM, Concurrency: b.Concurrency, TokensPerDay: b.TokensPerDay},
				GuaranteedTPM: b.GuaranteedTPM,
			}
		}
	}
	return c
}

// override is the stored document of one tenant id: one field of the Redis
// hash, JSON. See the package doc for how it combines with the file.
type override struct {
	// Deleted is a tombstone: the tenant is hidden whatever the file says.
	Deleted bool `json:"deleted,omitempty"`
	// Tenant, when set, replaces the file's definition as a whole.
	Tenant *Definition `json:"tenant,omitempty"`
	// Issued are the keys issued through the admin API.
	Issued issuedKeys `json:"issued,omitzero"`
	// Revoked are key ids revoked, of any origin.
	Revoked []string `json:"revoked,omitempty"`
}

// issuedKeys are keys the admin API issued: bearer keys by hash only,
// access keys with their secret sealed (SigV4 needs the secret itself).
type issuedKeys struct {
	APIKeys    []string    `json:"api_keys,omitempty"`
	AccessKeys []sealedKey `json:"access_keys,omitempty"`
}

type sealedKey struct {
	ID     string `json:"id"`
	Sealed string `json:"sealed"`
}

func (o *override) clone() *override {
	if o == nil {
		return &override{}
	}
	c := &override{
		Deleted: o.Deleted,
		Issued: issuedKeys{
			APIKeys:    slices.Clone(o.Issued.APIKeys),
			AccessKeys: slices.Clone(o.Issued.AccessKeys),
		},
		Revoked: slices.Clone(o.Revoked),
	}
	if o.Tenant != nil {
		d := DefinitionOf(o.Tenant.Config()) // deep copy
		c.Tenant = &d
	}
	return c
}

// empty reports whether the override says nothing, so that its field can
// be removed from the hash.
func (o *override) empty() bool {
	return !o.Deleted && o.Tenant == nil && len(o.Issued.APIKeys) == 0 && len(o.Issued.AccessKeys) == 0 && len(o.Revoked) == 0
}

func (o *override) revoked(id string) bool { return slices.Contains(o.Revoked, id) }

// encode returns the stored form; nil for an empty override, which the
// store deletes.
func (o *override) encode() ([]byte, error) {
	if o.empty() {
		return nil, nil
	}
	return json.Marshal(o)
}

func decodeOverride(data []byte) (*override, error) {
	var o override
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&o); err != nil {
		return nil, err
	}
	return &o, nil
}

// mergePatch applies an RFC 7386 JSON merge patch to a JSON value: an
// object patch merges member by member, null removes a member, anything
// else replaces the target whole (arrays included).
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	} else {
		t = maps.Clone(t)
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}
