package quota

// The stores use their own Lua scripts rather than go-redis/redis_rate.
// redis_rate is the right tool for a single-dimension limit that is charged
// once and never corrected, but a budget here is a reservation: it is
// charged up front and settled later with a refund or an overrun, which
// redis_rate cannot express. Its GCRA with burst = limit would also admit up
// to twice the limit in the first minute (a full burst, then the refill),
// which breaks the promise that no window ever sees more than the limit. And
// it checks one key per call, where an admission must check and charge
// every dimension of every budget all-or-none in one round trip.
//
// # The window
//
// A window budget (TPM, RPM) of window W is split into N buckets of width
// w = W/N. A charge at time t goes to bucket floor(t/w); a check at time t'
// in bucket c sums buckets c-N..c, N+1 of them, and admits only if that sum
// plus the request fits the limit.
//
// Claim: in any interval [s, s+W] the tokens admitted by one budget sum to
// at most its limit, across replicas and under any interleaving, as long as
// no settle charges more than was reserved (an overrun is a fact that
// already happened upstream; it is charged, never hidden).
//
// Proof: admissions are serialised (one Lua script at a time in Redis, a
// mutex in memory) and read one clock (Redis TIME, or Options.Now), so they
// have an order in which time does not decrease. Let k be the last
// admission with time in [s, s+W], at time t_k in bucket c. Every earlier
// admission i in the interval has t_i >= s >= t_k - W, so
// floor(t_i/w) >= floor(t_k/w - N) = c - N: it was charged to one of the
// buckets k's check summed. Its charge there is still its reservation, or
// its actual usage if it was already settled (settle adjusts the bucket
// that was charged while that bucket is in the window), and either is at
// least what it finally costs. Clamping a bucket at zero only raises the
// sum. (Settle may also move a charge to the later bucket of when the
// request was sent, Lease.SentAt: a later bucket is summed by every check
// the earlier one was, and by more, so the argument stands.) So when k was checked, sum_{i<k} cost_i <= bucket sum <= limit -
// reserved_k, and with cost_k <= reserved_k the interval's total is at most
// the limit. Settles after k only lower costs (refunds) or go to buckets
// charged later.
//
// Cost: a check covers up to W+w of history instead of W, so at most one
// bucket of capacity is lost: under saturation admissions reach at least
// N/(N+1) of the limit per window (98% with the default 60 buckets). A
// token bucket or a fixed window would waste nothing but admit up to twice
// the limit in some window.
//
// # Fair waiting
//
// A denied request gets a ticket (Decision.Ticket) and waits in the queue
// of each budget that was short, ordered by its first arrival, which a
// retry with the ticket keeps. The oldest live ticket of a budget is its
// head, and every other request must leave room for the head's reservation
// (its tokens, one request, one slot): one that would fit alone but not
// beside the head is denied with dimension Queue and a short poll. So small
// requests may still use what a waiting large one leaves (a budget is not
// stalled by a waiter that needs another budget), but never what it needs,
// and the large one gets in as soon as its room has freed. Since waiters
// are ordered by arrival across all queues, the oldest waiter anywhere is
// held back by no queue, and every waiter becomes the oldest in turn: no
// starvation, no deadlock. A ticket lives until TicketTTL after the retry
// time it was given, and is dropped on admission or Cancel. A day denial
// or a reservation that can never fit takes no ticket: waiting would not
// help.
//
// # Settling once
//
// Admit records each lease in the tag's :leases set; Settle adjusts the
// counters only if it is the one that removes the lease from it, so a
// second Settle changes nothing. The concurrency slot cannot serve as that
// marker: it may have expired (a lease not renewed in time) while the
// tokens still have to be settled. An unsettled lease is remembered for two
// days, as long as a day counter lives; memory holds only leases in flight
// or lost with a dead replica.

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable reports that a store could not decide: Redis did not
// answer within Options.Timeout, refused the connection or answered with an
// error. The failover wrapper and the gateway test for it with errors.Is to
// apply the failure policy. A caller that gave up itself (its context ended
// first) gets its context's error instead, so that client disconnects do
// not look like a Redis outage.
var ErrUnavailable = errors.New("budget store unavailable")

var (
	//go:embed window.lua
	windowLua string
	//go:embed admit.lua
	admitLua string
	//go:embed settle.lua
	settleLua string
	//go:embed renew.lua
	renewLua string
	//go:embed cancel.lua
	cancelLua string
	//go:embed usage.lua
	usageLua string
	//go:embed cooldown.lua
	cooldownLua string

	// redis.Script runs EVALSHA and falls back to EVAL (which also caches
	// the script) when the server answers NOSCRIPT: one round trip in the
	// steady state, two once per node after a restart or SCRIPT FLUSH.
	admitScript    = redis.NewScript(windowLua + admitLua)
	settleScript   = redis.NewScript(windowLua + settleLua)
	renewScript    = redis.NewScript(renewLua)
	cancelScript   = redis.NewScript(cancelLua)
	usageScript    = redis.NewScript(usageLua)
	cooldownScript = redis.NewScript(cooldownLua)
)

// rediser is the part of a go-redis client the store uses: scripts only.
// Single-node, Sentinel (failover), Ring and Cluster clients all satisfy
// it, as does any redis.UniversalClient.
type rediser interface {
	Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd
	EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd
	EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd
	EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd
	ScriptExists(ctx context.Context, hashes ...string) *redis.BoolSliceCmd
	ScriptLoad(ctx context.Context, script string) *redis.StringCmd
	// Pipeline batches the reads of a route's targets into one round
	// trip (split per node by a Cluster client).
	Pipeline() redis.Pipeliner
}

// RedisStore keeps budget counters in Redis, so that every gateway replica
// enforces one budget. Each Admit and each Settle is one Lua script call:
// one round trip. Time is the Redis server's TIME, never a replica's clock.
// The scripts name all their keys with the request's hash tag, so they run
// unchanged on Redis Cluster. Clients from NewClient honour the per-call
// Timeout; a client built elsewhere should set ContextTimeoutEnabled. It
// needs Redis 4.0 or later (tested with 7.0).
type RedisStore struct {
	client rediser
	set    storeSettings
	keys   keyCache
	// Script arguments that are the same on every call, boxed once.
	width, buckets, leaseTTL, ticketTTL, poll, retention any

	// orphans are leases whose admission may have run in Redis although
	// its reply never came (a timeout): nobody will settle them, so they
	// are released (tokens refunded, slots freed) once Redis answers again.
	mu      sync.Mutex
	orphans []Lease
}

// maxOrphans bounds the release queue; beyond it, leases expire by TTL.
const maxOrphans = 4096

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a store that keeps its counters in Redis through
// client, which may be any redis.UniversalClient (e.g. from NewClient).
func NewRedisStore(client rediser, opts Options) *RedisStore {
	set := opts.settings()
	return &RedisStore{
		client: client, set: set, keys: keyCache{prefix: set.prefix},
		width: set.width, buckets: set.buckets, leaseTTL: set.leaseTTL,
		ticketTTL: set.ticketTTL, poll: set.poll, retention: int64(leaseRetention),
	}
}

// Admit checks every budget of r and charges all of them, or none, in one
// script call.
func (s *RedisStore) Admit(ctx context.Context, r Request) (Decision, error) {
	if err := r.check(); err != nil {
		return Decision{}, err
	}
	n := 0
	for _, b := range r.Budgets {
		if b.counted() {
			n++
		}
	}
	if n == 0 {
		return unlimitedDecision(r, StoreRedis), nil
	}
	idx := make([]int, 0, n) // script budget i -> r.Budgets index
	keys := make([]string, 3, 3+keysPerBudget*n)
	args := make([]any, 11, 11+6*n)
	var tag string
	shared := 0
	for i, b := range r.Budgets {
		if !b.counted() {
			continue
		}
		tag = b.Tag
		idx = append(idx, i)
		if r.Shares != nil && r.Shares.Budget == i {
			shared = len(idx)
		}
		bk := s.keys.budget(b.Tag, b.ID)
		keys = append(keys, bk[:]...)
		args = append(args, b.ID, b.Limits.TPM, b.Limits.RPM, b.Limits.Concurrency, b.Limits.TokensPerDay, oneIf(b.Track))
	}
	if shared > 0 {
		keys = append(keys, s.keys.tag(tag).seen)
		for _, h := range r.Shares.Holders {
			hk := s.keys.budget(tag, h.ID)
			keys = append(keys, hk[keyWindow], hk[keyConc])
			args = append(args, h.ID, h.TPM)
		}
	}
	args[9], args[10] = n, shared
	tk := s.keys.tag(tag)
	keys[0], keys[1], keys[2] = tk.leases, tk.tickets, tk.ticketInfo
	id := newID()
	args[0], args[1], args[2] = r.Tokens, id, r.Ticket
	args[3], args[4], args[5] = s.width, s.buckets, s.leaseTTL
	if r.LeaseTTL > 0 {
		args[5] = s.set.leaseTTLFor(r.LeaseTTL)
	}
	args[6], args[7], args[8] = s.ticketTTL, s.poll, s.retention

	cctx, cancel := context.WithTimeout(ctx, s.set.timeout)
	defer cancel()
	res, err := admitScript.Run(cctx, s.client, keys, args...).Slice()
	if err != nil {
		err = s.fail(ctx, "admit", err)
		if errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
			// The script may have run: keep the lease id for release. At
			// 0 makes settle read the admit time Redis recorded.
			s.orphan(Lease{ID: id, Tag: tag, Budgets: r.Budgets, Tokens: r.Tokens, Store: StoreRedis})
		}
		return Decision{}, err
	}
	v, err := parseAdmit(res)
	if err != nil {
		return Decision{}, err
	}
	d := Decision{
		Allowed:           v.allowed,
		RetryAfter:        msDuration(v.retry),
		RemainingTokens:   v.remTokens,
		RemainingRequests: v.remRequests,
		ResetTokens:       msDuration(v.reset),
		Ticket:            v.ticket,
	}
	if v.allowed {
		d.Lease = Lease{ID: id, Tag: tag, Budgets: r.Budgets, Tokens: r.Tokens, At: v.now, Store: StoreRedis}
		return d, nil
	}
	if v.budget < 1 || v.budget > len(idx) {
		return Decision{}, fmt.Errorf("quota: redis admit: script named budget %d of %d", v.budget, len(idx))
	}
	d.Scope = r.Budgets[idx[v.budget-1]].Scope
	d.Dimension = Dimension(v.dim)
	return d, nil
}

// admitResult is admit.lua's reply.
type admitResult struct {
	allowed                bool
	budget                 int
	dim                    string
	retry                  int64
	remTokens, remRequests int64
	reset, now             int64
	ticket                 string
}

func parseAdmit(res []any) (admitResult, error) {
	var v admitResult
	if len(res) != 9 {
		return v, fmt.Errorf("quota: redis admit: reply has %d values, want 9", len(res))
	}
	var n [9]int64
	for _, i := range [...]int{0, 1, 3, 4, 5, 6, 7} {
		x, ok := res[i].(int64)
		if !ok {
			return v, fmt.Errorf("quota: redis admit: reply value %d is %T, want an integer", i, res[i])
		}
		n[i] = x
	}
	var ok1, ok2 bool
	v.dim, ok1 = res[2].(string)
	v.ticket, ok2 = res[8].(string)
	if !ok1 || !ok2 {
		return v, fmt.Errorf("quota: redis admit: reply values 2 and 8 are %T and %T, want strings", res[2], res[8])
	}
	v.allowed, v.budget = n[0] == 1, int(n[1])
	v.retry, v.remTokens, v.remRequests, v.reset, v.now = n[3], n[4], n[5], n[6], n[7]
	return v, nil
}

// Settle refunds or charges the difference between actualTokens and the
// reservation and releases the concurrency slots, in one script call. A
// second Settle of the same lease changes nothing.
func (s *RedisStore) Settle(ctx context.Context, l Lease, actualTokens int64) error {
	if actualTokens < 0 {
		return fmt.Errorf("quota: negative actual tokens %d", actualTokens)
	}
	n := 0
	for _, b := range l.Budgets {
		if b.counted() {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	keys := make([]string, 1, 1+3*n)
	args := make([]any, 9, 9+3*n)
	for _, b := range l.Budgets {
		if !b.counted() {
			continue
		}
		bk := s.keys.budget(l.Tag, b.ID)
		keys = append(keys, bk[keyWindow], bk[keyDay], bk[keyConc])
		args = append(args, oneIf(b.countsWindow()), oneIf(b.countsDay()), oneIf(b.countsConc()))
	}
	keys[0] = s.keys.tag(l.Tag).leases
	args[0], args[1], args[2], args[3], args[4], args[5] = l.ID, l.At, actualTokens-l.Tokens, s.width, s.buckets, max(l.Linger.Milliseconds(), 0)
	args[6], args[7], args[8] = oneIf(l.Void), max(l.SentAt, 0), l.Tokens

	cctx, cancel := context.WithTimeout(ctx, s.set.timeout)
	defer cancel()
	if err := settleScript.Run(cctx, s.client, keys, args...).Err(); err != nil {
		err = s.fail(ctx, "settle", err)
		if l.Void && errors.Is(err, ErrUnavailable) {
			// An undo that did not reach Redis would leave a request that
			// never left the gateway charged, its slot held until the
			// lease TTL: release it once Redis answers, as an orphan.
			s.orphan(l)
		}
		return err
	}
	return nil
}

func oneIf(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Renew extends the lease's concurrency slots to ttl from now (zero: the
// store's LeaseTTL). It returns ErrLeaseExpired if a slot was already gone.
func (s *RedisStore) Renew(ctx context.Context, l Lease, ttl time.Duration) error {
	var keys []string
	for _, b := range l.Budgets {
		if b.countsConc() {
			keys = append(keys, s.keys.budget(l.Tag, b.ID)[keyConc])
		}
	}
	if len(keys) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, s.set.timeout)
	defer cancel()
	lost, err := renewScript.Run(cctx, s.client, keys, l.ID, s.set.leaseTTLFor(ttl)).Int64()
	if err != nil {
		return s.fail(ctx, "renew", err)
	}
	if lost > 0 {
		return fmt.Errorf("quota: lease %s: %w", l.ID, ErrLeaseExpired)
	}
	return nil
}

// Cancel removes a wait ticket, so that requests behind it stop waiting for
// it. Cancelling an unknown or expired ticket is not an error.
func (s *RedisStore) Cancel(ctx context.Context, tag, ticket string) error {
	if ticket == "" {
		return nil
	}
	tk := s.keys.tag(tag)
	cctx, cancel := context.WithTimeout(ctx, s.set.timeout)
	defer cancel()
	if err := cancelScript.Run(cctx, s.client, []string{tk.tickets, tk.ticketInfo}, ticket).Err(); err != nil {
		return s.fail(ctx, "cancel", err)
	}
	return nil
}

// fail wraps a Redis error. When the caller's own context ended, the caller
// gave up and Redis is not to blame; otherwise the store is unavailable.
func (s *RedisStore) fail(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("quota: redis %s: %w", op, cerr)
	}
	if !unavailable(err) {
		// Redis answered, with an error about this call (a script error,
		// CROSSSLOT, an overflow): the store is healthy, the request is not.
		return fmt.Errorf("quota: redis %s: %w: %w", op, ErrInvalid, err)
	}
	return fmt.Errorf("quota: redis %s: %w: %w", op, ErrUnavailable, err)
}

// unavailable tells an unhealthy store (no answer, a timeout, or a server
// that cannot serve right now: loading, failing over, read-only replica,
// out of memory, cluster down) from an error reply about one call.
func unavailable(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return true // network error, timeout, closed client, pool exhausted
	}
	msg := rerr.Error()
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "OOM", "BUSY", "NOREPLICAS", "MOVED", "ASK"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func (s *RedisStore) orphan(l Lease) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.orphans) < maxOrphans {
		s.orphans = append(s.orphans, l)
	}
}

// ReleaseOrphans settles, at zero tokens, every lease whose admission timed
// out: if the script had run, its reservation is refunded and its
// concurrency slot freed (the request was never forwarded under it); if it
// had not, settling changes nothing. It returns how many were released and
// keeps the rest for the next call when Redis still does not answer.
// Failover.Run calls it while the store is healthy.
func (s *RedisStore) ReleaseOrphans(ctx context.Context) int {
	s.mu.Lock()
	pending := s.orphans
	s.orphans = nil
	s.mu.Unlock()
	done := 0
	for i, l := range pending {
		if err := s.Settle(ctx, l, 0); err != nil {
			s.mu.Lock()
			s.orphans = append(pending[i:], s.orphans...)
			s.mu.Unlock()
			break
		}
		done++
	}
	return done
}

var _ UsageReader = (*RedisStore)(nil)

// Usage reads b's counters in one read-only script call.
func (s *RedisStore) Usage(ctx context.Context, b Budget) (Usage, error) {
	bk := s.keys.budget(b.Tag, b.ID)
	cctx, cancel := context.WithTimeout(ctx, s.set.timeout)
	defer cancel()
	v, err := usageScript.Run(cctx, s.client, []string{bk[keyWindow], bk[keyDay], bk[keyConc]}, s.width, s.buckets).Int64Slice()
	if err != nil {
		return Usage{}, s.fail(ctx, "usage", err)
	}
	if len(v) != 4 {
		return Usage{}, fmt.Errorf("quota: redis usage: reply has %d values, want 4", len(v))
	}
	return Usage{WindowTokens: v[0], WindowRequests: v[1], DayTokens: v[2], InFlight: v[3]}, nil
}
