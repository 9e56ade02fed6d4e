package proxy_test

import (
	"net/http"
	"testing"

	"github.com/quotagate/quotagate/bedrock"
)

// panicky panics on its first round trip, standing in for a bug anywhere
// below the handler.
type panicky struct {
	next  http.RoundTripper
	fired bool
}

func (p *panicky) RoundTrip(r *http.Request) (*http.Response, error) {
	if !p.fired {
		p.fired = true
		panic("bug")
	}
	return p.next.RoundTrip(r)
}

// TestPanicAnswersAndSettles: a panic before the response started is a
// Bedrock-shaped 500, and the request's budget is settled (its concurrency
// slot is free for the next one).
func TestPanicAnswersAndSettles(t *testing.T) {
	h := newHarness(t, harnessOptions{
		budgets: "models:\n  " + haiku + ":\n    concurrency: 1\n    tpm: 100000\n",
		wrap:    func(rt http.RoundTripper) http.RoundTripper { return &panicky{next: rt} },
	})
	resp := h.post(t, haikuPath+"/converse", "application/json", []byte(converseBody(50)))
	checkBedrockError(t, resp, http.StatusInternalServerError, bedrock.InternalServer)
	h.waitLogs(t, 1)
	if line := h.logLines(t)[0]; intField(line, "charged_tokens") != 0 {
		t.Errorf("charged %d for a request that never left, want 0", intField(line, "charged_tokens"))
	}
	if resp := h.post(t, haikuPath+"/converse", "application/json", []byte(converseBody(50))); resp.StatusCode != http.StatusOK {
		t.Errorf("next request: status %d, want 200 (slot released)", resp.StatusCode)
	}
}
