package translate

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/quotagate/quotagate/tokens"
)

// BenchmarkTranslate measures one Claude request served by Nova: the
// request rendered as Nova messages, the answer translated back, and a
// streamed answer chunk by chunk. Compare with the round trip it rides on
// (BenchmarkOverflow in proxy, docs/PERFORMANCE.md).
func BenchmarkTranslate(b *testing.B) {
	read := func(path string) []byte {
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		return data
	}
	req := read("testdata/requests/anthropic.json")
	resp := read("testdata/responses/nova.json")
	var chunks []json.RawMessage
	if err := json.Unmarshal(read("testdata/streams/nova.json"), &chunks); err != nil {
		b.Fatal(err)
	}
	const caller, target = "anthropic.claude-3-haiku-20240307-v1:0", "amazon.nova-lite-v1:0"
	b.Run("request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := NewInvoke(tokens.Anthropic, caller, tokens.Nova, target, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	t, err := NewInvoke(tokens.Anthropic, caller, tokens.Nova, target, req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("response", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := t.Response(resp, tokens.Usage{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stream", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s := t.Stream()
			for _, c := range chunks {
				if _, err := s.Chunk(c); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
