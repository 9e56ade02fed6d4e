package bedrocksim

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/quotagate/quotagate/bedrock"
)

// Bedrock's ThrottlingException messages for its token and request quotas.
const (
	msgTooManyTokens   = "Too many tokens, please wait before trying again."
	msgTooManyRequests = "Too many requests, please wait before trying again."
)

// limiter is one model's quota state: a log of charges inside a sliding
// window, and the requests in progress.
//
// Bedrock counts a request against tokens per minute when it starts, with
// input tokens + max tokens x burndown, and replaces that with input +
// output x burndown when it ends ("How tokens are counted in Amazon
// Bedrock"). A charge therefore keeps its start time and changes its amount
// once, at settle.
//
// Every operation is amortized O(1) so that the simulator is not the
// bottleneck of a benchmark: the admission window keeps running sums, and
// the largest settled window is found by a sweep that only visits windows
// whose charges are all settled, each once. The clock is expected to move
// forward; if it steps back, admission stays exact and the window maxima
// may miss history older than what is kept.
type limiter struct {
	mu     sync.Mutex
	limits Limits
	window time.Duration

	// charges is sorted by time. The log starts at the first charge that
	// the admission window or the sweep can still see.
	charges []*charge
	lastNow time.Time // the latest time seen, for the monotonic sweep

	// The admission window (now-window, now] is charges[head:], whose
	// current amounts (reserved or settled) add up to used and requests.
	head     int
	used     int
	requests int

	// firstOpen is the index of the oldest unsettled charge (len if none):
	// everything before it is settled.
	firstOpen int

	// The sweep has measured the windows (t-window, t] ending at
	// charges[:done]; those are final, because all their charges were
	// settled and no charge can arrive at or before t. charges[lo:hi] is the
	// last window measured, with its sums.
	done, lo, hi        int
	sweptTok, sweptReqs int
	inflight            int
	stats               ModelStats // MaxWindow* over final windows only
}

// charge is one admitted request.
type charge struct {
	at       time.Time
	tokens   int
	burndown int // the output burndown in force when it was admitted
	settled  bool
}

func newLimiter(l Limits, window time.Duration) *limiter {
	return &limiter{limits: l, window: window}
}

func (l *limiter) setLimits(lim Limits) {
	l.mu.Lock()
	l.limits = lim
	l.mu.Unlock()
}

// burndown is the quota cost of one output token. The caller holds mu.
func (l *limiter) burndown() int {
	if l.limits.OutputBurndown > 0 {
		return l.limits.OutputBurndown
	}
	return 1
}

// countRequest counts a request that reached the model.
func (l *limiter) countRequest() {
	l.mu.Lock()
	l.stats.Requests++
	l.mu.Unlock()
}

// admit reserves input + maxTokens x burndown tokens and one request in the
// window (now-window, now], and a concurrency slot. It returns the charge to
// settle, or the ThrottlingException that Bedrock answers when a quota says
// no.
func (l *limiter) admit(now time.Time, input, maxTokens int) (*charge, *bedrock.Error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.slide(now)
	burndown := l.burndown()
	tokens := input + maxTokens*burndown

	var denied *bedrock.Error
	switch lim := l.limits; {
	case lim.RPM > 0 && l.requests+1 > lim.RPM:
		denied = bedrock.Errorf(bedrock.Throttling, msgTooManyRequests)
	case lim.TPM > 0 && l.used+tokens > lim.TPM:
		denied = bedrock.Errorf(bedrock.Throttling, msgTooManyTokens)
	case lim.Concurrency > 0 && l.inflight+1 > lim.Concurrency:
		denied = bedrock.Errorf(bedrock.Throttling, msgTooManyRequests)
	}
	if denied != nil {
		l.stats.Throttled++
		return nil, denied
	}

	c := &charge{at: now, tokens: tokens, burndown: burndown}
	l.insert(c)
	l.used += tokens
	l.requests++
	l.inflight++
	l.stats.PeakConcurrency = max(l.stats.PeakConcurrency, l.inflight)
	l.sweep()
	l.compact()
	return c, nil
}

// settle replaces a charge's reservation by what the request used: input +
// output x burndown. It runs on every path, success, error or cancel.
func (l *limiter) settle(now time.Time, c *charge, input, output int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.slide(now)
	actual := input + output*c.burndown
	// A charge still in the admission window changes its running sum; one
	// the window has left was subtracted at its reserved amount already.
	if l.index(c) >= l.head {
		l.used += actual - c.tokens
	}
	c.tokens = actual
	c.settled = true
	l.inflight--
	l.stats.InputTokens += input
	l.stats.OutputTokens += output
	for l.firstOpen < len(l.charges) && l.charges[l.firstOpen].settled {
		l.firstOpen++
	}
	l.sweep()
	l.compact()
}

// slide moves the admission window to end at now.
func (l *limiter) slide(now time.Time) {
	start := now.Add(-l.window)
	if now.Before(l.lastNow) {
		// The clock stepped back: find the window again.
		l.head = sort.Search(len(l.charges), func(i int) bool { return l.charges[i].at.After(start) })
		l.used, l.requests = 0, 0
		for _, c := range l.charges[l.head:] {
			l.used += c.tokens
			l.requests++
		}
		return
	}
	l.lastNow = now
	for l.head < len(l.charges) && !l.charges[l.head].at.After(start) {
		l.used -= l.charges[l.head].tokens
		l.requests--
		l.head++
	}
}

// insert adds a charge in time order: at the end, unless the clock stepped
// back.
func (l *limiter) insert(c *charge) {
	i := len(l.charges)
	for i > 0 && l.charges[i-1].at.After(c.at) {
		i--
	}
	l.charges = slices.Insert(l.charges, i, c)
	if i == len(l.charges)-1 {
		return // appended: no index moves, and firstOpen is already right
	}
	// Inserted before later charges, which shift by one. The admission
	// window was just slid to c.at, so c is in it: i >= head.
	if i <= l.firstOpen {
		l.firstOpen = i
	}
	if i < l.hi || i < l.done {
		l.restartSweep(min(i, l.done))
	}
}

// index finds a charge in the log.
func (l *limiter) index(c *charge) int {
	i := sort.Search(len(l.charges), func(i int) bool { return !l.charges[i].at.Before(c.at) })
	for ; i < len(l.charges) && !l.charges[i].at.After(c.at); i++ {
		if l.charges[i] == c {
			return i
		}
	}
	return -1
}

// sweep measures every window that has become final: those ending at a
// charge older than both the oldest unsettled charge and the latest time
// seen (a charge still to come cannot be at or before it).
func (l *limiter) sweep() {
	limit := l.lastNow
	if l.firstOpen < len(l.charges) && l.charges[l.firstOpen].at.Before(limit) {
		limit = l.charges[l.firstOpen].at
	}
	cs := l.charges
	for l.done < len(cs) && cs[l.done].at.Before(limit) {
		t := cs[l.done].at
		for ; l.hi < len(cs) && !cs[l.hi].at.After(t); l.hi++ {
			l.sweptTok += cs[l.hi].tokens
			l.sweptReqs++
		}
		for start := t.Add(-l.window); l.lo < l.hi && !cs[l.lo].at.After(start); l.lo++ {
			l.sweptTok -= cs[l.lo].tokens
			l.sweptReqs--
		}
		l.stats.MaxWindowTokens = max(l.stats.MaxWindowTokens, l.sweptTok)
		l.stats.MaxWindowRequests = max(l.stats.MaxWindowRequests, l.sweptReqs)
		l.done++
	}
}

// restartSweep makes the sweep measure again from the window ending at
// charges[d]. Windows only gain charges, so measuring one twice is harmless.
func (l *limiter) restartSweep(d int) {
	l.done = d
	l.lo = l.first(d)
	l.hi = l.lo
	l.sweptTok, l.sweptReqs = 0, 0
}

// first is the index of the first charge inside the window ending at
// charges[d].
func (l *limiter) first(d int) int {
	if d >= len(l.charges) {
		return d
	}
	start := l.charges[d].at.Add(-l.window)
	return sort.Search(d, func(i int) bool { return l.charges[i].at.After(start) })
}

// compact drops the charges that neither the admission window nor the
// sweep can see, once they are at least half the log, so that copying is
// amortized. What is kept is about one window before the oldest charge in
// progress.
func (l *limiter) compact() {
	n := min(l.head, l.lo)
	if n == 0 || n < len(l.charges)/2 {
		return
	}
	k := copy(l.charges, l.charges[n:])
	clear(l.charges[k:])
	l.charges = l.charges[:k]
	l.head -= n
	l.lo -= n
	l.hi -= n
	l.done -= n
	l.firstOpen -= n
}

// snapshot returns the model's statistics. The windows that are not final
// yet are measured now, with the charges settled so far.
func (l *limiter) snapshot() ModelStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stats
	cs := l.charges
	lo := l.first(l.done)
	hi := lo
	tokens, requests := 0, 0
	for i := l.done; i < len(cs); i++ {
		if !cs[i].settled {
			continue
		}
		t := cs[i].at
		for ; hi < len(cs) && !cs[hi].at.After(t); hi++ {
			if cs[hi].settled {
				tokens += cs[hi].tokens
				requests++
			}
		}
		for start := t.Add(-l.window); lo < hi && !cs[lo].at.After(start); lo++ {
			if cs[lo].settled {
				tokens -= cs[lo].tokens
				requests--
			}
		}
		st.MaxWindowTokens = max(st.MaxWindowTokens, tokens)
		st.MaxWindowRequests = max(st.MaxWindowRequests, requests)
	}
	return st
}
