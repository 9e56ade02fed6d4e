package quota

import "strings"

import "sync"

// The Redis key layout. Every key of one admission carries the hash tag
// {<tag>}, so that Redis Cluster keeps them in one slot and one script can
// touch them all. Each key expires by itself once nothing in it can matter.
//
// Per budget (<p>{<tag>}:<budget id>:<suffix>):
//
//	:w  hash    window: "t<bucket>" tokens and "r<bucket>" requests charged in
//	            each bucket still in the window, "lo" the oldest bucket kept,
//	            "T" and "R" their sums. Expires (Buckets+2) buckets after the
//	            last charge.
//	:d  hash    day: "day" the UTC day number (Unix ms / 86400000) and "n"
//	            the tokens charged that day. Expires 2 days after the last
//	            charge. One key rather than one per day, because a script's
//	            keys are named before it runs and only Redis knows the date.
//	:c  zset    concurrency: lease id -> expiry (Unix ms). Expired members
//	            are pruned at every admit.
//	:q  zset    wait queue: ticket -> arrival (Unix ms).
//
// Per tag (<p>{<tag>}:<name>):
//
//	:leases      zset  lease id -> admit time (Unix ms) of every lease not
//	                   yet settled, so that a second Settle is a no-op.
//	:tickets     zset  ticket -> expiry (Unix ms): the live wait tickets.
//	                   Cancel removes one here; queues drop dead tickets
//	                   lazily when they reach the head.
//	:ticketinfo  hash  ticket -> "<arrival> <tokens>".
//	:seen        hash  guarantee holder's budget id -> its last attempt
//	                   (Unix ms): a holder is active, and its share kept
//	                   for it, while it asked within the last window.
//	:cool        hash  a route target's failures and cooldown (see
//	                   cooldown.lua); the tag is the target's pool.
//
// Budget keys end in a one-letter suffix and tag keys in a word, so no
// budget id can make a budget key equal to a tag key.
const (
	keyWindow = iota
	keyDay
	keyConc
	keyQueue
	keysPerBudget
)

type budgetKeys [keysPerBudget]string

func makeBudgetKeys(prefix, tag, id string) budgetKeys {
	base := prefix + "{" + hashTag(tag) + "}:" + id + ":"
	return budgetKeys{base + "w", base + "d", base + "c", base + "q"}
}

type tagKeys struct{ leases, tickets, ticketInfo, seen, cool string }

func makeTagKeys(prefix, tag string) tagKeys {
	base := prefix + "{" + hashTag(tag) + "}:"
	return tagKeys{base + "leases", base + "tickets", base + "ticketinfo", base + "seen", base + "cool"}
}

// keyCache remembers key names, which are the same on every call for a
// budget: building them is most of an admission's allocations. Budgets come
// from configuration, so the cache stays small; past maxCachedKeys it stops
// growing and names are built per call.
type keyCache struct {
	prefix  string
	mu      sync.RWMutex
	budgets map[[2]string]budgetKeys
	tags    map[string]tagKeys
}

const maxCachedKeys = 10_000

func (c *keyCache) budget(tag, id string) budgetKeys {
	k := [2]string{tag, id}
	c.mu.RLock()
	v, ok := c.budgets[k]
	c.mu.RUnlock()
	if ok {
		return v
	}
	v = makeBudgetKeys(c.prefix, tag, id)
	c.mu.Lock()
	if c.budgets == nil {
		c.budgets = make(map[[2]string]budgetKeys)
	}
	if len(c.budgets) < maxCachedKeys {
		c.budgets[k] = v
	}
	c.mu.Unlock()
	return v
}

func (c *keyCache) tag(tag string) tagKeys {
	c.mu.RLock()
	v, ok := c.tags[tag]
	c.mu.RUnlock()
	if ok {
		return v
	}
	v = makeTagKeys(c.prefix, tag)
	c.mu.Lock()
	if c.tags == nil {
		c.tags = make(map[string]tagKeys)
	}
	if len(c.tags) < maxCachedKeys {
		c.tags[tag] = v
	}
	c.mu.Unlock()
	return v
}

// tagEscaper keeps a tag's braces out of the key. Redis Cluster hashes only
// what stands between the first '{' and the next '}'; a tag that is a
// caller's model id (a pool per requested id) could otherwise end the tag
// early ("}x" gives "{}x}") and scatter one admission's keys over several
// slots (CROSSSLOT). Percent-escaping keeps keys readable.
var tagEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")

func hashTag(tag string) string { return tagEscaper.Replace(tag) }
