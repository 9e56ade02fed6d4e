package tokens

import (
	"encoding/json"
	"strconv"
)

// Usage is the token usage of one call as Bedrock reported it.
//
// InputTokens excludes the cached input: Bedrock, like Anthropic, reports
// tokens read from and written to the prompt cache separately.
type Usage struct {
	InputTokens           int
	OutputTokens          int
	CacheReadInputTokens  int
	CacheWriteInputTokens int
	StopReason            string // as the family reports it (end_turn, max_tokens, stop, length, FINISH, COMPLETE ...)
	Known                 bool   // some usage figure was found
}

// Merge returns u with its zero fields (and StopReason, Known) filled from other.
func (u Usage) Merge(other Usage) Usage {
	if u.InputTokens == 0 {
		u.InputTokens = other.InputTokens
	}
	if u.OutputTokens == 0 {
		u.OutputTokens = other.OutputTokens
	}
	if u.CacheReadInputTokens == 0 {
		u.CacheReadInputTokens = other.CacheReadInputTokens
	}
	if u.CacheWriteInputTokens == 0 {
		u.CacheWriteInputTokens = other.CacheWriteInputTokens
	}
	if u.StopReason == "" {
		u.StopReason = other.StopReason
	}
	u.Known = u.Known || other.Known
	return u
}

// count is a token count read from a response. It remembers whether the
// field was there (Known means "Bedrock said so", even if it said 0) and
// parses without allocating.
type count struct {
	n  int
	ok bool
}

// UnmarshalJSON implements json.Unmarshaler.
func (c *count) UnmarshalJSON(b []byte) error {
	if b[0] == 'n' {
		return nil
	}
	if n, ok := parseInt(b); ok {
		c.n, c.ok = n, true
		return nil
	}
	// Bedrock sends integers; accept 12.0 or 1.2e3 all the same.
	if b[0] != '"' {
		if f, err := strconv.ParseFloat(string(b), 64); err == nil && f >= 0 && f < 1<<53 {
			c.n, c.ok = int(f), true
			return nil
		}
	}
	return typeError(b, intType)
}

var _ json.Unmarshaler = (*count)(nil)

// set copies c into *dst when present and reports whether it did.
func (c count) set(dst *int) bool {
	if c.ok {
		*dst = c.n
	}
	return c.ok
}

// parseInt parses a JSON integer of up to 18 digits.
func parseInt(b []byte) (int, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// take sets *dst, one of u's counts, from the first present count of cs,
// noting that usage was found. Families list where a count may be, in order
// of preference.
func (u *Usage) take(dst *int, cs ...count) {
	for _, c := range cs {
		if c.set(dst) {
			u.Known = true
			return
		}
	}
}

// firstOf returns the first non-empty string: the stop reason of a family
// that reports it in several places.
func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// invocationMetrics is the "amazon-bedrock-invocationMetrics" object that
// Bedrock adds to the last chunk of an InvokeModelWithResponseStream
// response, whatever the family. Its counts are Bedrock's own, the ones it
// bills and applies quotas with, so they win over the model's.
type invocationMetrics struct {
	InputTokenCount           count `json:"inputTokenCount"`
	OutputTokenCount          count `json:"outputTokenCount"`
	CacheReadInputTokenCount  count `json:"cacheReadInputTokenCount"`
	CacheWriteInputTokenCount count `json:"cacheWriteInputTokenCount"`
	// invocationLatency and firstByteLatency are not usage.
}

// withMetrics is embedded in every family's response struct so that one
// decode reads both the family's fields and the invocation metrics.
type withMetrics struct {
	Metrics *invocationMetrics `json:"amazon-bedrock-invocationMetrics"`
}

// over returns u with every count the metrics carry replacing u's.
func (m *invocationMetrics) over(u Usage) Usage {
	if m == nil {
		return u
	}
	for _, p := range []struct {
		c   count
		dst *int
	}{
		{m.InputTokenCount, &u.InputTokens},
		{m.OutputTokenCount, &u.OutputTokens},
		{m.CacheReadInputTokenCount, &u.CacheReadInputTokens},
		{m.CacheWriteInputTokenCount, &u.CacheWriteInputTokens},
	} {
		if p.c.set(p.dst) {
			u.Known = true
		}
	}
	return u
}

// update replaces m's counts with those present in other: the last chunk's
// metrics are the final ones.
func (m *invocationMetrics) update(other *invocationMetrics) {
	for _, p := range []struct{ dst, src *count }{
		{&m.InputTokenCount, &other.InputTokenCount},
		{&m.OutputTokenCount, &other.OutputTokenCount},
		{&m.CacheReadInputTokenCount, &other.CacheReadInputTokenCount},
		{&m.CacheWriteInputTokenCount, &other.CacheWriteInputTokenCount},
	} {
		if p.src.ok {
			*p.dst = *p.src
		}
	}
}

// UsageFromInvoke reads usage from a native InvokeModel response body (never errors: unknown -> Known=false).
//
// Some families (Mistral, Cohere Command) put no usage in the body at all:
// Bedrock reports it in the response headers, see UsageFromHeaders.
func UsageFromInvoke(f Family, body []byte) Usage {
	u, m, err := opsOf(f).usage(body)
	if err != nil {
		return Usage{}
	}
	return m.over(u)
}

// UsageFromCountTokens reads {"inputTokens": N}.
func UsageFromCountTokens(body []byte) Usage {
	var r struct {
		InputTokens count `json:"inputTokens"`
	}
	if json.Unmarshal(body, &r) != nil {
		return Usage{}
	}
	var u Usage
	u.Known = r.InputTokens.set(&u.InputTokens)
	return u
}

// Header is the one method of http.Header that usage reading needs.
type Header interface{ Get(key string) string }

// Bedrock's usage headers on InvokeModel and CountTokens responses.
const (
	HeaderInputTokens      = "X-Amzn-Bedrock-Input-Token-Count"
	HeaderOutputTokens     = "X-Amzn-Bedrock-Output-Token-Count"
	HeaderCacheReadTokens  = "X-Amzn-Bedrock-Cache-Read-Input-Token-Count"
	HeaderCacheWriteTokens = "X-Amzn-Bedrock-Cache-Write-Input-Token-Count"
)

// UsageFromHeaders reads X-Amzn-Bedrock-Input-Token-Count, X-Amzn-Bedrock-Output-Token-Count,
// X-Amzn-Bedrock-Cache-Read-Input-Token-Count and X-Amzn-Bedrock-Cache-Write-Input-Token-Count.
//
// Values that are not non-negative integers are ignored.
func UsageFromHeaders(h Header) Usage {
	var u Usage
	if h == nil {
		return u
	}
	for _, p := range []struct {
		key string
		dst *int
	}{
		{HeaderInputTokens, &u.InputTokens},
		{HeaderOutputTokens, &u.OutputTokens},
		{HeaderCacheReadTokens, &u.CacheReadInputTokens},
		{HeaderCacheWriteTokens, &u.CacheWriteInputTokens},
	} {
		if n, err := strconv.Atoi(h.Get(p.key)); err == nil && n >= 0 {
			*p.dst = n
			u.Known = true
		}
	}
	return u
}
