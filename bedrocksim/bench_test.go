package bedrocksim_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/quotagate/quotagate/bedrocksim"
)

// BenchmarkServeConverse measures one signed Converse request through the
// handler: SigV4 verification, parsing, the quota and the response.
func BenchmarkServeConverse(b *testing.B) {
	sim := bedrocksim.New(bedrocksim.Config{Default: bedrocksim.Limits{TPM: 1 << 40, RPM: 1 << 40}})
	body := []byte(`{"messages":[{"role":"user","content":[{"text":"Explain token buckets in one paragraph."}]}],"inferenceConfig":{"maxTokens":100}}`)
	signed := signedRequest(b, http.MethodPost, "http://bedrock.local/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", body)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := signed.Clone(signed.Context())
			r.Body = nopBody(body)
			w := httptest.NewRecorder()
			sim.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func nopBody(b []byte) readCloser { return readCloser{bytes.NewReader(b)} }
