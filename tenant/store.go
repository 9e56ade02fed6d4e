package tenant

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// overrideStore keeps the overrides and their version. Redis shares them
// between replicas; memoryStore keeps them in process when there is no
// Redis, so that a single replica still has a working admin API.
type overrideStore interface {
	// version returns the version of the overrides; 0 when none was ever
	// written.
	version(ctx context.Context) (int64, error)
	// load returns the overrides and their version, read together.
	load(ctx context.Context) (int64, map[string][]byte, error)
	// write sets the document of one tenant id (nil deletes it) and bumps
	// the version, if the version is still expect; else errConflict.
	write(ctx context.Context, expect int64, id string, doc []byte) (int64, error)
}

// errConflict is a write that lost a race: the version moved since the
// writer read it.
var errConflict = errors.New("tenant overrides changed concurrently")

// redisCmdable is the part of a go-redis client the store uses, so that a
// single client, a Ring, a Sentinel or a Cluster client all fit.
type redisCmdable interface {
	redis.Scripter
	Get(ctx context.Context, key string) *redis.StringCmd
	TxPipeline() redis.Pipeliner
}

//go:embed write.lua
var writeLua string

var writeScript = redis.NewScript(writeLua)

// redisStore keeps the overrides in one hash and the version in one string
// key. Both carry the hash tag {tenants}, so that the write script and the
// MULTI of load may touch them together on Redis Cluster. The names cannot
// collide with quota's keys under the same prefix: those are
// {<tag>}:<budget id>:<letter> or {<tag>}:leases|tickets|ticketinfo.
type redisStore struct {
	c         redisCmdable
	hash, ver string
}

func newRedisStore(c redisCmdable, prefix string) *redisStore {
	return &redisStore{c: c, hash: prefix + "{tenants}:overrides", ver: prefix + "{tenants}:version"}
}

func (s *redisStore) version(ctx context.Context) (int64, error) {
	v, err := s.c.Get(ctx, s.ver).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, err
}

func (s *redisStore) load(ctx context.Context) (int64, map[string][]byte, error) {
	// MULTI/EXEC: the hash and the version as of one instant, so that a
	// snapshot is never labelled with a version it does not contain.
	pipe := s.c.TxPipeline()
	get := pipe.Get(ctx, s.ver)
	all := pipe.HGetAll(ctx, s.hash)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, nil, err
	}
	v, err := get.Int64()
	if errors.Is(err, redis.Nil) {
		v, err = 0, nil
	}
	if err != nil {
		return 0, nil, err
	}
	m, err := all.Result()
	if err != nil {
		return 0, nil, err
	}
	docs := make(map[string][]byte, len(m))
	for k, d := range m {
		docs[k] = []byte(d)
	}
	return v, docs, nil
}

func (s *redisStore) write(ctx context.Context, expect int64, id string, doc []byte) (int64, error) {
	first := strconv.FormatInt(1+mrand.Int64N(1<<52-1), 10)
	res, err := writeScript.Run(ctx, s.c, []string{s.hash, s.ver}, strconv.FormatInt(expect, 10), id, string(doc), first).Slice()
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

// memoryStore is the overrides of a replica without Redis. They do not
// survive a restart: without Redis there is nowhere shared to keep them.
type memoryStore struct {
	mu   sync.Mutex
	ver  int64
	docs map[string][]byte
}

func (s *memoryStore) version(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ver, nil
}

func (s *memoryStore) load(context.Context) (int64, map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ver, maps.Clone(s.docs), nil
}

func (s *memoryStore) write(_ context.Context, expect int64, id string, doc []byte) (int64, error) {
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
	s.ver++
	return s.ver, nil
}
