package quota

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// TenantConfig is one tenant as the budgets file (tenants: section) or the
// admin API defines it. Credentials appear only as references: bearer keys
// as hashes, access-key secrets as the name of an environment variable or a
// mounted file, never the secret itself.
//
// After ParseConfig or ParseTenant the empty lists are nil and Budgets is
// never nil, so that a parsed tenant and its canonical rendering parsed
// again are equal.
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
	// NoCrossFamily forbids serving the tenant's requests with a model of
	// another family than the one its body is written for ("cross_family:
	// false"), e.g. where a translated answer would break the tenant's
	// evaluations. Routes still overflow within the family.
	NoCrossFamily bool
}

// AccessKeyConfig is a SigV4 access key id and where its secret is read
// from: exactly one of SecretEnv and SecretFile is set.
type AccessKeyConfig struct {
	// ID is the access key id callers sign with, AWS style: 16 to 128
	// characters of A-Z and 0-9.
	ID string
	// SecretEnv names the environment variable holding the secret.
	SecretEnv string
	// SecretFile is the path of a file holding the secret, e.g. a mounted
	// Kubernetes Secret.
	SecretFile string
}

// TenantBudget is a tenant's budget for one model pool, or for all models
// ("*"). Zero fields are unlimited.
type TenantBudget struct {
	// Limits are the tenant's share of the pool (or, under "*", its total
	// over every pool).
	Limits Limits
	// GuaranteedTPM is the tenant's floor in the model's pool: other
	// tenants may borrow only the part of it the tenant is not using. Only
	// valid for a model, not for "*".
	GuaranteedTPM int64
}

// AllModels is the Budgets key of a tenant's budget over all models.
const AllModels = "*"

// MaxTenantIDLen bounds a tenant id, which is repeated in every Redis key
// and metric series of the tenant.
const MaxTenantIDLen = 64

// Field names of a tenant, for "did you mean" in unknown-field errors.
var (
	tenantFields       = []string{"api_keys", "access_keys", "models", "budgets", "cross_family"}
	accessKeyFields    = []string{"id", "secret_env", "secret_file"}
	tenantBudgetFields = []string{"tpm", "rpm", "concurrency", "tokens_per_day", "guaranteed_tpm"}
)

var (
	tenantIDRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
	accessKeyIDRE = regexp.MustCompile(`^[A-Z0-9]+$`)
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	hexRE         = regexp.MustCompile(`^[0-9a-fA-F]+$`)
)

// CheckTenantID returns what is wrong with a tenant id, or "". The id is
// part of Redis keys, metric labels and admin API URLs, so it is kept to
// characters that need no escaping in any of them; starting with a letter
// or digit also rules out "." and "..", which would be path segments in a
// URL. "default" is allowed: it is the open-mode tenant's name, and a file
// may define that tenant explicitly.
func CheckTenantID(id string) string {
	switch {
	case id == "":
		return "empty tenant id"
	case len(id) > MaxTenantIDLen:
		return fmt.Sprintf("a tenant id is at most %d characters, got %d", MaxTenantIDLen, len(id))
	case !tenantIDRE.MatchString(id):
		return fmt.Sprintf("a tenant id is lowercase letters, digits, '_', '.' and '-', starting with a letter or digit (it is used in Redis keys, metric labels and URLs), got %q", id)
	}
	return ""
}

// ParseTenant parses and validates one tenant definition in JSON or YAML
// (the admin API's request body, same field names as the budgets file):
// every problem is reported as a *ConfigError joined with errors.Join, its
// Path relative to the tenant, e.g. `budgets["*"].tpm`, and "id" for a bad
// id. JSON is read as YAML, so the rules (and messages) are exactly those
// of the budgets file. Checks that involve other tenants or the pools are
// CheckTenants'.
func ParseTenant(id string, data []byte) (TenantConfig, error) {
	var p configParser
	if msg := CheckTenantID(id); msg != "" {
		p.errs = append(p.errs, &ConfigError{Path: "id", Msg: msg})
	}
	root, trailing, syntax := decodeOne(data, "a tenant definition")
	var t TenantConfig
	switch {
	case syntax != nil:
		p.errs = append(p.errs, syntax)
	case yamlIsNull(root):
		p.add(root, "", "empty tenant definition: send an object with api_keys, access_keys, models and budgets ({} for a tenant with none)")
	default:
		t, _ = p.tenant(id, root, "")
	}
	if trailing != nil {
		p.errs = append(p.errs, trailing)
	}
	if err := joinConfigErrors(p.errs); err != nil {
		return TenantConfig{}, err
	}
	return t, nil
}

// CheckTenants validates tenants against the pools of c: the guarantees in
// each pool must fit its TPM, and so on. Problems are *ConfigError joined
// with errors.Join.
//
// It checks what no single tenant can: a bearer key or access key id held
// twice (a credential must identify one tenant), and the guarantees in each
// pool, which must sum to at most the pool's TPM (c.Model of the pool id)
// since the pool cannot honour them all at once otherwise; a guarantee in a
// pool with no TPM limit has nothing to be honoured against. It also
// repeats the per-budget guarantee rules of ParseTenant, for tenants built
// in code. It is a pure function of its arguments, so that the admin API
// can check a change against the merged set (file and run-time tenants)
// before storing it.
func CheckTenants(c *Config, tenants map[string]TenantConfig) error {
	return joinConfigErrors(checkTenants(c, tenants, nil, nil))
}

// tenantSite is where a tenant's credential or guarantee is written in the
// budgets file, so that problems found after parsing, across tenants, still
// carry a line and the path as written.
type tenantSite struct {
	line int
	path string
}

// siteKey names one credential or guarantee of a tenant: kind is "api_key",
// "access_key" or "guarantee", value the hash, id or pool.
func siteKey(tenant, kind, value string) string {
	return tenant + "\x00" + kind + "\x00" + value
}

// checkTenants is CheckTenants with the file's sites (nil: none) and the
// pools whose own budget had problems (skip; nil: none), whose guarantees
// are not checked: their limits are unknown, and a second error about them
// would only mislead.
func checkTenants(c *Config, tenants map[string]TenantConfig, sites map[string]tenantSite, skip func(pool string) bool) []*ConfigError {
	var errs []*ConfigError
	at := func(tenant, kind, value, path string) tenantSite {
		if s, ok := sites[siteKey(tenant, kind, value)]; ok {
			return s
		}
		return tenantSite{path: path}
	}
	ids := slices.Sorted(maps.Keys(tenants))

	type guarantee struct {
		tenant string
		tpm    int64
		site   tenantSite
	}
	pools := map[string][]guarantee{}
	for _, id := range ids {
		for _, key := range slices.Sorted(maps.Keys(tenants[id].Budgets)) {
			b := tenants[id].Budgets[key]
			if b.GuaranteedTPM <= 0 {
				continue
			}
			s := at(id, "guarantee", key, tenantPath(id)+`.budgets[`+strconv.Quote(key)+`].guaranteed_tpm`)
			switch {
			case key == AllModels:
				errs = append(errs, &ConfigError{Line: s.line, Path: s.path, Msg: guaranteeUnderAllMsg})
				continue
			case b.Limits.TPM > 0 && b.GuaranteedTPM > b.Limits.TPM:
				errs = append(errs, &ConfigError{Line: s.line, Path: s.path, Msg: guaranteeOverTPMMsg(b)})
			case tenants[id].Budgets[AllModels].Limits.TPM > 0 && b.GuaranteedTPM > tenants[id].Budgets[AllModels].Limits.TPM:
				errs = append(errs, &ConfigError{Line: s.line, Path: s.path, Msg: fmt.Sprintf(
					"guaranteed_tpm %d exceeds the tenant's tpm over all models (budgets[\"*\"].tpm %d): the tenant could never use all of its guarantee",
					b.GuaranteedTPM, tenants[id].Budgets[AllModels].Limits.TPM)})
			case !tenants[id].mayCall(key):
				errs = append(errs, &ConfigError{Line: s.line, Path: s.path, Msg: fmt.Sprintf(
					"the tenant's models do not include %q, so it could never use a guarantee there", key)})
			}
			pools[key] = append(pools[key], guarantee{id, b.GuaranteedTPM, s})
		}
	}

	errs = append(errs, duplicateCredentials(tenants, ids, at)...)

	for _, pool := range slices.Sorted(maps.Keys(pools)) {
		if skip != nil && skip(pool) {
			continue
		}
		gs := pools[pool]
		limit := `models[` + strconv.Quote(pool) + `].tpm`
		mb, ok := c.Model(pool) // ok is false for a nil c, which is not read further
		if ok {
			if _, listed := c.Models[pool]; !listed {
				limit = "default_model.tpm"
			}
		}
		if !ok || mb.Limits.TPM == 0 {
			why := "it is not listed under models and there is no default_model"
			if ok {
				why = limit + " is not set"
			}
			for _, g := range gs {
				errs = append(errs, &ConfigError{Line: g.site.line, Path: g.site.path, Msg: fmt.Sprintf(
					"pool %q has no TPM limit (%s), so a guarantee in it has nothing to be honoured against: give the pool a tpm, or remove the guarantee", pool, why)})
			}
			continue
		}
		var sum int64
		parts := make([]string, len(gs))
		first := 0 // the line of the first guarantee in the file, if any
		for i, g := range gs {
			sum = satAdd(sum, g.tpm)
			parts[i] = fmt.Sprintf("%s %d", g.tenant, g.tpm)
			if g.site.line > 0 && (first == 0 || g.site.line < first) {
				first = g.site.line
			}
		}
		if sum > mb.Limits.TPM {
			errs = append(errs, &ConfigError{Line: first, Msg: fmt.Sprintf(
				"pool %q: guaranteed_tpm of tenants %s sums to %d, over the pool's tpm %d (%s): the guarantees could not all be honoured at once",
				pool, strings.Join(parts, ", "), sum, mb.Limits.TPM, limit)})
		}
	}
	return errs
}

// duplicateCredentials reports each bearer key hash or access key id held
// more than once. The first holder is the one first in the file, or in
// tenant id order when there are no lines; every later holder is reported,
// naming the first.
func duplicateCredentials(tenants map[string]TenantConfig, ids []string, at func(tenant, kind, value, path string) tenantSite) []*ConfigError {
	type holder struct {
		tenant, value string
		site          tenantSite
	}
	var errs []*ConfigError
	for _, kind := range []string{"api_key", "access_key"} {
		var hs []holder
		for _, id := range ids {
			t := tenants[id]
			if kind == "api_key" {
				for i, k := range t.APIKeys {
					hs = append(hs, holder{id, k, at(id, kind, k, fmt.Sprintf("%s.api_keys[%d]", tenantPath(id), i))})
				}
			} else {
				for i, k := range t.AccessKeys {
					hs = append(hs, holder{id, k.ID, at(id, kind, k.ID, fmt.Sprintf("%s.access_keys[%d].id", tenantPath(id), i))})
				}
			}
		}
		// Stable: with no lines (all 0) the tenant id order stays.
		slices.SortStableFunc(hs, func(a, b holder) int { return cmp.Compare(a.site.line, b.site.line) })
		first := map[string]holder{}
		for _, h := range hs {
			f, dup := first[h.value]
			if !dup {
				first[h.value] = h
				continue
			}
			what := "bearer key"
			if kind == "access_key" {
				what = fmt.Sprintf("access key id %s", h.value) // an id, not a secret
			}
			where := f.site.path
			if f.site.line > 0 {
				where += fmt.Sprintf(", line %d", f.site.line)
			}
			var msg string
			if f.tenant == h.tenant { // only for tenants built in code: the parser drops these
				msg = fmt.Sprintf("the same %s as %s: list each once", what, f.site.path)
			} else {
				msg = fmt.Sprintf("tenant %q holds the same %s as tenant %q (%s): a credential must identify one tenant", h.tenant, what, f.tenant, where)
			}
			errs = append(errs, &ConfigError{Line: h.site.line, Path: h.site.path, Msg: msg})
		}
	}
	return errs
}

func tenantPath(id string) string { return "tenants[" + strconv.Quote(id) + "]" }

// satAdd adds non-negative counts without wrapping: thousands of tenants
// each guaranteeing the maximum count would overflow int64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

const guaranteeUnderAllMsg = `guaranteed_tpm cannot be set under "*": a guarantee is a floor in one model pool, so set it under that model's id`

func guaranteeOverTPMMsg(b TenantBudget) string {
	return fmt.Sprintf("guaranteed_tpm %d exceeds this budget's tpm %d: the tenant could never use all of its guarantee", b.GuaranteedTPM, b.Limits.TPM)
}

// joinPath appends a field to a path that may be empty (a tenant parsed on
// its own by ParseTenant).
func joinPath(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}

// firstAt names the first of two equal list items for "listed twice": its
// path, since both may be on one line of a flow list, and its line.
func firstAt(path string, n *yaml.Node) string { return fmt.Sprintf("%s (line %d)", path, n.Line) }

func indexPath(prefix string, i int) string { return prefix + "[" + strconv.Itoa(i) + "]" }

// addSite records where a tenant's credential or guarantee is written.
func (p *configParser) addSite(tenant, kind, value string, n *yaml.Node, path string) {
	if p.sites == nil {
		p.sites = map[string]tenantSite{}
	}
	p.sites[siteKey(tenant, kind, value)] = tenantSite{n.Line, path}
}

// tenants parses the tenants section into cfg.Tenants. A tenant with a
// bad id is still walked, so that its other problems are reported too.
func (p *configParser) tenants(n *yaml.Node, cfg *Config) {
	for _, e := range p.section(n, "tenants", "tenant id to tenant") {
		id := e.key.Value
		if yamlIsNull(e.key) {
			id = ""
		}
		path := tenantPath(id)
		msg := CheckTenantID(id)
		if msg != "" {
			p.add(e.key, path, "%s", msg)
		}
		// A tenant with problems is kept (its valid parts only), so that the
		// cross-tenant checks still see its other credentials and
		// guarantees; ParseConfig returns no Config when there are errors.
		if t, _ := p.tenant(id, yamlResolve(e.val), path); msg == "" {
			cfg.Tenants[id] = t
		}
	}
}

// tenant parses one tenant's body; path is "" for ParseTenant. ok is false
// when it has any problem.
func (p *configParser) tenant(id string, n *yaml.Node, path string) (t TenantConfig, ok bool) {
	t.Budgets = map[string]TenantBudget{}
	if yamlIsNull(n) { // "search:" alone: no credentials yet, every model, no budget
		return t, true
	}
	if n.Kind != yaml.MappingNode {
		p.add(n, path, "a tenant must be a mapping with api_keys, access_keys, models and budgets, got %s", yamlDescribe(n))
		return t, false
	}
	before := len(p.errs)
	for _, e := range p.entries(n, path, true) {
		name, fpath, v := e.key.Value, joinPath(path, e.key.Value), yamlResolve(e.val)
		switch name {
		case "api_keys":
			t.APIKeys = p.apiKeys(id, v, fpath)
		case "access_keys":
			t.AccessKeys = p.accessKeys(id, v, fpath)
		case "models":
			t.Models = p.modelPatterns(v, fpath)
		case "budgets":
			p.tenantBudgets(id, v, fpath, t.Budgets)
		case "cross_family":
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
				p.add(v, fpath, "must be true or false, got %s", yamlDescribe(v))
				continue
			}
			t.NoCrossFamily = v.Value == "false"
		default:
			if slices.Contains(tenantBudgetFields, name) {
				p.add(e.key, path, `%s belongs in a budget: budgets: {"*": {%s: ...}} for all models together, or under a model id`, name, name)
				continue
			}
			p.unknownField(e.key, path, tenantFields)
		}
	}
	return t, len(p.errs) == before
}

// list returns a list's items, aliases resolved; null is an empty list.
func (p *configParser) list(n *yaml.Node, path, want string) ([]*yaml.Node, bool) {
	if yamlIsNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		// yamlKind, not yamlDescribe: a string here may be a raw key.
		p.add(n, path, "must be a list of %s, got %s", want, yamlKind(n))
		return nil, false
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, it := range n.Content {
		items[i] = yamlResolve(it)
	}
	return items, true
}

// yamlKind is yamlDescribe without the value of a string, for fields that
// may hold a secret by mistake: errors are logged, and must not leak it.
func yamlKind(n *yaml.Node) string {
	if n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		return "a string"
	}
	return yamlDescribe(n)
}

func yamlIsString(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str"
}

func (p *configParser) apiKeys(tenant string, n *yaml.Node, path string) []string {
	items, _ := p.list(n, path, `"sha256:<hex>" key hashes`)
	var keys []string
	first := map[string]string{}
	for i, it := range items {
		ipath := indexPath(path, i)
		if !yamlIsString(it) {
			p.add(it, ipath, `must be a string "sha256:<64 lowercase hex digits>", got %s`, yamlKind(it))
			continue
		}
		if msg := checkAPIKeyHash(it.Value); msg != "" {
			p.add(it, ipath, "%s", msg)
			continue
		}
		if f, dup := first[it.Value]; dup {
			p.add(it, ipath, "the same key as %s: list each key once", f)
			continue
		}
		first[it.Value] = firstAt(ipath, it)
		p.addSite(tenant, "api_key", it.Value, it, ipath)
		keys = append(keys, it.Value)
	}
	return keys
}

// checkAPIKeyHash returns what is wrong with a stored bearer key, or "". It
// never quotes the value: a raw key written here by mistake must not end up
// in logs as well.
func checkAPIKeyHash(v string) string {
	const how = "printf %s \"$KEY\" | sha256sum"
	hexPart, ok := strings.CutPrefix(v, "sha256:")
	switch {
	case !ok && strings.HasPrefix(strings.ToLower(v), "sha256:"):
		return `write the prefix "sha256:" in lowercase`
	case !ok && len(v) == 64 && hexRE.MatchString(v):
		return `a key hash needs the prefix "sha256:" (sha256:<64 lowercase hex digits>)`
	case !ok:
		return `this looks like a raw key, and the file holds only hashes of keys: write "sha256:" followed by the hex digits that ` +
			how + ` prints (and replace the key if this file has been shared)`
	case len(hexPart) != 64:
		return fmt.Sprintf("a SHA-256 hash is 64 hex digits, got %d characters after sha256: (compute it with %s)", len(hexPart), how)
	case !hexRE.MatchString(hexPart):
		return "a SHA-256 hash is hex digits 0-9 and a-f (compute it with " + how + ")"
	case strings.ToLower(hexPart) != hexPart:
		return "write the hex digits in lowercase, as sha256sum prints them"
	}
	return ""
}

func (p *configParser) accessKeys(tenant string, n *yaml.Node, path string) []AccessKeyConfig {
	items, _ := p.list(n, path, "access keys {id, secret_env or secret_file}")
	var keys []AccessKeyConfig
	first := map[string]string{}
	for i, it := range items {
		ipath := indexPath(path, i)
		if it.Kind != yaml.MappingNode {
			p.add(it, ipath, "must be a mapping {id, secret_env or secret_file}, got %s", yamlKind(it))
			continue
		}
		before := len(p.errs)
		var k AccessKeyConfig
		var idNode, fileNode *yaml.Node
		for _, e := range p.entries(it, ipath, true) {
			name, fpath, v := e.key.Value, ipath+"."+e.key.Value, yamlResolve(e.val)
			switch name {
			case "id":
				if s, ok := p.credentialString(v, fpath); ok {
					if msg := checkAccessKeyID(s); msg != "" {
						p.add(v, fpath, "%s", msg)
					} else {
						k.ID, idNode = s, v
					}
				}
			case "secret_env":
				if s, ok := p.credentialString(v, fpath); ok {
					if !envNameRE.MatchString(s) {
						// Not quoted: the secret itself may have been written here.
						p.add(v, fpath, "must name an environment variable (letters, digits and _, not starting with a digit) that holds the secret, not the secret itself")
					} else {
						k.SecretEnv = s
					}
				}
			case "secret_file":
				if s, ok := p.credentialString(v, fpath); ok {
					if strings.ContainsFunc(s, func(r rune) bool { return r == 0 || unicode.IsSpace(r) && r != ' ' }) {
						p.add(v, fpath, "must be the path of a file that holds the secret, not the secret itself")
					} else {
						k.SecretFile, fileNode = s, v
					}
				}
			default:
				if configClosestName(name, accessKeyFields) == "" && strings.Contains(strings.ToLower(name), "secret") {
					p.add(e.key, ipath, "%q: secrets never go in the budgets file, which is committed and logged; name an environment variable (secret_env) or a mounted file (secret_file) that holds it", name)
					continue
				}
				p.unknownField(e.key, ipath, accessKeyFields)
			}
		}
		if len(p.errs) > before { // the entries' own problems say enough
			continue
		}
		if k.ID == "" {
			p.add(it, ipath, "missing id (the access key id that callers sign with)")
		}
		switch {
		case k.SecretEnv == "" && k.SecretFile == "":
			p.add(it, ipath, "missing secret_env or secret_file: where the gateway reads the key's secret from")
		case k.SecretEnv != "" && k.SecretFile != "":
			p.add(fileNode, ipath, "set one of secret_env and secret_file, not both")
		}
		if len(p.errs) > before {
			continue
		}
		if f, dup := first[k.ID]; dup {
			p.add(idNode, ipath+".id", "access key id %s is listed twice (first at %s)", k.ID, f)
			continue
		}
		first[k.ID] = firstAt(ipath+".id", idNode)
		p.addSite(tenant, "access_key", k.ID, idNode, ipath+".id")
		keys = append(keys, k)
	}
	return keys
}

// credentialString reads a non-empty string without quoting it in errors.
func (p *configParser) credentialString(n *yaml.Node, path string) (string, bool) {
	if !yamlIsString(n) || n.Value == "" {
		what := yamlKind(n)
		if yamlIsString(n) {
			what = "an empty string"
		}
		p.add(n, path, "must be a non-empty string, got %s", what)
		return "", false
	}
	return n.Value, true
}

// checkAccessKeyID returns what is wrong with an access key id, or "". SigV4
// clients (the AWS SDKs) accept any id, but AWS's own are upper-case letters
// and digits, and holding ours to that keeps them safe in the logs and
// metrics they appear in.
func checkAccessKeyID(id string) string {
	switch {
	case len(id) < 16 || len(id) > 128:
		return fmt.Sprintf("an access key id is 16 to 128 characters (AWS style), got %d", len(id))
	case !accessKeyIDRE.MatchString(id):
		return "an access key id is upper-case letters A-Z and digits 0-9 only (AWS style)"
	}
	return ""
}

func (p *configParser) modelPatterns(n *yaml.Node, path string) []string {
	items, _ := p.list(n, path, `model ids or globs such as "anthropic.*"`)
	var models []string
	first := map[string]string{}
	for i, it := range items {
		ipath := indexPath(path, i)
		if !yamlIsString(it) {
			p.add(it, ipath, "must be a model id or glob, got %s", yamlDescribe(it))
			continue
		}
		if msg := checkModelPattern(it.Value); msg != "" {
			p.add(it, ipath, "%s", msg)
			continue
		}
		if f, dup := first[it.Value]; dup {
			p.add(it, ipath, "%q is listed twice (first at %s)", it.Value, f)
			continue
		}
		first[it.Value] = firstAt(ipath, it)
		models = append(models, it.Value)
	}
	return models
}

// checkModelPattern returns what is wrong with an entry of a tenant's
// models, or "": a model id or a path.Match glob. A pattern that
// path.Match rejects would match nothing, silently.
func checkModelPattern(pat string) string {
	switch {
	case pat == "":
		return "empty model id"
	case strings.ContainsFunc(pat, unicode.IsSpace):
		return "a model id must not contain white space"
	case strings.Contains(pat, "%"):
		return "the model id looks percent-encoded; write it decoded, as Bedrock names it (':' not %3A, '/' not %2F)"
	}
	if _, err := path.Match(pat, ""); err != nil {
		return fmt.Sprintf("%q is not a valid glob (path.Match syntax: * ? [a-z] and \\ to escape)", pat)
	}
	return ""
}

func (p *configParser) tenantBudgets(tenant string, n *yaml.Node, path string, into map[string]TenantBudget) {
	if yamlIsNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.add(n, path, `must be a mapping from model id (or "*" for all models together) to budget, got %s`, yamlDescribe(n))
		return
	}
	for _, e := range p.entries(n, path, true) {
		key := e.key.Value
		if yamlIsNull(e.key) {
			key = ""
		}
		bpath := path + "[" + strconv.Quote(key) + "]"
		if msg := checkTenantBudgetKey(key); msg != "" {
			p.add(e.key, bpath, "%s", msg)
			continue
		}
		if b, ok := p.tenantBudget(tenant, key, yamlResolve(e.val), bpath); ok {
			into[key] = b
		}
	}
}

// checkTenantBudgetKey returns what is wrong with a key of a tenant's
// budgets, or "". Budgets are looked up by pool id, exactly, so a glob or a
// foundation-model ARN (whose pool is the id it names, see PoolID) would
// never be found and the tenant would be silently unlimited.
func checkTenantBudgetKey(key string) string {
	if key == AllModels {
		return ""
	}
	if strings.ContainsAny(key, "*?[") {
		return `budgets are per model pool, matched exactly, so a glob matches nothing: use "*" for one budget over all models together, or list each model`
	}
	if msg := checkModelID(key); msg != "" {
		return msg
	}
	return ""
}

// modelOnlyFields are the per-request caps of a model pool, which a tenant
// budget does not have.
var modelOnlyFields = []string{"max_input_tokens", "max_output_tokens", "output_burndown", "default_max_tokens"}

// tenantBudget parses one of a tenant's budgets; key is its pool id or
// AllModels. ok is false when it has any problem.
func (p *configParser) tenantBudget(tenant, key string, n *yaml.Node, path string) (b TenantBudget, ok bool) {
	if yamlIsNull(n) { // listed with no limits: tracked, not limited
		return b, true
	}
	if n.Kind != yaml.MappingNode {
		p.add(n, path, "must be a mapping of limits (tpm, rpm, ...), got %s", yamlDescribe(n))
		return b, false
	}
	before := len(p.errs)
	var tpmOK bool
	var guarantee *yaml.Node
	for _, e := range p.entries(n, path, true) {
		name, fpath, v := e.key.Value, path+"."+e.key.Value, yamlResolve(e.val)
		if good, isLimit := p.limit(&b.Limits, name, v, fpath); isLimit {
			if name == "tpm" {
				tpmOK = good
			}
			continue
		}
		switch name {
		case "guaranteed_tpm":
			if key == AllModels {
				p.add(e.key, fpath, "%s", guaranteeUnderAllMsg)
				continue
			}
			var good bool
			if b.GuaranteedTPM, good = p.count(v, fpath); good {
				guarantee = v
				p.addSite(tenant, "guarantee", key, v, fpath)
			}
		default:
			if slices.Contains(modelOnlyFields, name) {
				p.add(e.key, path, "%s is a per-request cap of the model pool: set it under models, not in a tenant's budget (%s)", name, strings.Join(tenantBudgetFields, ", "))
				continue
			}
			p.unknownField(e.key, path, tenantBudgetFields)
		}
	}
	if guarantee != nil && tpmOK && b.Limits.TPM > 0 && b.GuaranteedTPM > b.Limits.TPM {
		p.add(guarantee, path+".guaranteed_tpm", "%s", guaranteeOverTPMMsg(b))
	}
	return b, len(p.errs) == before
}

// writeCanonicalTenants renders tenants for Canonical: ids and budget keys
// sorted, lists in their order, every limit written. It can print no
// secret: a TenantConfig holds only key hashes and where secrets are read.
func writeCanonicalTenants(b *bytes.Buffer, tenants map[string]TenantConfig) {
	if len(tenants) == 0 {
		b.WriteString("tenants: {}\n")
		return
	}
	b.WriteString("tenants:\n")
	for _, id := range slices.Sorted(maps.Keys(tenants)) {
		t := tenants[id]
		fmt.Fprintf(b, "  %s:\n", strconv.Quote(id))
		writeCanonicalList(b, "    ", "api_keys", t.APIKeys)
		if len(t.AccessKeys) == 0 {
			b.WriteString("    access_keys: []\n")
		} else {
			b.WriteString("    access_keys:\n")
			for _, k := range t.AccessKeys {
				fmt.Fprintf(b, "      - id: %s\n", strconv.Quote(k.ID))
				if k.SecretEnv != "" {
					fmt.Fprintf(b, "        secret_env: %s\n", strconv.Quote(k.SecretEnv))
				}
				if k.SecretFile != "" {
					fmt.Fprintf(b, "        secret_file: %s\n", strconv.Quote(k.SecretFile))
				}
			}
		}
		writeCanonicalList(b, "    ", "models", t.Models)
		if t.NoCrossFamily {
			b.WriteString("    cross_family: false\n")
		}
		if len(t.Budgets) == 0 {
			b.WriteString("    budgets: {}\n")
			continue
		}
		b.WriteString("    budgets:\n")
		for _, key := range slices.Sorted(maps.Keys(t.Budgets)) {
			tb := t.Budgets[key]
			fmt.Fprintf(b, "      %s:\n", strconv.Quote(key))
			fmt.Fprintf(b, "        tpm: %d\n        rpm: %d\n        concurrency: %d\n        tokens_per_day: %d\n",
				tb.Limits.TPM, tb.Limits.RPM, tb.Limits.Concurrency, tb.Limits.TokensPerDay)
			if key != AllModels {
				fmt.Fprintf(b, "        guaranteed_tpm: %d\n", tb.GuaranteedTPM)
			}
		}
	}
}

func writeCanonicalList(b *bytes.Buffer, indent, name string, items []string) {
	if len(items) == 0 {
		fmt.Fprintf(b, "%s%s: []\n", indent, name)
		return
	}
	fmt.Fprintf(b, "%s%s:\n", indent, name)
	for _, s := range items {
		fmt.Fprintf(b, "%s  - %s\n", indent, strconv.Quote(s))
	}
}

// joinConfigErrors is errors.Join for *ConfigError, nil for none.
func joinConfigErrors(errs []*ConfigError) error {
	if len(errs) == 0 {
		return nil
	}
	joined := make([]error, len(errs))
	for i, e := range errs {
		joined[i] = e
	}
	return errors.Join(joined...)
}

// mayCall reports whether the tenant's allowed models include a pool id,
// as tenant.Tenant.Allows matches a requested id.
func (tc TenantConfig) mayCall(pool string) bool {
	if len(tc.Models) == 0 {
		return true
	}
	for _, p := range tc.Models {
		if ok, _ := path.Match(p, pool); ok || p == "*" || p == pool {
			return true
		}
	}
	return false
}
