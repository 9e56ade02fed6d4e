package bedrocksim

import (
	"maps"
	"net/http"
	"slices"

	"github.com/quotagate/quotagate/bedrock"
)

// Stats is what the simulator has seen, for tests to assert on.
type Stats struct {
	// Requests counts the requests that passed authentication and named a
	// known operation, by operation.
	Requests map[bedrock.Operation]int
	// Total counts every request that reached the handler, whatever became
	// of it.
	Total int
	// Throttled counts the requests answered with ThrottlingException
	// because a quota said no (not injected faults).
	Throttled int
	// Faults counts the injected faults served.
	Faults int
	// AuthFailures counts the requests refused for their credentials.
	AuthFailures int
	// Cancelled counts the requests whose client went away before the
	// simulator finished.
	Cancelled int
	// InFlight is the number of requests being handled now.
	InFlight int
	// Models holds per-model statistics, keyed as in Config.Models.
	Models map[string]ModelStats
}

// ModelStats is one model's share of Stats.
type ModelStats struct {
	// Requests counts the authenticated requests for the model, whatever
	// became of them; Throttled counts those a quota refused.
	Requests, Throttled int
	// InputTokens and OutputTokens are the usage actually served (for a
	// cancelled stream, what was sent before the client left).
	InputTokens, OutputTokens int
	// PeakConcurrency is the most requests admitted and in progress at once.
	PeakConcurrency int
	// MaxWindowTokens is the most tokens charged, at their settled amounts,
	// within any one Window-long sliding window so far.
	MaxWindowTokens int
	// MaxWindowRequests is the most settled requests within any one
	// Window-long sliding window so far.
	MaxWindowRequests int
}

// Stats returns a deep copy of the statistics, safe to keep and read.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	st.Requests = maps.Clone(s.stats.Requests)
	models := maps.Clone(s.models)
	s.mu.Unlock()

	st.Models = make(map[string]ModelStats, len(models))
	for id, l := range models {
		st.Models[id] = l.snapshot()
	}
	return st
}

// Recorded is one request as the simulator received it.
type Recorded struct {
	// Operation and ModelID come from the path ("" when it did not parse);
	// ModelID is decoded.
	Operation bedrock.Operation
	ModelID   string
	// Header and Body are as received (the body's first MiB).
	Header http.Header
	Body   []byte
	// Authenticated reports whether the credentials were accepted.
	Authenticated bool
	// Status is the HTTP status answered: 0 while the request is in
	// progress, or when the connection was reset.
	Status int
}

// Requests returns the last 256 requests that reached the handler, whether
// or not they authenticated, oldest first. The records are copies.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Recorded, 0, recentRequests)
	for i := range recentRequests {
		rec := s.recent[(s.next+i)%recentRequests]
		if rec == nil {
			continue
		}
		c := *rec
		c.Header = rec.Header.Clone()
		c.Body = slices.Clone(rec.Body)
		out = append(out, c)
	}
	return out
}
