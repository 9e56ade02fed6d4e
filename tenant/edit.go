package tenant

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quotagate/quotagate/quota"
)

// Errors of the admin writes. A write that returns any error wrote nothing.
var (
	// ErrNotFound: no tenant of that id is in force.
	ErrNotFound = errors.New("no such tenant")
	// ErrKeyNotFound: the tenant has no key of that id in force.
	ErrKeyNotFound = errors.New("no such key")
	// ErrNoOverride: the tenant has no override to remove.
	ErrNoOverride = errors.New("the tenant has no override")
	// ErrConflict: other writes kept changing the overrides while this one
	// retried; nothing was written.
	ErrConflict = errors.New("the tenants were modified concurrently; retry")
	// ErrNoSecretsKey: access keys cannot be issued without a secrets key.
	ErrNoSecretsKey = errors.New("no secrets key is configured, so access keys cannot be issued")
)

// InvalidError is a write refused for its input; nothing was written. Each
// problem names its field (Path), relative to the tenant, e.g.
// `budgets["*"].tpm`.
type InvalidError struct {
	Problems []*quota.ConfigError
}

// Error lists the problems, one per line.
func (e *InvalidError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return strings.Join(msgs, "\n")
}

// invalid turns errors (quota.ParseTenant's joined *quota.ConfigError, or
// anything else) into an InvalidError.
func invalid(err error) *InvalidError {
	var out InvalidError
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var ce *quota.ConfigError
		if errors.As(err, &ce) {
			out.Problems = append(out.Problems, ce)
			return
		}
		out.Problems = append(out.Problems, &quota.ConfigError{Msg: err.Error()})
	}
	walk(err)
	return &out
}

func invalidf(path, format string, args ...any) *InvalidError {
	return &InvalidError{Problems: []*quota.ConfigError{{Path: path, Msg: fmt.Sprintf(format, args...)}}}
}

// IssuedKey is a key just issued. Secret is returned exactly once: only
// its hash (bearer) or its sealed form (SigV4) is stored.
type IssuedKey struct {
	// Type is KeyBearer or KeySigV4.
	Type string
	// ID is the key's public id: "k-..." for a bearer key, the access key
	// id for SigV4.
	ID string
	// Secret is the bearer key, or the secret access key.
	Secret string
}

// maxWriteAttempts bounds the retries of a write that loses the race for
// the version to other writes: each attempt rereads, recomputes and
// revalidates, so no update is lost, and a write under heavy contention
// ends with ErrConflict rather than spinning.
const maxWriteAttempts = 50

// Put creates or replaces a tenant's definition from a JSON or YAML body in
// the budgets file's field names. Keys issued through the admin API stay.
// created reports that no tenant of that id was in force before.
func (r *Registry) Put(ctx context.Context, id string, body []byte) (t *Tenant, created bool, err error) {
	if msg := quota.CheckTenantID(id); msg != "" {
		return nil, false, invalidf("id", "%s", msg)
	}
	body, err = stripReadOnly(id, body)
	if err != nil {
		return nil, false, err
	}
	cfg, err := quota.ParseTenant(id, body)
	if err != nil {
		return nil, false, invalid(err)
	}
	t, err = r.mutate(ctx, id, func(s *snapshot, cur *override) (*override, error) {
		_, _, exists := definitionOf(s.file, cur, id)
		created = !exists
		next := cur.clone()
		next.Deleted = false
		d := DefinitionOf(cfg)
		next.Tenant = &d
		return next, nil
	})
	return t, created, err
}

// Patch applies a JSON merge patch (RFC 7386) to the tenant's definition in
// force (the file's or the override's) and stores the result as the
// tenant's override.
func (r *Registry) Patch(ctx context.Context, id string, patch []byte) (*Tenant, error) {
	var p any
	dec := json.NewDecoder(bytes.NewReader(patch))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return nil, invalidf("", "the body is not JSON: %v", err)
	}
	if dec.More() {
		return nil, invalidf("", "the body holds more than one JSON value")
	}
	pm, ok := p.(map[string]any)
	if !ok {
		return nil, invalidf("", "a merge patch of a tenant must be a JSON object")
	}
	if err := dropReadOnly(id, pm); err != nil {
		return nil, err
	}
	return r.mutate(ctx, id, func(s *snapshot, cur *override) (*override, error) {
		def, _, ok := definitionOf(s.file, cur, id)
		if !ok {
			return nil, ErrNotFound
		}
		base, err := toJSONValue(DefinitionOf(def))
		if err != nil {
			return nil, err
		}
		merged, err := json.Marshal(mergePatch(base, pm))
		if err != nil {
			return nil, err
		}
		cfg, err := quota.ParseTenant(id, merged)
		if err != nil {
			return nil, invalid(err)
		}
		next := cur.clone()
		d := DefinitionOf(cfg)
		next.Tenant = &d
		return next, nil
	})
}

// Delete hides the tenant with a tombstone, whatever the file says, and
// discards the keys issued to it.
func (r *Registry) Delete(ctx context.Context, id string) error {
	_, err := r.mutate(ctx, id, func(s *snapshot, cur *override) (*override, error) {
		if _, _, ok := definitionOf(s.file, cur, id); !ok {
			return nil, ErrNotFound
		}
		return &override{Deleted: true, Revoked: cur.clone().Revoked}, nil
	})
	return err
}

// Reset removes the tenant's override: its definition, tombstone and issued
// keys. The file's definition, if any, is in force again; revoked keys stay
// revoked.
func (r *Registry) Reset(ctx context.Context, id string) error {
	_, err := r.mutate(ctx, id, func(s *snapshot, cur *override) (*override, error) {
		if cur == nil || (!cur.Deleted && cur.Tenant == nil && len(cur.Issued.APIKeys) == 0 && len(cur.Issued.AccessKeys) == 0) {
			return nil, ErrNoOverride
		}
		return &override{Revoked: slices.Clone(cur.Revoked)}, nil
	})
	return err
}

// IssueKey issues a new key of type KeyBearer or KeySigV4 to the tenant.
// The secret is in the result only: a bearer key is stored as its hash, an
// access key's secret sealed with the secrets key.
func (r *Registry) IssueKey(ctx context.Context, id, keyType string) (IssuedKey, error) {
	var k IssuedKey
	var add func(o *override) error
	switch keyType {
	case KeyBearer:
		key, hash, err := NewAPIKey()
		if err != nil {
			return k, err
		}
		k = IssuedKey{Type: KeyBearer, ID: APIKeyID(key), Secret: key}
		add = func(o *override) error {
			o.Issued.APIKeys = append(o.Issued.APIKeys, hash)
			return nil
		}
	case KeySigV4:
		if r.seal == nil {
			return k, ErrNoSecretsKey
		}
		akid, secret, err := NewAccessKey()
		if err != nil {
			return k, err
		}
		sealed, err := r.seal.seal(id, akid, secret)
		if err != nil {
			return k, err
		}
		k = IssuedKey{Type: KeySigV4, ID: akid, Secret: secret}
		add = func(o *override) error {
			o.Issued.AccessKeys = append(o.Issued.AccessKeys, sealedKey{ID: akid, Sealed: sealed})
			return nil
		}
	default:
		return k, invalidf("type", "must be %q or %q, got %q", KeyBearer, KeySigV4, keyType)
	}
	_, err := r.mutate(ctx, id, func(s *snapshot, cur *override) (*override, error) {
		if _, _, ok := definitionOf(s.file, cur, id); !ok {
			return nil, ErrNotFound
		}
		next := cur.clone()
		return next, add(next)
	})
	if err != nil {
		return IssuedKey{}, err
	}
	return k, nil
}

// RevokeKey revokes one of the tenant's keys by id ("k-..." for a bearer
// key, the access key id for SigV4), whatever its origin: the id is
// recorded in the override store's set of revoked ids (and in the
// tenant's override), so that a key the file lists is refused too, in
// whichever tenant it is listed later, and no admin write can give it to
// a tenant again. Every replica refuses it from its next request.
func (r *Registry) RevokeKey(ctx context.Context, id, keyID string) error {
	_, err := r.mutate(ctx, id, func(s *snapshot, cur *override) (*override, error) {
		def, _, ok := definitionOf(s.file, cur, id)
		if !ok {
			return nil, ErrNotFound
		}
		next := cur.clone()
		if s.isRevoked(next, keyID) || !holdsKey(def, next, keyID) {
			return nil, ErrKeyNotFound
		}
		next.Revoked = append(next.Revoked, keyID)
		// Drop what the override itself holds of the key: its issued form
		// and its place in an admin definition. The revocation stays in
		// case the file lists the key as well.
		next.Issued.APIKeys = slices.DeleteFunc(next.Issued.APIKeys, func(h string) bool { return hashKeyID(h) == keyID })
		next.Issued.AccessKeys = slices.DeleteFunc(next.Issued.AccessKeys, func(k sealedKey) bool { return k.ID == keyID })
		if next.Tenant != nil {
			next.Tenant.APIKeys = slices.DeleteFunc(next.Tenant.APIKeys, func(h string) bool { return hashKeyID(h) == keyID })
			next.Tenant.AccessKeys = slices.DeleteFunc(next.Tenant.AccessKeys, func(k AccessKeyDefinition) bool { return k.ID == keyID })
		}
		return next, nil
	})
	return err
}

// holdsKey reports whether a definition or an override's issued keys hold
// a key id.
func holdsKey(def quota.TenantConfig, o *override, keyID string) bool {
	for _, h := range def.APIKeys {
		if hashKeyID(h) == keyID {
			return true
		}
	}
	for _, ak := range def.AccessKeys {
		if ak.ID == keyID {
			return true
		}
	}
	for _, h := range o.Issued.APIKeys {
		if hashKeyID(h) == keyID {
			return true
		}
	}
	for _, k := range o.Issued.AccessKeys {
		if k.ID == keyID {
			return true
		}
	}
	return false
}

// mutate is a read-modify-write of one tenant's override under optimistic
// concurrency: read the overrides and their version, compute the new
// override, validate the whole resulting set, and write only if the version
// has not moved; else start over. It returns the tenant as the write left
// it (nil if it is no longer in force).
func (r *Registry) mutate(ctx context.Context, id string, fn func(s *snapshot, cur *override) (*override, error)) (*Tenant, error) {
	for attempt := 1; ; attempt++ {
		s, err := r.latest(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading tenant overrides: %w", err)
		}
		next, err := fn(s, s.docs[id])
		if err != nil {
			return nil, err
		}
		if err := r.validate(s, id, next); err != nil {
			return nil, err
		}
		doc, err := next.encode()
		if err != nil {
			return nil, err
		}
		var revoke []string
		for _, k := range next.Revoked {
			if !s.revoked[k] {
				revoke = append(revoke, k)
			}
		}
		wctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
		_, err = r.st.write(wctx, s.version, id, doc, revoke)
		cancel()
		if errors.Is(err, errConflict) {
			if attempt >= maxWriteAttempts {
				return nil, ErrConflict
			}
			// A little random wait spreads out writers that collided, so
			// that each retry has a fair chance.
			select {
			case <-time.After(time.Duration(rand.Int64N(int64(time.Millisecond) * int64(min(attempt, 10))))):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("storing tenant override: %w", err)
		}
		// Serve the change from this replica at once. If the reload fails,
		// the write still stands and Current or Run picks it up.
		_ = r.Load(context.WithoutCancel(ctx))
		return r.tenantOf(s, next, id), nil
	}
}

// latest reads the overrides now, so that a write starts from the newest
// state and version.
func (r *Registry) latest(ctx context.Context) (*snapshot, error) {
	if err := r.acquire(ctx); err != nil {
		return nil, err
	}
	defer r.release()
	return r.reloadLocked(ctx)
}

// tenantOf builds the tenant id of s's file and one override on its own.
func (r *Registry) tenantOf(s *snapshot, o *override, id string) *Tenant {
	m, ok := r.member(s, o, id)
	if !ok {
		return nil
	}
	t, _ := build([]member{m}, r.logger).Get(id)
	return t
}

// validate checks the set of tenants a write would leave: the tenant's
// admin-defined secrets resolve here, it names no revoked key, no
// credential of the tenant belongs to another tenant too, and
// quota.CheckTenants finds nothing new against the budgets file in force
// (guarantees that oversubscribe a pool). Only
// problems the write introduces are refused: a pool shrunk by a file edit
// must not block every unrelated admin write, including the one that
// fixes it.
func (r *Registry) validate(s *snapshot, id string, next *override) error {
	cur := s.docs[id]
	if cur == nil {
		cur = &override{}
	}
	var problems []*quota.ConfigError
	if next.Tenant != nil {
		for i, ak := range next.Tenant.AccessKeys {
			// A key already in the stored definition is not this write's
			// doing (it may resolve on the replica that wrote it).
			if cur.Tenant != nil && slices.Contains(cur.Tenant.AccessKeys, ak) {
				continue
			}
			if _, err := ResolveSecret(quota.AccessKeyConfig(ak)); err != nil {
				field := "secret_env"
				if ak.SecretEnv == "" {
					field = "secret_file"
				}
				problems = append(problems, &quota.ConfigError{Path: fmt.Sprintf("access_keys[%d].%s", i, field), Msg: err.Error()})
			}
		}
	}
	problems = append(problems, revokedKeys(s, id, next)...)
	// Checked here rather than left to CheckTenants, which reports a
	// duplicate at whichever holder comes second in tenant id order: the
	// field at fault is this tenant's. CheckTenants would report the same
	// problem again, so stop here. A duplicate that a file edit already
	// made is not this write's.
	knownDups := map[string]bool{}
	for _, p := range duplicateKeys(s, id, cur) {
		knownDups[p.Msg] = true
	}
	var dups []*quota.ConfigError
	for _, p := range duplicateKeys(s, id, next) {
		if !knownDups[p.Msg] {
			dups = append(dups, p)
		}
	}
	if len(dups) > 0 {
		return &InvalidError{Problems: append(problems, dups...)}
	}

	docs := make(map[string]*override, len(s.docs)+1)
	for k, v := range s.docs {
		docs[k] = v
	}
	docs[id] = next
	cfg := r.config()
	known := map[string]bool{}
	for _, p := range invalidOrNil(quota.CheckTenants(cfg, s.definitions(s.docs))) {
		known[p.Error()] = true
	}
	prefix := "tenants[" + strconv.Quote(id) + "]."
	for _, p := range invalidOrNil(quota.CheckTenants(cfg, s.definitions(docs))) {
		if known[p.Error()] {
			continue
		}
		// Paths relative to the tenant, as ParseTenant's are.
		if rel, ok := strings.CutPrefix(p.Path, prefix); ok {
			p = &quota.ConfigError{Line: p.Line, Path: rel, Msg: p.Msg}
		} else if p.Path == "" && next.Tenant != nil {
			// A pool's guarantees summing over its TPM has no one field at
			// fault in a file; in a write, this tenant's guarantee in
			// that pool is the one that tipped it over.
			for _, pool := range sortedKeys(next.Tenant.Budgets) {
				if next.Tenant.Budgets[pool].GuaranteedTPM > 0 && strings.HasPrefix(p.Msg, "pool "+strconv.Quote(pool)+":") {
					p = &quota.ConfigError{Path: "budgets[" + strconv.Quote(pool) + "].guaranteed_tpm", Msg: p.Msg}
					break
				}
			}
		}
		problems = append(problems, p)
	}
	if len(problems) > 0 {
		return &InvalidError{Problems: problems}
	}
	return nil
}

func invalidOrNil(err error) []*quota.ConfigError {
	if err == nil {
		return nil
	}
	return invalid(err).Problems
}

func (r *Registry) config() *quota.Config {
	if r.o.Config != nil {
		if c := r.o.Config(); c != nil {
			return c
		}
	}
	return &quota.Config{Models: map[string]quota.ModelBudget{}}
}

// definitions are the definitions in force of every tenant, of s's file
// and docs, less revoked keys: those are nobody's, so two tenants that
// both still list one (a file tenant and the PATCH that copied its keys,
// say) do not hold a credential twice.
func (s *snapshot) definitions(docs map[string]*override) map[string]quota.TenantConfig {
	out := map[string]quota.TenantConfig{}
	for _, id := range unionIDs(s.file.tenants, docs) {
		c, _, ok := definitionOf(s.file, docs[id], id)
		if !ok {
			continue
		}
		revoked := func(kid string) bool { return s.isRevoked(docs[id], kid) }
		if slices.ContainsFunc(c.APIKeys, func(h string) bool { return revoked(hashKeyID(h)) }) {
			c.APIKeys = slices.DeleteFunc(slices.Clone(c.APIKeys), func(h string) bool { return revoked(hashKeyID(h)) })
		}
		if slices.ContainsFunc(c.AccessKeys, func(ak quota.AccessKeyConfig) bool { return revoked(ak.ID) }) {
			c.AccessKeys = slices.DeleteFunc(slices.Clone(c.AccessKeys), func(ak quota.AccessKeyConfig) bool { return revoked(ak.ID) })
		}
		out[id] = c
	}
	return out
}

// revokedKeys reports the revoked keys that the admin definition of tenant
// id names after the write. A revoked key id is refused for good, in every
// tenant: issuing a new key is the way back. A key the definition in force
// already named is let through (a PATCH of a file tenant copies the file's
// keys, revoked ones included), and so are the file's own (a reset puts
// them back in force): those writes do not bring a key back, since a
// revoked key stays refused when the directory is built.
func revokedKeys(s *snapshot, id string, next *override) []*quota.ConfigError {
	if next.Deleted || next.Tenant == nil {
		return nil
	}
	after := next.Tenant.Config()
	before, _, _ := definitionOf(s.file, s.docs[id], id)
	var problems []*quota.ConfigError
	for i, h := range after.APIKeys {
		if kid := hashKeyID(h); s.isRevoked(next, kid) && !slices.Contains(before.APIKeys, h) {
			problems = append(problems, &quota.ConfigError{Path: "api_keys[" + strconv.Itoa(i) + "]", Msg: fmt.Sprintf("key %s was revoked, and a revoked key is never accepted again: issue a new one", kid)})
		}
	}
	for i, ak := range after.AccessKeys {
		if s.isRevoked(next, ak.ID) && !slices.ContainsFunc(before.AccessKeys, func(b quota.AccessKeyConfig) bool { return b.ID == ak.ID }) {
			problems = append(problems, &quota.ConfigError{Path: "access_keys[" + strconv.Itoa(i) + "].id", Msg: fmt.Sprintf("access key %s was revoked, and a revoked key is never accepted again: issue a new one", ak.ID)})
		}
	}
	return problems
}

// duplicateKeys reports the credentials of tenant id, after the write, that
// another tenant in force also holds. Revoked keys are nobody's: they are
// refused whoever lists them, and revokedKeys reports them.
func duplicateKeys(s *snapshot, id string, next *override) []*quota.ConfigError {
	def, _, ok := definitionOf(s.file, next, id)
	if !ok {
		return nil
	}
	others := map[string]string{} // key id -> tenant
	for _, oid := range unionIDs(s.file.tenants, s.docs) {
		if oid == id {
			continue
		}
		o := s.docs[oid]
		odef, _, ok := definitionOf(s.file, o, oid)
		if !ok {
			continue
		}
		if o == nil {
			o = &override{}
		}
		for _, kid := range keyIDs(odef, o) {
			if !s.isRevoked(o, kid) {
				others[kid] = oid
			}
		}
	}
	var problems []*quota.ConfigError
	for i, h := range def.APIKeys {
		if other, dup := others[hashKeyID(h)]; dup && !s.isRevoked(next, hashKeyID(h)) {
			problems = append(problems, &quota.ConfigError{Path: "api_keys[" + strconv.Itoa(i) + "]", Msg: fmt.Sprintf("key %s belongs to tenant %q already", hashKeyID(h), other)})
		}
	}
	for i, ak := range def.AccessKeys {
		if other, dup := others[ak.ID]; dup && !s.isRevoked(next, ak.ID) {
			problems = append(problems, &quota.ConfigError{Path: "access_keys[" + strconv.Itoa(i) + "].id", Msg: fmt.Sprintf("access key %s belongs to tenant %q already", ak.ID, other)})
		}
	}
	for _, h := range next.Issued.APIKeys {
		if other, dup := others[hashKeyID(h)]; dup {
			problems = append(problems, &quota.ConfigError{Msg: fmt.Sprintf("issued key %s belongs to tenant %q already", hashKeyID(h), other)})
		}
	}
	for _, k := range next.Issued.AccessKeys {
		if other, dup := others[k.ID]; dup {
			problems = append(problems, &quota.ConfigError{Msg: fmt.Sprintf("issued access key %s belongs to tenant %q already", k.ID, other)})
		}
	}
	return problems
}

func keyIDs(def quota.TenantConfig, o *override) []string {
	var ids []string
	for _, h := range def.APIKeys {
		ids = append(ids, hashKeyID(h))
	}
	for _, ak := range def.AccessKeys {
		ids = append(ids, ak.ID)
	}
	for _, h := range o.Issued.APIKeys {
		ids = append(ids, hashKeyID(h))
	}
	for _, k := range o.Issued.AccessKeys {
		ids = append(ids, k.ID)
	}
	return ids
}

// readOnly are the fields of the admin API's tenant view that are not part
// of a definition. They are dropped from PUT and PATCH bodies, so that a
// tenant read with GET can be edited and written back as it is.
var readOnly = []string{"id", "source", "keys"}

// dropReadOnly removes the read-only fields from a decoded JSON object; an
// id that differs from the URL's is an error rather than a rename.
func dropReadOnly(id string, m map[string]any) error {
	if v, ok := m["id"]; ok && v != nil && v != id {
		return invalidf("id", "the body names tenant %v, the URL %q; a tenant cannot be renamed", v, id)
	}
	for _, k := range readOnly {
		delete(m, k)
	}
	return nil
}

// stripReadOnly is dropReadOnly for a PUT body, which may be JSON or YAML:
// a JSON object with read-only fields is rewritten without them; anything
// else goes to quota.ParseTenant as it is, which reports its problems.
func stripReadOnly(id string, body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return body, nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || dec.More() {
		return body, nil
	}
	found := false
	for _, k := range readOnly {
		if _, ok := m[k]; ok {
			found = true
		}
	}
	if !found {
		return body, nil
	}
	if err := dropReadOnly(id, m); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// toJSONValue renders v as the generic JSON value a merge patch applies to.
func toJSONValue(v any) (any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out any
	err = dec.Decode(&out)
	return out, err
}
