package tenant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/quota"
)

// Options configure a Registry. The zero value is usable: in-process
// overrides, no file tenants, no access keys issued.
type Options struct {
	// Client is the Redis that holds the overrides, shared by every
	// replica. Nil keeps them in process: a single replica still has a
	// working admin API, but its changes do not survive a restart.
	Client redis.UniversalClient
	// KeyPrefix starts the Redis keys; default quota.DefaultKeyPrefix. Use
	// the quota store's prefix, so that one deployment's keys sit together.
	KeyPrefix string
	// SecretsKey seals the secrets of access keys issued through the admin
	// API (AES-256-GCM under a key derived with HKDF-SHA256). At least 16
	// bytes; every replica needs the same one. Empty: issuing access keys
	// is refused, and sealed secrets in Redis cannot be read. Changing it
	// invalidates every issued access key.
	SecretsKey []byte
	// Config returns the budgets file in force, against which admin writes
	// are checked (quota.CheckTenants: guarantees must fit their pool).
	// Nil: checked against an empty config.
	Config func() *quota.Config
	// Logger receives load failures and refused credentials; nil means
	// slog.Default(). Nothing secret is ever logged.
	Logger *slog.Logger
	// PollInterval is how often Run looks for changes made on other
	// replicas; default 500ms, so that a change is seen everywhere well
	// within 2s even by a replica serving no request.
	PollInterval time.Duration
	// CheckTimeout bounds the version check Current makes on every request;
	// default 100ms. When it fails, the request is served from the last
	// directory loaded rather than held up, and so are the requests that
	// follow, without a check, until PollInterval has passed.
	CheckTimeout time.Duration
	// Timeout bounds loads and writes; default 1s.
	Timeout time.Duration
	// RequireAuth forbids open mode: with no tenant configured, every
	// request is refused instead of served as the DefaultID tenant. Without
	// it, a registry with no tenant anywhere (and no closed marker in the
	// override store) is open; see the package doc.
	RequireAuth bool
	// ErrorLogInterval is how often a persisting Redis failure is logged;
	// default 30s. Every request notices the failure: logging each would
	// flood the log.
	ErrorLogInterval time.Duration
}

// Defaults of Options.
const (
	DefaultPollInterval     = 500 * time.Millisecond
	DefaultCheckTimeout     = 100 * time.Millisecond
	DefaultTimeout          = time.Second
	DefaultErrorLogInterval = 30 * time.Second
)

// Registry is the tenants of one gateway replica: the budgets file's
// (SetConfig) overlaid with the admin API's overrides (see the package doc
// for precedence). It is a Source, and the admin API writes through it.
//
// With Redis, every request checks the overrides' version (one GET) and
// reloads when it changed, so that a revoked key fails on the very next
// request on any replica; Run polls as well, so that an idle replica is
// never more than PollInterval behind. While Redis fails, requests are
// served the last directory without a check, and one check per
// PollInterval looks for Redis back.
//
// A registry is open (Directory.Open) only if nothing was ever configured;
// see the package doc.
type Registry struct {
	o      Options
	st     overrideStore
	shared bool // st is Redis: other replicas write too
	seal   *sealer
	logger *slog.Logger

	cur atomic.Pointer[snapshot]
	// sem serialises loads and rebuilds, so that concurrent requests that
	// all notice one change reload once (the first does the work; the
	// others find the version current when they get their turn). It is a
	// channel rather than a mutex so that a waiting request can give up
	// with its context.
	sem chan struct{}

	file atomic.Pointer[fileSet]

	// closed is set once a tenant was ever seen (in the file, in the
	// overrides, or the store's closed marker), or by RequireAuth, and is
	// never cleared: from then on the directory is never open.
	closed atomic.Bool
	// emptyLogged: the error saying no tenant is left was logged for the
	// current stretch without tenants. r.sem is held to use it.
	emptyLogged bool

	errMu      sync.Mutex
	lastErrLog time.Time
	failing    atomic.Bool
	// nextCheck (UnixNano) is when, while Redis is failing, Current may
	// next check the version: until then it serves the last directory
	// without a round trip, so that an unreachable Redis costs requests
	// nothing rather than CheckTimeout each.
	nextCheck atomic.Int64
}

// snapshot is one loaded state: the directory and what it was built from.
type snapshot struct {
	dir     *Directory
	version int64
	loaded  bool // the overrides were read at least once
	docs    map[string]*override
	revoked map[string]bool // every key id ever revoked, of any tenant
	file    *fileSet
}

// isRevoked reports whether a key id was revoked, in the store or by the
// override about to be written.
func (s *snapshot) isRevoked(next *override, keyID string) bool {
	return s.revoked[keyID] || (next != nil && next.revoked(keyID))
}

// fileSet is the budgets file's tenants with their secrets resolved.
type fileSet struct {
	tenants map[string]quota.TenantConfig
	secrets map[string]map[string]string
}

// NewRegistry returns a registry with no file tenants. Nothing is read from
// Redis until the first Current, Load or Run. The error is a bad SecretsKey.
func NewRegistry(o Options) (*Registry, error) {
	if o.KeyPrefix == "" {
		o.KeyPrefix = quota.DefaultKeyPrefix
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = DefaultCheckTimeout
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.ErrorLogInterval <= 0 {
		o.ErrorLogInterval = DefaultErrorLogInterval
	}
	r := &Registry{o: o, logger: o.Logger, sem: make(chan struct{}, 1)}
	r.closed.Store(o.RequireAuth)
	if r.logger == nil {
		r.logger = slog.Default()
	}
	if len(o.SecretsKey) > 0 {
		s, err := newSealer(o.SecretsKey)
		if err != nil {
			return nil, err
		}
		r.seal = s
	}
	if o.Client != nil {
		r.st, r.shared = newRedisStore(o.Client, o.KeyPrefix), true
	} else {
		r.st = &memoryStore{}
	}
	r.file.Store(&fileSet{})
	// Until the overrides are read, only the file is known. With Redis,
	// that first directory is never open: admin-defined tenants may exist,
	// and serving everyone unauthenticated until Redis answers would be
	// the wrong way to fail. Not said to be empty yet either: the file is
	// set next.
	s := &snapshot{file: &fileSet{}, loaded: !r.shared}
	r.cur.Store(s.makeDir(r))
	return r, nil
}

// SetConfig puts a budgets file's tenants in force, on start-up and on
// every reload of the file (quota.Watcher.Accept). Secrets are resolved
// now; if any is unresolvable, the previous tenants stay in force and the
// error names each tenant and key id.
//
// The tenants in force (the file's and the overrides) are then checked
// against c with quota.CheckTenants, and each conflict is logged as a
// warning: for instance guarantees of admin-defined tenants that no longer
// fit a pool whose TPM the file lowered. Such a conflict does not refuse
// the file, which cannot fix an override; the admin API must, and it
// accepts writes that leave a conflict as it is. Keys the file lists that
// were revoked are logged too: they stay refused.
func (r *Registry) SetConfig(c *quota.Config) error {
	return r.setFile(c.Tenants, c)
}

// SetFile is SetConfig for a caller that has only the tenants: conflicts
// are checked against Options.Config.
func (r *Registry) SetFile(tenants map[string]quota.TenantConfig) error {
	return r.setFile(tenants, nil)
}

func (r *Registry) setFile(tenants map[string]quota.TenantConfig, c *quota.Config) error {
	secrets, err := resolveSecrets(tenants)
	if err != nil {
		return fmt.Errorf("tenants of the budgets file: %w", err)
	}
	f := &fileSet{tenants: tenants, secrets: secrets}
	r.sem <- struct{}{}
	defer func() { <-r.sem }()
	r.file.Store(f)
	cur := r.cur.Load()
	s := r.install(&snapshot{version: cur.version, loaded: cur.loaded, docs: cur.docs, revoked: cur.revoked, file: f}, false)
	if c == nil {
		c = r.config()
	}
	r.warnConflicts(s, c)
	return nil
}

// warnConflicts logs what, in the tenants in force, conflicts with the
// budgets file c, beyond the file's own problems (which quota.ParseConfig
// refuses before the file gets here).
func (r *Registry) warnConflicts(s *snapshot, c *quota.Config) {
	own := map[string]bool{}
	for _, p := range invalidOrNil(quota.CheckTenants(c, s.file.tenants)) {
		own[p.Error()] = true
	}
	var conflicts []string
	if len(s.docs) > 0 {
		for _, p := range invalidOrNil(quota.CheckTenants(c, s.definitions(s.docs))) {
			if !own[p.Error()] {
				conflicts = append(conflicts, p.Error())
			}
		}
	}
	if len(conflicts) > 0 {
		r.logger.Warn("tenant overrides conflict with the budgets file; the file is in force, fix the overrides through the admin API", "conflicts", conflicts)
	}
	for _, id := range sortedKeys(s.file.tenants) {
		var revoked []string
		for _, kid := range keyIDs(s.file.tenants[id], &override{}) {
			if s.revoked[kid] {
				revoked = append(revoked, kid)
			}
		}
		if len(revoked) > 0 {
			r.logger.Warn("the budgets file lists revoked keys; they stay refused (remove them from the file)", "tenant", id, "key_ids", revoked)
		}
	}
}

// Loaded reports whether the overrides were read at least once. Before
// that, only the file's tenants are known (and no key revoked at run time
// is): a readiness check should wait for it.
func (r *Registry) Loaded() bool { return r.cur.Load().loaded }

// Load reads the overrides now. The gateway calls it at start-up, so that
// it can tell (and report) whether Redis answered.
func (r *Registry) Load(ctx context.Context) error {
	if err := r.acquire(ctx); err != nil {
		return err
	}
	defer r.release()
	_, err := r.reloadLocked(ctx)
	return err
}

// Current returns the directory in force. With Redis, it first reads the
// overrides' version (one GET, bounded by CheckTimeout) and reloads them if
// they changed, so that a change made on any replica, such as a revoked
// key, applies from the very next request. If Redis fails, the last
// directory loaded is served, the failure logged at most once per
// ErrorLogInterval, and the version checked again at most once per
// PollInterval until Redis answers: the requests in between are served the
// last directory at once rather than each waiting CheckTimeout.
func (r *Registry) Current(ctx context.Context) *Directory {
	s := r.cur.Load()
	if !r.shared {
		return s.dir // in process: writes rebuild the directory themselves
	}
	if r.failing.Load() && !r.claimCheck() {
		return s.dir
	}
	cctx, cancel := context.WithTimeout(ctx, r.o.CheckTimeout)
	v, err := r.st.version(cctx)
	cancel()
	if err != nil {
		r.failed(ctx, err)
		return s.dir
	}
	if s.loaded && v == s.version {
		r.recovered()
		return s.dir
	}
	return r.refresh(ctx, v)
}

// claimCheck reports whether this caller may check Redis while it is
// failing: the first caller once PollInterval has passed since the last
// check; one caller only, however many arrive together.
func (r *Registry) claimCheck() bool {
	now := time.Now().UnixNano()
	next := r.nextCheck.Load()
	return now >= next && r.nextCheck.CompareAndSwap(next, now+int64(r.o.PollInterval))
}

var _ Source = (*Registry)(nil)

// refresh reloads unless someone else already loaded version seen while
// this caller waited for its turn. Versions are compared for equality, not
// order: if Redis lost the version key, the version goes back to zero, and
// that too is a change.
func (r *Registry) refresh(ctx context.Context, seen int64) *Directory {
	if err := r.acquire(ctx); err != nil {
		return r.cur.Load().dir
	}
	defer r.release()
	if s := r.cur.Load(); s.loaded && s.version == seen {
		return s.dir
	}
	s, err := r.reloadLocked(ctx)
	if err != nil {
		return r.cur.Load().dir
	}
	return s.dir
}

// Run watches for changes made on other replicas every PollInterval, until
// ctx ends. Current alone would notice them on the next request; polling
// keeps an idle replica current too, and retries a failed first load (at
// most once per PollInterval, with the requests' checks, while Redis
// fails).
func (r *Registry) Run(ctx context.Context) {
	if !r.shared {
		return
	}
	t := time.NewTicker(r.o.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = r.Current(ctx)
		}
	}
}

func (r *Registry) acquire(ctx context.Context) error {
	select {
	case r.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Registry) release() { <-r.sem }

// reloadLocked reads the overrides and rebuilds the directory. r.sem is
// held.
func (r *Registry) reloadLocked(ctx context.Context) (*snapshot, error) {
	cctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	st, err := r.st.load(cctx)
	cancel()
	if err != nil {
		r.failed(ctx, err)
		return nil, err
	}
	r.recovered()
	if !st.closed && len(r.file.Load().tenants) > 0 {
		// Tenants from the file close the deployment for good, as an
		// admin write does: a replica started later with a file that
		// lists none must not run open. Best effort: the next load
		// tries again.
		cctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
		if err := r.st.markClosed(cctx); err != nil {
			r.logger.Warn("could not record that this deployment has tenants", "error", err)
		} else {
			st.closed = true
		}
		cancel()
	}
	docs := make(map[string]*override, len(st.docs))
	// Revocations are never undone, so the set only grows: one this
	// replica has seen stays refused even if Redis loses its data.
	revoked := maps.Clone(r.cur.Load().revoked)
	if revoked == nil {
		revoked = make(map[string]bool, len(st.revoked))
	}
	for _, k := range st.revoked {
		revoked[k] = true
	}
	for id, data := range st.docs {
		o, err := decodeOverride(data)
		if err != nil {
			// Hide the tenant rather than fall back to the file: the
			// document may have been a tombstone or held revocations.
			r.logger.Error("tenant override unreadable; the tenant is refused until it is rewritten or reset", "tenant", id, "error", err)
			o = &override{Deleted: true}
		}
		// Revocations recorded only in a tenant's document (by a replica
		// older than the revoked set) count everywhere too.
		for _, k := range o.Revoked {
			revoked[k] = true
		}
		docs[id] = o
	}
	s := r.install(&snapshot{version: st.version, loaded: true, docs: docs, revoked: revoked, file: r.file.Load()}, st.closed)
	return s, nil
}

// install builds s's directory and puts it in force. A tenant seen
// anywhere, or the store's closed marker, closes the registry for good:
// open mode is only ever the state of a registry that has never seen a
// tenant (and of no replica that ever had one, as far as the marker
// survives). r.sem is held.
func (r *Registry) install(s *snapshot, marker bool) *snapshot {
	if marker || len(s.file.tenants) > 0 || len(s.docs) > 0 {
		r.closed.Store(true)
	}
	s.makeDir(r)
	r.cur.Store(s)
	switch empty := s.loaded && !s.dir.open && len(s.dir.list) == 0; {
	case empty && !r.emptyLogged:
		r.emptyLogged = true
		r.logger.Error("no tenants left: every request is refused until one is defined (in the budgets file or through the admin API)", "require_auth", r.o.RequireAuth)
	case !empty:
		r.emptyLogged = false
	}
	return s
}

// makeDir makes s's directory from its file and overrides, and returns s.
func (s *snapshot) makeDir(r *Registry) *snapshot {
	members := make([]member, 0, len(s.file.tenants)+len(s.docs))
	for _, id := range unionIDs(s.file.tenants, s.docs) {
		if m, ok := r.member(s, s.docs[id], id); ok {
			members = append(members, m)
		}
	}
	s.dir = build(members, r.logger)
	s.dir.open = s.loaded && !r.closed.Load()
	s.dir.loaded = s.loaded
	return s
}

// definitionOf returns the definition in force for id and its source.
func definitionOf(f *fileSet, o *override, id string) (quota.TenantConfig, string, bool) {
	if o != nil && o.Deleted {
		return quota.TenantConfig{}, "", false
	}
	if o != nil && o.Tenant != nil {
		return o.Tenant.Config(), SourceAdmin, true
	}
	if c, ok := f.tenants[id]; ok {
		return c, SourceFile, true
	}
	return quota.TenantConfig{}, "", false
}

// member combines a tenant's definition with its override's keys, less
// every revoked key (sn's, and o's own).
func (r *Registry) member(sn *snapshot, o *override, id string) (member, bool) {
	f := sn.file
	def, source, ok := definitionOf(f, o, id)
	if !ok {
		return member{}, false
	}
	if o == nil {
		o = &override{}
	}
	m := member{id: id, source: source, def: def, cfg: def, secrets: map[string]string{}, origins: map[string]string{}}
	m.cfg.APIKeys, m.cfg.AccessKeys = nil, nil
	addAPIKey := func(h, origin string) {
		kid := hashKeyID(h)
		if sn.isRevoked(o, kid) || slices.Contains(m.cfg.APIKeys, h) {
			return
		}
		m.cfg.APIKeys = append(m.cfg.APIKeys, h)
		m.origins[kid] = origin
	}
	addAccessKey := func(ak quota.AccessKeyConfig, secret, origin string) {
		if sn.isRevoked(o, ak.ID) {
			return
		}
		if _, dup := m.secrets[ak.ID]; dup {
			return
		}
		m.cfg.AccessKeys = append(m.cfg.AccessKeys, ak)
		m.secrets[ak.ID] = secret
		m.origins[ak.ID] = origin
	}
	for _, h := range def.APIKeys {
		addAPIKey(h, source)
	}
	for _, h := range o.Issued.APIKeys {
		addAPIKey(h, OriginIssued)
	}
	for _, ak := range def.AccessKeys {
		var secret string
		if source == SourceFile {
			s, ok := f.secrets[id][ak.ID]
			if !ok {
				continue
			}
			secret = s
		} else {
			// Resolved on every load: each replica reads its own
			// environment and files. The writing replica checked that it
			// resolves there.
			s, err := ResolveSecret(ak)
			if err != nil {
				if !sn.isRevoked(o, ak.ID) {
					r.logger.Error("tenant access key unusable on this replica", "tenant", id, "key_id", ak.ID, "error", err)
				}
				continue
			}
			secret = s
		}
		addAccessKey(ak, secret, source)
	}
	for _, sk := range o.Issued.AccessKeys {
		if sn.isRevoked(o, sk.ID) {
			continue
		}
		if r.seal == nil {
			r.logger.Error("issued access key unusable: no secrets key configured", "tenant", id, "key_id", sk.ID)
			continue
		}
		secret, err := r.seal.open(id, sk.ID, sk.Sealed)
		if err != nil {
			r.logger.Error("issued access key unusable", "tenant", id, "key_id", sk.ID, "error", err)
			continue
		}
		addAccessKey(quota.AccessKeyConfig{ID: sk.ID}, secret, OriginIssued)
	}
	return m, true
}

func unionIDs(file map[string]quota.TenantConfig, docs map[string]*override) []string {
	ids := make([]string, 0, len(file)+len(docs))
	for id := range file {
		ids = append(ids, id)
	}
	for id := range docs {
		if _, ok := file[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// failed logs a Redis failure, at most once per ErrorLogInterval. A
// request that gave up (its context ended) is not a Redis failure.
func (r *Registry) failed(ctx context.Context, err error) {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return
	}
	// The gate first, so that whoever sees failing sees it too.
	r.nextCheck.Store(time.Now().Add(r.o.PollInterval).UnixNano())
	r.failing.Store(true)
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if now := time.Now(); now.Sub(r.lastErrLog) >= r.o.ErrorLogInterval {
		r.lastErrLog = now
		s := r.cur.Load()
		r.logger.Warn("tenant overrides unavailable; serving the tenants last loaded", "error", err, "loaded", s.loaded, "version", s.version)
	}
}

func (r *Registry) recovered() {
	if r.failing.CompareAndSwap(true, false) {
		r.errMu.Lock()
		r.lastErrLog = time.Time{}
		r.errMu.Unlock()
		r.logger.Info("tenant overrides reachable again")
	}
}
