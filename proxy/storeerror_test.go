package proxy_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/internal/redistest"
	"github.com/quotagate/quotagate/quota"
)

// TestStoreErrorIsInternal: when Redis answers an admission with an error
// about the call itself (here WRONGTYPE, a key clobbered by someone else),
// the caller gets a generic 500 InternalServerException, not a 400 that
// blames its request and quotes Redis's internals; the detail is in the
// access log for the SRE, and nothing reaches Bedrock.
func TestStoreErrorIsInternal(t *testing.T) {
	c, prefix := redistest.New(t)
	const budgets = "models:\n  " + haiku + ":\n    tpm: 100000\n"
	h := newHarness(t, harnessOptions{budgets: budgets, store: quota.NewRedisStore(c, quota.Options{KeyPrefix: prefix})})
	if err := c.Set(context.Background(), prefix+"{"+haiku+"}:pool:w", "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	resp := h.post(t, "/model/"+strings.ReplaceAll(haiku, ":", "%3A")+"/converse", "application/json",
		[]byte(`{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":16}}`))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("X-Amzn-ErrorType") != string(bedrock.InternalServer) {
		t.Fatalf("got %d %s %s, want 500 InternalServerException", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), body)
	}
	if strings.Contains(string(body), "WRONGTYPE") || strings.Contains(string(body), "redis") {
		t.Errorf("body quotes the store's internals: %s", body)
	}
	if !strings.Contains(h.logs.String(), "WRONGTYPE") {
		t.Errorf("access log lacks the store's error for the SRE:\n%s", h.logs.String())
	}
	if n := h.sim.Stats().Total; n != 0 {
		t.Errorf("the simulator saw %d requests, want none", n)
	}
}
