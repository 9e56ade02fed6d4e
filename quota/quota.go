// Package quota enforces shared budgets: tokens and requests per window,
// concurrent requests and tokens per UTC day, for every budget that applies to
// a request, checked and committed all-or-none.
//
// A Store holds the counters. RedisStore keeps them in Redis so that every
// gateway replica enforces one budget; MemoryStore keeps them in process for a
// single replica (the embedded default). Both implement the same semantics
// and pass the same test suite.
//
// The flow is reserve, then settle: Admit charges the reservation (estimated
// input tokens plus max output tokens times burndown, one request, one
// concurrency lease) to every budget at once, or to none; Settle replaces the
// reservation with the actual usage and releases the lease. A decision is a
// value, never an error: an error means the store could not decide.
package quota

import (
	"context"
	"fmt"
	"time"
)

// Dimension is one kind of limit in a budget.
type Dimension string

// The dimensions of a budget.
const (
	TPM          Dimension = "tpm"            // tokens per window (a minute in production)
	RPM          Dimension = "rpm"            // requests per window
	Concurrency  Dimension = "concurrency"    // requests in flight
	TokensPerDay Dimension = "tokens_per_day" // tokens per UTC day
	// Queue is reported when a request must wait its turn behind an older
	// waiting request, so that large requests are not starved by small ones.
	Queue Dimension = "queue"
)

// Limits are one budget's limits. A zero field means no limit on that
// dimension.
type Limits struct {
	TPM          int64
	RPM          int64
	Concurrency  int64
	TokensPerDay int64
}

// IsZero reports whether no dimension is limited.
func (l Limits) IsZero() bool { return l == Limits{} }

// String renders the limits for logs, e.g. "tpm=400000 rpm=200".
func (l Limits) String() string {
	return fmt.Sprintf("tpm=%d rpm=%d concurrency=%d tokens_per_day=%d", l.TPM, l.RPM, l.Concurrency, l.TokensPerDay)
}

// Budget is one set of limits and the place its counters live.
type Budget struct {
	// Scope names the budget to people: it is sent in x-quotagate-limit and
	// used as a metric label, e.g. "model=anthropic.claude-3-haiku-20240307-v1:0"
	// or "tenant=search model=anthropic.claude-3-haiku-20240307-v1:0".
	Scope string
	// Tag is the Redis Cluster hash tag. Every budget of one Request must
	// have the same Tag, so that one script can touch all their keys.
	// It is normally the pool id.
	Tag string
	// ID tells apart budgets that share a Tag, e.g. "pool" or "t:search".
	ID string
	// Limits are the budget's limits.
	Limits Limits
	// Track counts usage in every dimension even where Limits has no
	// limit, so that Usage can report it.
	Track bool
}

// Request asks for one admission.
type Request struct {
	// Budgets are checked and charged together: all or none.
	Budgets []Budget
	// Tokens is the reservation: estimated input tokens plus max output
	// tokens times the model's output burndown.
	Tokens int64
	// LeaseTTL bounds how long a concurrency slot is held without a Renew;
	// zero means the store's default. A replica that dies leaks no slot for
	// longer than this.
	LeaseTTL time.Duration
	// Ticket, when set, is this request's place in the wait queue from an
	// earlier denied attempt (Decision.Ticket). A waiting request passes it
	// back on every retry; see Decision.Ticket.
	Ticket string
	// Shares, when set, are the guaranteed shares of one budget of the
	// request (a model pool): see Shares.
	Shares *Shares
}

// Shares are the guaranteed floors inside one budget, normally a model
// pool: tenants that hold a guarantee of g tokens per window in the pool.
//
// A holder's share is g/TPM of the budget: g tokens per window, and the
// same fraction of its requests per window and of its concurrency. A
// holder is active while it has asked the budget for anything, admitted or
// not, within the last window. The rule: a request is admitted to the
// shared budget only if, after it, every dimension still fits with the
// unused part of every OTHER active holder's share kept free:
//
//	T_pool + tokens + sum over other active holders h of max(0, g_h - T_h) <= TPM
//	R_pool + 1 + floor(sum of max(0, g_h*RPM/TPM - R_h)) <= RPM
//	C_pool + 1 + floor(sum of max(0, g_h*C/TPM - C_h)) <= C
//
// Shares of requests and slots are fractions, and only their whole sum is
// kept free: rounding each up would let holders of small shares in a pool
// of few slots keep every slot from each other (found in review: two 1%
// holders locked a one-slot pool for good). Since the guarantees sum to
// at most TPM, the others' shares sum to less than the whole budget, and a
// request into an otherwise empty budget always fits.
//
// where T_h, R_h and C_h are what holder h uses in the pool now (its own
// tracked budget in the request's tag, with ID h.ID). So an idle holder's
// share is lent to anyone, up to each tenant's own caps; and once the
// holder asks again, what others borrowed leaves the window within one
// window while the room it frees is kept for the holder: a holder gets its
// guarantee within the window, however hard others push. A holder still
// within its own guarantee is also not held back by the budget's wait
// queue: that room is its own. Tokens per day are not shared out: cap
// tenants' days with their own tokens_per_day. Guarantees must not sum to
// more than the budget's TPM (CheckTenants enforces it).
type Shares struct {
	// Budget is the index in Request.Budgets of the shared budget.
	Budget int
	// Holders are every guarantee in the budget's tag, the requester's own
	// included (it is found by ID among the request's budgets).
	Holders []Holder
}

// Holder is one guarantee: the ID of the holder's budget in the shared
// budget's tag (e.g. "t:search"), and its guaranteed tokens per window.
type Holder struct {
	ID  string
	TPM int64
}

// Decision is the outcome of Admit.
type Decision struct {
	// Allowed reports whether the request was admitted and charged.
	Allowed bool
	// Scope and Dimension name the budget that said no (when !Allowed).
	Scope     string
	Dimension Dimension
	// RetryAfter is when the denying dimension could first admit this
	// request, if nothing else changes. Zero when that is unknown (a
	// concurrency slot frees when some request ends). Negative (-1) means
	// never: the reservation is larger than the budget's whole TPM or daily
	// limit, and the gateway answers ValidationException.
	RetryAfter time.Duration
	// RemainingTokens and RemainingRequests are the headroom left in the
	// current window after this decision, each of the budget tightest in
	// that dimension; -1 means unlimited. ResetTokens is when the window of
	// the budget with the fewest remaining tokens next frees tokens.
	RemainingTokens   int64
	RemainingRequests int64
	ResetTokens       time.Duration
	// Lease is set when Allowed; Settle it exactly once.
	Lease Lease
	// Ticket is set when !Allowed and the request was placed in (or kept
	// in) the wait queue. A caller that intends to wait passes it back in
	// Request.Ticket; one that gives up calls Store.Cancel so that requests
	// behind it do not wait for it.
	Ticket string
}

// Lease is an admitted reservation. It carries everything Settle needs, so
// that any replica (or the same one after a store switch) can settle it.
type Lease struct {
	ID      string
	Tag     string
	Budgets []Budget
	// Tokens is what was reserved.
	Tokens int64
	// At is the store's clock when the reservation was charged, in
	// milliseconds since the Unix epoch: Settle adjusts the window bucket
	// and the day that were charged.
	At int64
	// Linger, when positive, makes Settle keep the concurrency slots for
	// this long instead of releasing them at once. The gateway sets it for a
	// request its caller abandoned mid-way: Bedrock keeps generating until
	// it notices the closed connection, and a slot freed before then would
	// let one more request reach an upstream still at its limit.
	Linger time.Duration
	// SentAt, when later than At, is when the request left for the
	// upstream, on the store's clock (milliseconds since the Unix epoch;
	// the gateway passes a lower bound):
	// Settle moves the window charge to its bucket. The upstream counts a
	// request when it arrives, so a charge anchored at admission could
	// leave the window (and be admitted again) while the upstream still
	// counts it; a request that waited to be sent, under load, would then
	// meet a throttle upstream (found by the e2e accuracy proof). Moving a
	// charge later only keeps it in the window longer.
	SentAt int64
	// Void, when set, makes Settle undo the admission entirely: the tokens
	// and the request are both refunded. It is for a request that was
	// admitted in one tag and then refused in another, so never left the
	// gateway, and for one Bedrock throttled, which Bedrock does not count
	// against its requests per minute either.
	Void bool
	// Store names the store that admitted the lease ("redis", "memory",
	// "local"), so that a settle after a fail-open switch goes back to the
	// counters that were charged and nothing is charged twice.
	Store string
}

// Store holds budget counters.
type Store interface {
	// Admit checks every budget of r and charges all of them, or none.
	Admit(ctx context.Context, r Request) (Decision, error)
	// Settle replaces the lease's reservation with actual tokens: it refunds
	// the difference, or charges an overrun, and releases the concurrency
	// slot. It is called once per lease, on every path; a second call
	// changes nothing.
	Settle(ctx context.Context, l Lease, actualTokens int64) error
	// Renew extends the lease's concurrency slot to ttl from now (zero: the
	// default), while a long stream runs. It returns ErrLeaseExpired if the
	// slot was already gone.
	Renew(ctx context.Context, l Lease, ttl time.Duration) error
	// Cancel removes a wait-queue ticket that will not be retried.
	Cancel(ctx context.Context, tag, ticket string) error
}

// Usage is what one budget has counted: the tokens and requests in its
// current window, the tokens of the current UTC day and the requests in
// flight. A budget counts only the dimensions it limits or tracks
// (Budget.Track).
type Usage struct {
	WindowTokens   int64
	WindowRequests int64
	DayTokens      int64
	InFlight       int64
}

// UsageReader reads a budget's counters without charging anything.
type UsageReader interface {
	Usage(ctx context.Context, b Budget) (Usage, error)
}

// PoolBudget is the budget of a model pool (pool as PoolID gives it).
func PoolBudget(pool string, l Limits) Budget {
	return Budget{Scope: "model=" + pool, Tag: pool, ID: "pool", Limits: l}
}

// TenantPoolBudget is a tenant's budget in a model pool. It shares the
// pool's tag, so that the pool and the tenant's share of it are checked in
// one script. It is always tracked, so that usage per tenant and model can
// be read even where the tenant has no limit.
func TenantPoolBudget(tenant, pool string, l Limits) Budget {
	return Budget{Scope: "tenant=" + tenant + " model=" + pool, Tag: pool, ID: "t:" + tenant, Limits: l, Track: true}
}

// TenantAllBudget is a tenant's budget over all models ("*"). It lives
// under the tenant's own tag: a second round trip, made only when the
// tenant has such a budget.
func TenantAllBudget(tenant string, l Limits) Budget {
	return Budget{Scope: "tenant=" + tenant + " model=*", Tag: "tenant:" + tenant, ID: "all", Limits: l, Track: true}
}
