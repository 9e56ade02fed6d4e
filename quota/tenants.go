package quota

// TenantConfig is one tenant as the budgets file (tenants: section) or the
// admin API defines it. Credentials appear only as references: bearer keys
// as hashes, access-key secrets as the name of an environment variable or a
// mounted file, never the secret itself.
type TenantConfig struct {
	// APIKeys are the tenant's bearer keys (Bedrock API keys), each as
	// "sha256:<64 lowercase hex>" of the key.
	APIKeys []string
	// AccessKeys are the tenant's SigV4 key pairs.
	AccessKeys []AccessKeyConfig
	// Models are the model ids the tenant may call: exact ids or globs
	// ("anthropic.*", path.Match syntax). Empty: every model.
	Models []string
	// Budgets are the tenant's budgets by model id (as requested, decoded),
	// and "*" for all models together.
	Budgets map[string]TenantBudget
}

// AccessKeyConfig is a SigV4 access key id and where its secret is read
// from: exactly one of SecretEnv and SecretFile is set.
type AccessKeyConfig struct {
	ID         string
	SecretEnv  string
	SecretFile string
}

// TenantBudget is a tenant's budget for one model pool, or for all models
// ("*"). Zero fields are unlimited.
type TenantBudget struct {
	Limits Limits
	// GuaranteedTPM is the tenant's floor in the model's pool: other
	// tenants may borrow only the part of it the tenant is not using. Only
	// valid for a model, not for "*".
	GuaranteedTPM int64
}

// AllModels is the Budgets key of a tenant's budget over all models.
const AllModels = "*"

// CONTRACT SKELETON (bodies to follow with the tenants work).

// ParseTenant parses and validates one tenant definition in JSON or YAML
// (the admin API's request body, same field names as the budgets file):
// every problem is reported as a *ConfigError joined with errors.Join, its
// Path relative to the tenant, e.g. `budgets["*"].tpm`.
func ParseTenant(id string, data []byte) (TenantConfig, error) {
	return TenantConfig{}, &ConfigError{Msg: "not implemented"}
}

// CheckTenants validates tenants against the pools of c: the guarantees in
// each pool must fit its TPM, and so on. Problems are *ConfigError joined
// with errors.Join.
func CheckTenants(c *Config, tenants map[string]TenantConfig) error { return nil }

// CheckTenantID returns what is wrong with a tenant id, or "".
func CheckTenantID(id string) string { return "" }
