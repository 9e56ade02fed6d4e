package quota

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// Options configure a RedisStore or a MemoryStore. The zero value is usable:
// every zero field takes the default shown. All replicas that share a Redis
// must use the same KeyPrefix, Window and Buckets, since bucket numbers are
// derived from them.
type Options struct {
	// KeyPrefix starts every Redis key; default "qg:". It must not contain
	// '{' or '}', which would change the keys' Cluster hash slot.
	KeyPrefix string
	// Window is the period of TPM and RPM; default 60s, as Bedrock counts
	// its per-minute quotas.
	Window time.Duration
	// Buckets is how many buckets the window is divided into; default 60.
	// At most one bucket of capacity is lost to bucketing, so admissions
	// under saturation reach at least Buckets/(Buckets+1) of the limit.
	// A bucket is Window/Buckets rounded up to a whole millisecond, so the
	// effective window is never shorter than Window.
	Buckets int
	// LeaseTTL is how long a concurrency slot is held without a Renew when
	// Request.LeaseTTL is zero; default 60s.
	LeaseTTL time.Duration
	// TicketTTL is how long a wait-queue ticket outlives the retry time its
	// holder was given; default 5s. A waiter that dies without Cancel holds
	// up nobody for longer than that.
	TicketTTL time.Duration
	// Timeout bounds every Redis call (RedisStore only); default 250ms, so
	// that a dead Redis fails fast and the failure policy takes over.
	Timeout time.Duration
	// Now is the clock (MemoryStore only); default time.Now. RedisStore
	// always uses the Redis server's TIME, so that replicas share one clock.
	Now func() time.Time
}

// The defaults of Options.
const (
	DefaultKeyPrefix = "qg:"
	DefaultWindow    = 60 * time.Second
	DefaultBuckets   = 60
	DefaultLeaseTTL  = 60 * time.Second
	DefaultTicketTTL = 5 * time.Second
	DefaultTimeout   = 250 * time.Millisecond
)

const (
	dayMS = 86_400_000
	// leaseRetention is how long an unsettled lease is remembered, so that
	// a second Settle of it is recognised and ignored. It matches the life
	// of a day counter: a settle later than that has nothing left to adjust.
	leaseRetention = 2 * dayMS
	// maxPoll bounds the RetryAfter of a request that waits its turn in a
	// queue: it retries soon to see whether it has reached the head.
	maxPoll = 100 * time.Millisecond
	minPoll = 10 * time.Millisecond
)

// ErrLeaseExpired is returned by Renew when the lease's concurrency slot
// already expired (it was not renewed within its TTL) or was settled. The
// slot is not taken back, since another request may hold it by now; the
// running request may finish, and its Settle still charges its tokens. It is
// not a store failure.
var ErrLeaseExpired = errors.New("lease expired before renewal")

// storeSettings are Options with defaults applied, in the units the stores use.
type storeSettings struct {
	prefix    string
	width     int64 // bucket width, ms
	buckets   int64
	leaseTTL  int64 // ms
	ticketTTL int64 // ms
	poll      int64 // ms
	timeout   time.Duration
	now       func() time.Time
}

func (o Options) settings() storeSettings {
	s := storeSettings{
		prefix:    o.KeyPrefix,
		buckets:   int64(o.Buckets),
		leaseTTL:  o.LeaseTTL.Milliseconds(),
		ticketTTL: o.TicketTTL.Milliseconds(),
		timeout:   o.Timeout,
		now:       o.Now,
	}
	if s.prefix == "" {
		s.prefix = DefaultKeyPrefix
	}
	window := o.Window
	if window <= 0 {
		window = DefaultWindow
	}
	if s.buckets <= 0 {
		s.buckets = DefaultBuckets
	}
	wms := max(window.Milliseconds(), 1)
	s.width = max((wms+s.buckets-1)/s.buckets, 1) // round up: never a shorter window
	if s.leaseTTL <= 0 {
		s.leaseTTL = DefaultLeaseTTL.Milliseconds()
	}
	if s.ticketTTL <= 0 {
		s.ticketTTL = DefaultTicketTTL.Milliseconds()
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.poll = min(max(s.width/2, minPoll.Milliseconds()), maxPoll.Milliseconds())
	return s
}

func (s storeSettings) leaseTTLFor(d time.Duration) int64 {
	if ms := d.Milliseconds(); ms > 0 {
		return ms
	}
	return s.leaseTTL
}

// isLimited reports whether a budget limits anything; a budget that does not
// is never read or charged. A negative limit is treated as no limit.
func isLimited(l Limits) bool {
	return l.TPM > 0 || l.RPM > 0 || l.Concurrency > 0 || l.TokensPerDay > 0
}

// counted reports whether a store keeps counters for b at all.
func (b Budget) counted() bool { return b.Track || isLimited(b.Limits) }

// Which of a budget's counters a store keeps: those it limits, or all of
// them when it is tracked.
func (b Budget) countsWindow() bool {
	return b.Track || b.Limits.TPM > 0 || b.Limits.RPM > 0
}
func (b Budget) countsDay() bool  { return b.Track || b.Limits.TokensPerDay > 0 }
func (b Budget) countsConc() bool { return b.Track || b.Limits.Concurrency > 0 }

// check validates a request before any store work: every budget of one
// request must share a non-empty Tag, since one script touches all their
// keys and a Redis Cluster runs a script on one hash slot only.
// MaxTokens bounds one reservation. Counters are summed in Lua, where
// numbers are doubles: beyond 2^53 they lose precision, and HINCRBY
// overflows at 2^63. No real request comes near it.
const MaxTokens = 1 << 53

// ErrInvalid is wrapped by errors a request causes itself (a reservation out
// of range, a budget without a tag). They say nothing about the store's
// health, so a Failover never switches on them.
var ErrInvalid = errors.New("invalid budget request")

func (r Request) check() error {
	if r.Tokens < 0 || r.Tokens > MaxTokens {
		return fmt.Errorf("%w: reservation %d is outside 0..%d", ErrInvalid, r.Tokens, int64(MaxTokens))
	}
	first := -1
	for i, b := range r.Budgets {
		if !b.counted() {
			continue
		}
		if b.Tag == "" {
			return fmt.Errorf("%w: budget %q has no Tag", ErrInvalid, b.Scope)
		}
		if first < 0 {
			first = i
			continue
		}
		if f := r.Budgets[first]; b.Tag != f.Tag {
			return fmt.Errorf("%w: budgets %q and %q of one request have different tags (%q, %q); split it into one request per tag", ErrInvalid,
				f.Scope, b.Scope, f.Tag, b.Tag)
		}
	}
	if sh := r.Shares; sh != nil {
		if sh.Budget < 0 || sh.Budget >= len(r.Budgets) || !r.Budgets[sh.Budget].counted() {
			return fmt.Errorf("%w: shares name budget %d of %d, which counts nothing", ErrInvalid, sh.Budget, len(r.Budgets))
		}
		for _, h := range sh.Holders {
			if h.TPM < 0 || h.ID == "" {
				return fmt.Errorf("%w: guarantee %q of %d tokens", ErrInvalid, h.ID, h.TPM)
			}
		}
	}
	return nil
}

// unlimitedDecision is the Decision for a request no budget limits: admitted at no
// cost and without a store round trip.
func unlimitedDecision(r Request, store string) Decision {
	tag := ""
	if len(r.Budgets) > 0 {
		tag = r.Budgets[0].Tag
	}
	return Decision{
		Allowed:           true,
		RemainingTokens:   -1,
		RemainingRequests: -1,
		Lease:             Lease{ID: newID(), Tag: tag, Budgets: r.Budgets, Tokens: r.Tokens, Store: store},
	}
}

// msDuration converts store milliseconds to a Duration, keeping -1 ("never") as a
// negative Duration.
func msDuration(v int64) time.Duration {
	if v < 0 {
		return -1
	}
	return time.Duration(v) * time.Millisecond
}

// IDs of leases and tickets: a random per-process part, so that replicas
// never collide, and a counter, so that making one costs no entropy.
var (
	idProcess = func() string {
		var b [8]byte
		_, _ = rand.Read(b[:]) // never fails since Go 1.24
		return hex.EncodeToString(b[:])
	}()
	idSeq atomic.Uint64
)

// newID returns "<process>-<counter>". The counter has a fixed width, so
// that one replica's ids sort in the order they were made: tickets that
// arrive in the same millisecond queue in that order.
func newID() string {
	var buf [48]byte
	b := append(buf[:0], idProcess...)
	b = append(b, '-')
	var digits [13]byte // 36^13 > 2^64
	n := strconv.AppendUint(digits[:0], idSeq.Add(1), 36)
	for range len(digits) - len(n) {
		b = append(b, '0')
	}
	b = append(b, n...)
	return string(b)
}
