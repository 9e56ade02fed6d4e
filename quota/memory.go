package quota

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
)

// MemoryStore keeps budget counters in process memory. It is the embedded
// default for a single replica and the fail-open fallback of a Failover. It
// implements exactly the semantics of RedisStore (the same test suite runs
// against both), step by step as admit.lua and settle.lua do, with
// Options.Now as its clock. The zero value is ready to use with default
// Options.
type MemoryStore struct {
	opts Options
	once sync.Once
	set  storeSettings

	mu      sync.Mutex
	budgets map[[2]string]*memBudget // by {tag, budget id}
	tags    map[string]*memTag
	cool    map[string]*coolState // route targets' cooldowns, by tag
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty in-process store.
func NewMemoryStore(opts Options) *MemoryStore { return &MemoryStore{opts: opts} }

// memBudget is one budget's counters: what a budget's keys hold in Redis.
type memBudget struct {
	// Window: buckets lo..lo+N in a ring of N+1, and their sums.
	started   bool
	lo, T, R  int64
	tok, reqs []int64
	// Day: the UTC day number and the tokens charged on it.
	day, used int64
	// Concurrency: lease id -> expiry, Unix ms.
	conc map[string]int64
	// Wait queue, oldest first, by (arrival, ticket).
	queue []memWaiter
}

type memWaiter struct {
	arrival int64
	ticket  string
}

func (w memWaiter) before(o memWaiter) bool {
	return w.arrival < o.arrival || (w.arrival == o.arrival && w.ticket < o.ticket)
}

// memTag is what a tag's keys hold in Redis.
type memTag struct {
	leases    map[string]int64 // unsettled lease id -> admit time
	tickets   map[string]memTicket
	seen      map[string]int64 // guarantee holder's budget id -> last attempt
	lastPrune int64
}

type memTicket struct{ expiry, arrival, tokens int64 }

func (s *MemoryStore) init() {
	s.once.Do(func() {
		s.set = s.opts.settings()
		s.budgets = make(map[[2]string]*memBudget)
		s.tags = make(map[string]*memTag)
	})
}

func (s *MemoryStore) tag(tag string) *memTag {
	t := s.tags[tag]
	if t == nil {
		t = &memTag{leases: make(map[string]int64), tickets: make(map[string]memTicket)}
		s.tags[tag] = t
	}
	return t
}

func (s *MemoryStore) budget(tag, id string) *memBudget {
	k := [2]string{tag, id}
	b := s.budgets[k]
	if b == nil {
		b = &memBudget{conc: make(map[string]int64)}
		s.budgets[k] = b
	}
	return b
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// slot is bucket b's index in the ring.
func (s *MemoryStore) slot(b int64) int64 {
	m := s.set.buckets + 1
	return ((b % m) + m) % m
}

// advance drops the buckets that left the window ending at the current
// bucket; the current bucket is then lo + N. If the clock went back, the
// window does not.
func (s *MemoryStore) advance(b *memBudget, now int64) {
	N := s.set.buckets
	newlo := floorDiv(now, s.set.width) - N
	if !b.started {
		b.started = true
		b.tok, b.reqs = make([]int64, N+1), make([]int64, N+1)
		b.lo = newlo
		return
	}
	switch {
	case newlo <= b.lo:
	case newlo-b.lo > N:
		clear(b.tok)
		clear(b.reqs)
		b.lo, b.T, b.R = newlo, 0, 0
	default:
		for x := b.lo; x < newlo; x++ {
			i := s.slot(x)
			b.T -= b.tok[i]
			b.R -= b.reqs[i]
			b.tok[i], b.reqs[i] = 0, 0
		}
		b.lo = newlo
	}
}

// retryWindow is how long until enough of the oldest buckets leave the
// window for need more to fit under limit.
func (s *MemoryStore) retryWindow(b *memBudget, ring []int64, used, need, limit, now int64) int64 {
	N := s.set.buckets
	for k := int64(1); k <= N+1; k++ {
		used -= ring[s.slot(b.lo+k-1)]
		if used+need <= limit {
			return (b.lo+N+k)*s.set.width - now
		}
	}
	return (b.lo+2*N+1)*s.set.width - now
}

// memState is one budget's view during an Admit: admit.lua's table B.
type memState struct {
	b       *memBudget
	bd      Budget
	lim     Limits
	index   int // in Request.Budgets
	head    int64
	hasHead bool
	wait    bool
}

// Admit checks every budget of r and charges all of them, or none.
func (s *MemoryStore) Admit(ctx context.Context, r Request) (Decision, error) {
	if err := r.check(); err != nil {
		return Decision{}, err
	}
	var states []memState
	var tagName string
	for i, b := range r.Budgets {
		if b.counted() {
			states = append(states, memState{bd: b, lim: b.Limits, index: i})
			tagName = b.Tag
		}
	}
	if len(states) == 0 {
		return unlimitedDecision(r, StoreMemory), nil
	}
	if err := ctx.Err(); err != nil {
		return Decision{}, err
	}
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()

	now := s.set.now().UnixMilli()
	day := floorDiv(now, dayMS)
	N, width := s.set.buckets, s.set.width
	tg := s.tag(tagName)
	lease := newID()

	// Tickets: drop the expired ones, then find this request's place.
	for k, v := range tg.tickets {
		if v.expiry <= now {
			delete(tg.tickets, k)
		}
	}
	ticket, live, arrival := r.Ticket, false, now
	if ticket != "" {
		if v, ok := tg.tickets[ticket]; ok {
			live, arrival = true, v.arrival
		}
	} else {
		ticket = lease
	}
	me := memWaiter{arrival, ticket}

	for i := range states {
		st := &states[i]
		b := s.budget(tagName, r.Budgets[st.index].ID)
		st.b = b
		if st.bd.countsWindow() {
			s.advance(b, now)
		}
		if st.bd.countsDay() && b.day != day {
			b.day, b.used = day, 0
		}
		if st.bd.countsConc() {
			for id, exp := range b.conc {
				if exp <= now {
					delete(b.conc, id)
				}
			}
		}
		st.head, st.hasHead = s.ahead(b, tg, me, live, now)
	}
	reserved, shared := s.shares(r, states, tg, tagName, now)

	remaining := func() (remT, remR, reset int64) {
		remT, remR = -1, -1
		var tight *memBudget
		for _, st := range states {
			if st.lim.TPM > 0 {
				if v := max(st.lim.TPM-st.b.T, 0); remT < 0 || v < remT {
					remT, tight = v, st.b
				}
			}
			if st.lim.RPM > 0 {
				if v := max(st.lim.RPM-st.b.R, 0); remR < 0 || v < remR {
					remR = v
				}
			}
		}
		if tight != nil && tight.T > 0 {
			for k := int64(1); k <= N+1; k++ {
				if tight.tok[s.slot(tight.lo+k-1)] > 0 {
					reset = (tight.lo+N+k)*width - now
					break
				}
			}
		}
		return remT, remR, reset
	}
	dropTicket := func() {
		if live {
			delete(tg.tickets, ticket)
		}
	}
	deny := func(st memState, dim Dimension, retry int64, queued bool) Decision {
		remT, remR, reset := remaining()
		d := Decision{
			Scope: r.Budgets[st.index].Scope, Dimension: dim, RetryAfter: msDuration(retry),
			RemainingTokens: remT, RemainingRequests: remR, ResetTokens: msDuration(reset),
		}
		if queued {
			d.Ticket = ticket
		}
		return d
	}

	// A reservation bigger than a whole budget never fits.
	for _, st := range states {
		if st.lim.TPM > 0 && r.Tokens > st.lim.TPM {
			dropTicket()
			return deny(st, TPM, -1, false), nil
		}
		if st.lim.TokensPerDay > 0 && r.Tokens > st.lim.TokensPerDay {
			dropTicket()
			return deny(st, TokensPerDay, -1, false), nil
		}
	}

	// Capacity, leaving room for each budget's oldest waiter (its head).
	capI, capRetry, qI := -1, int64(-1), -1
	var capDim Dimension
	for i := range states {
		st := &states[i]
		b, lim, tokens := st.b, st.lim, r.Tokens
		ht, hr := int64(0), int64(0)
		if st.hasHead {
			ht, hr = st.head, 1
		}
		short := func(dim Dimension, retry int64) {
			st.wait = true
			if retry > capRetry {
				capI, capDim, capRetry = i, dim, retry
			}
		}
		behind := func() {
			st.wait = true
			if qI < 0 {
				qI = i
			}
		}
		var room reservedRoom
		if i == shared {
			room = reserved
		}
		if lim.TPM > 0 {
			tpm := lim.TPM - room.tokens
			if b.T+tokens > tpm {
				short(TPM, s.retryWindow(b, b.tok, b.T, tokens, tpm, now))
			} else if b.T+tokens+ht > tpm {
				behind()
			}
		}
		if lim.RPM > 0 {
			rpm := lim.RPM - room.requests
			if b.R+1 > rpm {
				short(RPM, s.retryWindow(b, b.reqs, b.R, 1, rpm, now))
			} else if b.R+1+hr > rpm {
				behind()
			}
		}
		if lim.TokensPerDay > 0 {
			if b.used+tokens > lim.TokensPerDay {
				short(TokensPerDay, (day+1)*dayMS-now)
			} else if b.used+tokens+ht > lim.TokensPerDay {
				behind()
			}
		}
		if lim.Concurrency > 0 {
			conc := lim.Concurrency - room.slots
			if int64(len(b.conc))+1 > conc {
				short(Concurrency, 0)
			} else if int64(len(b.conc))+1+hr > conc {
				behind()
			}
		}
	}
	if capI >= 0 || qI >= 0 {
		i, dim, retry := capI, capDim, capRetry
		if capI < 0 {
			i, dim, retry = qI, Queue, s.set.poll
		}
		if dim == TokensPerDay {
			dropTicket()
			return deny(states[i], dim, retry, false), nil
		}
		exp := now + max(retry, 0) + s.set.ticketTTL
		tg.tickets[ticket] = memTicket{expiry: exp, arrival: arrival, tokens: r.Tokens}
		for _, st := range states {
			if st.wait {
				st.b.enqueue(me)
			}
		}
		return deny(states[i], dim, retry, true), nil
	}

	// Admit: charge every budget.
	leaseTTL := s.set.leaseTTLFor(r.LeaseTTL)
	for _, st := range states {
		b := st.b
		if st.bd.countsWindow() {
			c := s.slot(b.lo + N)
			b.tok[c] += r.Tokens
			b.reqs[c]++
			b.T += r.Tokens
			b.R++
		}
		if st.bd.countsDay() {
			b.used += r.Tokens
		}
		if st.bd.countsConc() {
			b.conc[lease] = now + leaseTTL
		}
		if live {
			b.dequeue(ticket)
		}
	}
	dropTicket()
	tg.leases[lease] = now
	if now-tg.lastPrune >= time.Minute.Milliseconds() {
		tg.lastPrune = now
		for id, at := range tg.leases {
			if at <= now-leaseRetention {
				delete(tg.leases, id)
			}
		}
	}
	remT, remR, reset := remaining()
	return Decision{
		Allowed:           true,
		RemainingTokens:   remT,
		RemainingRequests: remR,
		ResetTokens:       msDuration(reset),
		Lease:             Lease{ID: lease, Tag: tagName, Budgets: r.Budgets, Tokens: r.Tokens, At: now, Store: StoreMemory},
	}, nil
}

// ahead returns the tokens of the oldest live waiter in b's queue if it
// arrived before me. Dead tickets are dropped as they reach the head.
func (s *MemoryStore) ahead(b *memBudget, tg *memTag, me memWaiter, live bool, now int64) (int64, bool) {
	for len(b.queue) > 0 {
		h := b.queue[0]
		if h.ticket == me.ticket && live {
			return 0, false
		}
		if t, ok := tg.tickets[h.ticket]; ok && h.ticket != me.ticket && t.expiry > now {
			if h.before(me) {
				return t.tokens, true
			}
			return 0, false
		}
		b.queue = b.queue[1:]
	}
	b.queue = nil
	return 0, false
}

// enqueue puts w in the queue, or moves it to its arrival if it is there.
func (b *memBudget) enqueue(w memWaiter) {
	b.dequeue(w.ticket)
	i := sort.Search(len(b.queue), func(i int) bool { return w.before(b.queue[i]) })
	b.queue = append(b.queue, memWaiter{})
	copy(b.queue[i+1:], b.queue[i:])
	b.queue[i] = w
}

func (b *memBudget) dequeue(ticket string) {
	for i, w := range b.queue {
		if w.ticket == ticket {
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			return
		}
	}
}

// Settle refunds or charges the difference between actualTokens and the
// reservation and releases the concurrency slots. A second Settle of the
// same lease changes nothing.
func (s *MemoryStore) Settle(ctx context.Context, l Lease, actualTokens int64) error {
	if actualTokens < 0 {
		return fmt.Errorf("quota: negative actual tokens %d", actualTokens)
	}
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.set.now().UnixMilli()
	tg := s.tag(l.Tag)
	_, first := tg.leases[l.ID]
	delete(tg.leases, l.ID)
	for _, bd := range l.Budgets {
		if bd.countsConc() {
			conc := s.budget(l.Tag, bd.ID).conc
			if _, held := conc[l.ID]; held && l.Linger > 0 {
				conc[l.ID] = now + l.Linger.Milliseconds() // see Lease.Linger
			} else {
				delete(conc, l.ID)
			}
		}
	}
	delta := actualTokens - l.Tokens
	dr := int64(0)
	if l.Void {
		dr = -1
	}
	N, width := s.set.buckets, s.set.width
	moves := l.SentAt > l.At && floorDiv(l.SentAt, width) > floorDiv(l.At, width)
	if !first || (delta == 0 && dr == 0 && !moves) {
		return nil
	}
	today := floorDiv(now, dayMS)
	for _, bd := range l.Budgets {
		if !bd.counted() {
			continue
		}
		b := s.budget(l.Tag, bd.ID)
		if bd.countsWindow() {
			s.advance(b, now)
			c := b.lo + N
			x := min(floorDiv(l.At, width), c)
			xn := x
			if moves {
				xn = min(floorDiv(l.SentAt, width), c)
			}
			ok := true
			switch {
			case x >= b.lo && xn > x:
				// Move the charge to the sending bucket (settle.lua).
				i, j := s.slot(x), s.slot(xn)
				ot, orq := max(b.tok[i]-l.Tokens, 0), max(b.reqs[i]-1, 0)
				b.T += ot - b.tok[i]
				b.R += orq - b.reqs[i]
				b.tok[i], b.reqs[i] = ot, orq
				b.tok[j] += max(l.Tokens+delta, 0)
				b.reqs[j] += 1 + dr
				b.T += max(l.Tokens+delta, 0)
				b.R += 1 + dr
				ok = false
			case x < b.lo:
				x, ok = c, delta > 0
			}
			if ok {
				i := s.slot(x)
				nv := max(b.tok[i]+delta, 0)
				b.T += nv - b.tok[i]
				b.tok[i] = nv
				rv := max(b.reqs[i]+dr, 0)
				b.R += rv - b.reqs[i]
				b.reqs[i] = rv
			}
		}
		if bd.countsDay() && (floorDiv(l.At, dayMS) == today || delta > 0) {
			if b.day != today {
				b.day, b.used = today, 0
			}
			b.used = max(b.used+delta, 0)
		}
	}
	return nil
}

// Renew extends the lease's concurrency slots to ttl from now (zero: the
// store's LeaseTTL). It returns ErrLeaseExpired if a slot was already gone.
func (s *MemoryStore) Renew(ctx context.Context, l Lease, ttl time.Duration) error {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.set.now().UnixMilli()
	exp := now + s.set.leaseTTLFor(ttl)
	lost := false
	for _, bd := range l.Budgets {
		if !bd.countsConc() {
			continue
		}
		b := s.budget(l.Tag, bd.ID)
		if _, ok := b.conc[l.ID]; ok {
			b.conc[l.ID] = exp
		} else {
			lost = true
		}
	}
	if lost {
		return fmt.Errorf("quota: lease %s: %w", l.ID, ErrLeaseExpired)
	}
	return nil
}

// Cancel removes a wait ticket, so that requests behind it stop waiting for
// it. Cancelling an unknown or expired ticket is not an error.
func (s *MemoryStore) Cancel(ctx context.Context, tag, ticket string) error {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tags[tag]; t != nil {
		delete(t.tickets, ticket)
	}
	return nil
}

// shares applies r.Shares as admit.lua does: it returns what the shared
// budget must keep free for the other active holders' unused shares (in
// tokens, requests and concurrency slots), and the shared budget's index in
// states (-1: none). It records the requester's attempt, which makes it
// active, and lets a requester within its own guarantee skip the shared
// budget's queue.
func (s *MemoryStore) shares(r Request, states []memState, tg *memTag, tag string, now int64) (res reservedRoom, shared int) {
	shared = -1
	if r.Shares == nil {
		return res, -1
	}
	for i, st := range states {
		if st.index == r.Shares.Budget {
			shared = i
		}
	}
	if shared < 0 || states[shared].lim.TPM <= 0 {
		return res, shared
	}
	pool := states[shared].lim
	windowMS := s.set.buckets * s.set.width
	var requests, slots float64 // fractions, summed as admit.lua sums them
	for _, h := range r.Shares.Holders {
		var mine *memState
		for i := range states {
			if states[i].bd.ID == h.ID {
				mine = &states[i]
			}
		}
		if mine != nil {
			if mine.b.T+r.Tokens <= h.TPM {
				states[shared].hasHead = false
			}
			if tg.seen == nil {
				tg.seen = make(map[string]int64)
			}
			tg.seen[h.ID] = now
			continue
		}
		if at, ok := tg.seen[h.ID]; !ok || at <= now-windowMS {
			continue // idle: its share is lent
		}
		b := s.budget(tag, h.ID)
		s.advance(b, now)
		res.tokens += max(h.TPM-b.T, 0)
		if pool.RPM > 0 {
			requests += max(shareOf(h.TPM, pool.RPM, pool.TPM)-float64(b.R), 0)
		}
		if pool.Concurrency > 0 {
			live := int64(0)
			for _, exp := range b.conc {
				if exp > now {
					live++
				}
			}
			slots += max(shareOf(h.TPM, pool.Concurrency, pool.TPM)-float64(live), 0)
		}
	}
	// Only the whole sum of the fractional shares is kept free (admit.lua).
	res.requests, res.slots = int64(math.Floor(requests)), int64(math.Floor(slots))
	return res, shared
}

// reservedRoom is what a shared budget keeps free for guarantee holders.
type reservedRoom struct{ tokens, requests, slots int64 }

// shareOf is a holder's share of a dimension: g/tpm of limit, a fraction.
// It is computed in doubles, exactly as admit.lua computes it, so that the
// stores agree even where the product would overflow an int64.
func shareOf(g, limit, tpm int64) float64 {
	return float64(g) * float64(limit) / float64(tpm)
}

var _ UsageReader = (*MemoryStore)(nil)

// Usage reads b's counters.
func (s *MemoryStore) Usage(ctx context.Context, bd Budget) (Usage, error) {
	if err := ctx.Err(); err != nil {
		return Usage{}, err
	}
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.set.now().UnixMilli()
	b := s.budgets[[2]string{bd.Tag, bd.ID}]
	if b == nil {
		return Usage{}, nil
	}
	var u Usage
	if b.started {
		// Sum what an admission now would, without advancing: a read
		// must not change what the next admission sees.
		newlo := floorDiv(now, s.set.width) - s.set.buckets
		for x := max(b.lo, newlo); x <= b.lo+s.set.buckets; x++ {
			u.WindowTokens += b.tok[s.slot(x)]
			u.WindowRequests += b.reqs[s.slot(x)]
		}
	}
	if b.day == floorDiv(now, dayMS) {
		u.DayTokens = b.used
	}
	for _, exp := range b.conc {
		if exp > now {
			u.InFlight++
		}
	}
	return u, nil
}
