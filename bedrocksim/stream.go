package bedrocksim

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/quotagate/quotagate/bedrock"
)

// Streams: InvokeModelWithResponseStream and ConverseStream answer with
// application/vnd.amazon.eventstream, one event per chunk, flushed as soon
// as it is generated.

// invokeStream frames a family's native chunks as "chunk" events.
func invokeStream(fam family, req *nativeRequest, g *generation) []streamEvent {
	evs := fam.chunks(req, g)
	for i := range evs {
		evs[i].kind = "chunk"
	}
	return evs
}

// stream sends events at the simulated model's pace. The fault, if any, is
// a mid-stream one: it replaces the rest of the stream with an exception
// message after AfterEvents events. Tokens sent are recorded in res as they
// go, so that a client that leaves is charged for what it got.
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, events []streamEvent, g *generation, fault *Fault, start time.Time, res *result) {
	h := w.Header()
	h.Set("Content-Type", bedrock.EventStreamContentType)
	if len(events) > 0 && events[0].kind == "chunk" {
		// InvokeModelWithResponseStream names the chunks' media type.
		h.Set("X-Amzn-Bedrock-Content-Type", "application/json")
	}
	rc := http.NewResponseController(w)
	started := false
	begin := func() {
		if !started {
			w.WriteHeader(http.StatusOK)
			started = true
		}
	}
	exception := func() {
		begin()
		s.count(func(st *Stats) { st.Faults++ })
		if bedrock.WriteException(w, faultError(fault)) != nil || rc.Flush() != nil {
			res.cancelled = true
		}
	}

	var firstByte time.Duration
	for i, ev := range events {
		if fault != nil && i == fault.AfterEvents {
			exception()
			return
		}
		delay := time.Duration(ev.tokens) * s.latency.PerOutputToken
		if i == 0 {
			delay += s.latency.TimeToFirstToken
		}
		if sleep(ctx, delay) != nil {
			res.cancelled = true
			return
		}
		if i == 0 {
			firstByte = time.Since(start)
		}
		payload := encodeEvent(ev, i, i == len(events)-1, g, firstByte, time.Since(start))
		begin()
		if bedrock.WriteEvent(w, ev.kind, payload) != nil || rc.Flush() != nil {
			res.cancelled = true
			return
		}
		res.output += ev.tokens
		if i == 0 && !s.waitHold(ctx) {
			res.cancelled = true
			return
		}
	}
	if fault != nil {
		exception()
	}
}

// encodeEvent is the payload of one event. Chunks carry the native JSON
// base64-encoded in "bytes" (a PayloadPart), and the last one adds
// Bedrock's "amazon-bedrock-invocationMetrics". ConverseStream events are
// the union member's structure itself, with the latency in the metadata
// event. Both carry Bedrock's "p" padding field, which obscures the length
// of the tokens and which clients must ignore.
func encodeEvent(ev streamEvent, i int, last bool, g *generation, firstByte, elapsed time.Duration) []byte {
	body := maps.Clone(ev.body)
	var payload map[string]any
	if ev.kind == "chunk" {
		if last {
			body["amazon-bedrock-invocationMetrics"] = map[string]any{
				"inputTokenCount":   g.inputTokens,
				"outputTokenCount":  g.outputTokens(),
				"invocationLatency": elapsed.Milliseconds(),
				"firstByteLatency":  firstByte.Milliseconds(),
			}
		}
		native, _ := json.Marshal(body) // maps of JSON values: cannot fail
		payload = map[string]any{"bytes": native}
	} else {
		if ev.kind == "metadata" {
			body["metrics"] = map[string]any{"latencyMs": elapsed.Milliseconds()}
		}
		payload = body
	}
	payload["p"] = padding(i)
	b, _ := json.Marshal(payload)
	return b
}

// padding is a run of letters of varying length, like Bedrock's.
func padding(i int) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	return letters[:(i*7)%len(letters)+1]
}

// streamHold is a gate that streams wait at after their first event.
type streamHold struct {
	ch   chan struct{}
	once sync.Once
}

// HoldStreams makes every stream pause after its first event until release
// is called (or its client goes away). Tests use it to see that the first
// event reaches the client before the upstream finishes, without relying on
// timing. Holds taken while one is active share it: any release ends it.
func (s *Server) HoldStreams() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold == nil {
		s.hold = &streamHold{ch: make(chan struct{})}
	}
	h := s.hold
	return func() {
		h.once.Do(func() {
			s.mu.Lock()
			if s.hold == h {
				s.hold = nil
			}
			s.mu.Unlock()
			close(h.ch)
		})
	}
}

// waitHold waits while streams are held. It reports false if the client
// went away.
func (s *Server) waitHold(ctx context.Context) bool {
	s.mu.Lock()
	h := s.hold
	s.mu.Unlock()
	if h == nil {
		return true
	}
	select {
	case <-h.ch:
		return true
	case <-ctx.Done():
		return false
	}
}
