package tenant

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// overrideStore keeps the overrides and their version, the set of revoked
// key ids and the closed marker. Redis shares them between replicas;
// memoryStore keeps them in process when there is no Redis, so that a
// single replica still has a working admin API.
type overrideStore interface {
	// version returns the version of the overrides; 0 when none was ever
	// written.
	version(ctx context.Context) (int64, error)
	// load returns everything the store holds, read together.
	load(ctx context.Context) (stored, error)
	// write sets the document of one tenant id (nil deletes it), adds
	// revoke to the revoked key ids, sets the closed marker and bumps the
	// version, all at once, if the version is still expect; else
	// errConflict.
	write(ctx context.Context, expect int64, id string, doc []byte, revoke []string) (int64, error)
	// markClosed sets the closed marker alone: a replica that finds
	// tenants in its budgets file records that the deployment has had
	// tenants, so that one started later with a file that lists none
	// stays closed too.
	markClosed(ctx context.Context) error
}

// stored is the content of an override store at one instant.
type stored struct {
	version int64
	docs    map[string][]byte // tenant id -> override document
	// revoked are the key ids ever revoked, of every tenant: a key id is
	// refused for good, whichever tenant lists it later.
	revoked []string
	// closed is set by the first write and never cleared: tenants were
	// defined here once, so a replica that finds none left must refuse
	// everyone rather than run open.
	closed bool
}

// errConflict is a write that lost a race: the version moved since the
// writer read it.
var errConflict = errors.New("tenant overrides changed concurrently")

// redisCmdable is the part of a go-redis client the store uses, so that a
// single client, a Ring, a Sentinel or a Cluster client all fit.
type redisCmdable interface {
	redis.Scripter
	Get(ctx context.Context, key string) *redis.StringCmd
	Set(ctx context.Context, key string, value any, expiration time.Duration) *redis.StatusCmd
	TxPipeline() redis.Pipeliner
}

//go:embed write.lua
var writeLua string

var writeScript = redis.NewScript(writeLua)

// redisStore keeps the overrides in one hash, the version in one string
// key, the revoked key ids in one set and the closed marker in one string
// key. All carry the hash tag {tenants}, so that the write script and the
// MULTI of load may touch them together on Redis Cluster. The names cannot
// collide with quota's keys under the same prefix: those are
// {<tag>}:<budget id>:<letter> or {<tag>}:leases|tickets|ticketinfo.
type redisStore struct {
	c                          redisCmdable
	hash, ver, revoked, closed string
}

func newRedisStore(c redisCmdable, prefix string) *redisStore {
	return &redisStore{
		c:       c,
		hash:    prefix + "{tenants}:overrides",
		ver:     prefix + "{tenants}:version",
		revoked: prefix + "{tenants}:revoked",
		closed:  prefix + "{tenants}:closed",
	}
}

func (s *redisStore) markClosed(ctx context.Context) error {
	return s.c.Set(ctx, s.closed, "1", 0).Err()
}

func (s *redisStore) version(ctx context.Context) (int64, error) {
	v, err := s.c.Get(ctx, s.ver).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, err
}

func (s *redisStore) load(ctx context.Context) (stored, error) {
	// MULTI/EXEC: everything as of one instant, so that a snapshot is never
	// labelled with a version it does not contain.
	pipe := s.c.TxPipeline()
	get := pipe.Get(ctx, s.ver)
	all := pipe.HGetAll(ctx, s.hash)
	revoked := pipe.SMembers(ctx, s.revoked)
	closed := pipe.Exists(ctx, s.closed)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return stored{}, err
	}
	v, err := get.Int64()
	if errors.Is(err, redis.Nil) {
		v, err = 0, nil
	}
	if err != nil {
		return stored{}, err
	}
	m, err := all.Result()
	if err != nil {
		return stored{}, err
	}
	out := stored{version: v, docs: make(map[string][]byte, len(m))}
	for k, d := range m {
		out.docs[k] = []byte(d)
	}
	if out.revoked, err = revoked.Result(); err != nil {
		return stored{}, err
	}
	n, err := closed.Result()
	if err != nil {
		return stored{}, err
	}
	out.closed = n > 0
	return out, nil
}

func (s *redisStore) write(ctx context.Context, expect int64, id string, doc []byte, revoke []string) (int64, error) {
	first := strconv.FormatInt(1+mrand.Int64N(1<<52-1), 10)
	args := append([]any{strconv.FormatInt(expect, 10), id, string(doc), first}, anySlice(revoke)...)
	res, err := writeScript.Run(ctx, s.c, []string{s.hash, s.ver, s.revoked, s.closed}, args...).Slice()
	if err != nil {
		return 0, err
	}
	if len(res) != 2 {
		return 0, fmt.Errorf("tenant: write script returned %v", res)
	}
	ok, _ := res[0].(int64)
	vs, _ := res[1].(string)
	v, err := strconv.ParseInt(strings.TrimSpace(vs), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("tenant: write script returned version %q", vs)
	}
	if ok != 1 {
		return v, errConflict
	}
	return v, nil
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// memoryStore is the overrides of a replica without Redis. They do not
// survive a restart: without Redis there is nowhere shared to keep them.
type memoryStore struct {
	mu      sync.Mutex
	ver     int64
	docs    map[string][]byte
	revoked []string
	closed  bool
}

func (s *memoryStore) version(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ver, nil
}

func (s *memoryStore) markClosed(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *memoryStore) load(context.Context) (stored, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return stored{version: s.ver, docs: maps.Clone(s.docs), revoked: slices.Clone(s.revoked), closed: s.closed}, nil
}

func (s *memoryStore) write(_ context.Context, expect int64, id string, doc []byte, revoke []string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ver != expect {
		return s.ver, errConflict
	}
	if s.docs == nil {
		s.docs = map[string][]byte{}
	}
	if doc == nil {
		delete(s.docs, id)
	} else {
		s.docs[id] = doc
	}
	for _, k := range revoke {
		if !slices.Contains(s.revoked, k) {
			s.revoked = append(s.revoked, k)
		}
	}
	s.closed = true
	s.ver++
	return s.ver, nil
}
