package tokens

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
)

// StreamUsage accumulates usage from stream events as they pass. Not safe for concurrent use.
type StreamUsage struct {
	f   Family
	ops *familyOps
	// own is what the family's fields said so far. Counts only grow: the
	// families that repeat a count (Meta, Titan, Anthropic's message_delta)
	// repeat it cumulatively, so the largest seen is the latest.
	own Usage
	// metrics is the latest invocation metrics, which win over own.
	metrics    invocationMetrics
	hasMetrics bool
	buf        []byte // decoded chunk, reused between events
}

// NewStreamUsage returns a StreamUsage for InvokeModelWithResponseStream of family f, or for ConverseStream when f == Converse.
func NewStreamUsage(f Family) *StreamUsage {
	return &StreamUsage{f: f, ops: opsOf(f)}
}

// Observe takes one eventstream event message: its :event-type header value and payload.
// InvokeModelWithResponseStream: eventType "chunk", payload {"bytes":"<base64 of the family's JSON chunk>"}; decode the inner
// JSON, read the family's own usage fields AND the "amazon-bedrock-invocationMetrics" object
// ({"inputTokenCount","outputTokenCount","invocationLatency","firstByteLatency", and cacheReadInputTokenCount/cacheWriteInputTokenCount when present})
// that Bedrock adds to the last chunk of every family. The invocation metrics win when present.
// ConverseStream: "messageStop" payload {"stopReason":"..."}; "metadata" payload {"usage":{"inputTokens","outputTokens","totalTokens","cacheReadInputTokens","cacheWriteInputTokens"},"metrics":{"latencyMs"}}.
// Malformed payloads are ignored (never panic).
func (s *StreamUsage) Observe(eventType string, payload []byte) {
	if s.f == Converse {
		s.observeConverse(eventType, payload)
		return
	}
	if eventType != "chunk" {
		return
	}
	chunk, ok := s.chunk(payload)
	if !ok || !containsAny(chunk, s.ops.streamKeys) {
		return
	}
	u, m, err := s.ops.usage(chunk)
	if err != nil {
		return
	}
	s.add(u)
	if m != nil {
		s.metrics.update(m)
		s.hasMetrics = true
	}
}

// observeConverse reads the two ConverseStream events that carry usage;
// messageStart and the contentBlock events are passed over undecoded.
func (s *StreamUsage) observeConverse(eventType string, payload []byte) {
	switch eventType {
	case "messageStop":
		var e struct {
			StopReason string `json:"stopReason"`
		}
		if json.Unmarshal(payload, &e) == nil && e.StopReason != "" {
			s.own.StopReason = e.StopReason
		}
	case "metadata":
		var e struct {
			Usage tokenUsage `json:"usage"`
		}
		if json.Unmarshal(payload, &e) == nil {
			var u Usage
			e.Usage.into(&u)
			s.add(u)
		}
	}
}

// chunk decodes a chunk event's payload, a PayloadPart {"bytes": "<base64>"},
// into s.buf. The payload is scanned by hand rather than unmarshalled: it is
// one member, and this runs for every event of every stream.
func (s *StreamUsage) chunk(payload []byte) ([]byte, bool) {
	raw, ok := payloadBytes(payload)
	if !ok || len(raw) == 0 {
		return nil, false
	}
	if bytes.IndexByte(raw, '\\') >= 0 {
		decoded, err := decodeBase64(raw)
		return decoded, err == nil
	}
	n := base64.StdEncoding.DecodedLen(len(raw))
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	n, err := base64.StdEncoding.Decode(s.buf[:n], raw)
	if err != nil {
		return nil, false
	}
	return s.buf[:n], true
}

// payloadBytes returns the raw contents of the top-level "bytes" string of a
// JSON object, or false. It tolerates any input: a payload that is not what
// Bedrock sends yields false or bytes that then fail to decode.
func payloadBytes(p []byte) ([]byte, bool) {
	depth := 0
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '"':
			end := stringEnd(p, i)
			if end < 0 {
				return nil, false
			}
			key := p[i+1 : end]
			i = end
			j := skipSpace(p, end+1)
			if depth != 1 || string(key) != "bytes" || j >= len(p) || p[j] != ':' {
				continue
			}
			j = skipSpace(p, j+1)
			if j >= len(p) || p[j] != '"' {
				return nil, false
			}
			if end = stringEnd(p, j); end < 0 {
				return nil, false
			}
			return p[j+1 : end], true
		}
	}
	return nil, false
}

// add folds one event's usage into s.own.
func (s *StreamUsage) add(u Usage) {
	s.own.InputTokens = max(s.own.InputTokens, u.InputTokens)
	s.own.OutputTokens = max(s.own.OutputTokens, u.OutputTokens)
	s.own.CacheReadInputTokens = max(s.own.CacheReadInputTokens, u.CacheReadInputTokens)
	s.own.CacheWriteInputTokens = max(s.own.CacheWriteInputTokens, u.CacheWriteInputTokens)
	if u.StopReason != "" {
		s.own.StopReason = u.StopReason
	}
	s.own.Known = s.own.Known || u.Known
}

// Usage returns what has been observed so far.
func (s *StreamUsage) Usage() Usage {
	if !s.hasMetrics {
		return s.own
	}
	return s.metrics.over(s.own)
}

// containsAny reports whether b contains one of keys, or keys is empty.
func containsAny(b []byte, keys [][]byte) bool {
	if len(keys) == 0 {
		return true
	}
	for _, k := range keys {
		if bytes.Contains(b, k) {
			return true
		}
	}
	return false
}
