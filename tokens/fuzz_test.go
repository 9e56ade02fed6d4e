package tokens

import (
	"encoding/base64"
	"errors"
	"testing"
)

var fuzzFamilies = []Family{Unknown, Anthropic, Meta, Titan, Nova, Mistral, Cohere, Converse}

// FuzzParseInvoke feeds arbitrary bodies to every family's parser. Parsing
// must never panic, must refuse a body only with an error wrapping
// ErrMalformed, and must never report negative figures. The same bytes go
// through the response and stream readers, which must never panic either.
func FuzzParseInvoke(f *testing.F) {
	seeds := []string{
		`{"anthropic_version":"bedrock-2023-05-31","max_tokens":1024,"system":"Be terse.","messages":[{"role":"user","content":[{"type":"text","text":"Hi"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]}],"tools":[{"name":"t","input_schema":{"type":"object"}}]}`,
		`{"prompt":"\n\nHuman: Hi\n\nAssistant:","max_tokens_to_sample":300}`,
		`{"prompt":"<|begin_of_text|>Hi","max_gen_len":512,"images":["AAAA"]}`,
		`{"inputText":"User: Hi\nBot:","textGenerationConfig":{"maxTokenCount":512}}`,
		`{"schemaVersion":"messages-v1","system":[{"text":"x"}],"messages":[{"role":"user","content":[{"text":"Hi"},{"document":{"format":"pdf","name":"d","source":{"bytes":"AAAA"}}}]}],"inferenceConfig":{"max_new_tokens":10}}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"Hi"},{"type":"image_url","image_url":{"url":"data:x"}}]}],"max_tokens":5}`,
		`{"message":"Hi","chat_history":[{"role":"USER","message":"x"}],"max_tokens":5}`,
		`{"messages":[{"role":"user","content":[{"toolResult":{"toolUseId":"t","content":[{"json":{"a":1}}]}}]}],"inferenceConfig":{"maxTokens":5},"additionalModelRequestFields":{"max_tokens":7}}`,
		`{"usage":{"input_tokens":1},"amazon-bedrock-invocationMetrics":{"inputTokenCount":2}}`,
		`{"max_tokens":-1}`,
		`{"max_tokens":"1"}`,
		`{"a":"\"max_tokens\":","max_tokens":1e9}`,
		`[]`,
		`null`,
		``,
		`{"x":`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		fam := fuzzFamilies[int(which)%len(fuzzFamilies)]
		r, err := ParseInvoke(fam, "anthropic.claude-3-haiku-20240307-v1:0", body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseInvoke(%q) error %v does not wrap ErrMalformed", fam, err)
			}
		} else if r.InputTokens < 0 || r.MaxTokens < 0 {
			t.Fatalf("ParseInvoke(%q) = %+v, want no negative figures", fam, r)
		}

		enc := base64.StdEncoding.EncodeToString(body)
		if _, err := ParseCountTokens(fam, "x", []byte(`{"input":{"invokeModel":{"body":"`+enc+`"}}}`)); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseCountTokens error %v does not wrap ErrMalformed", err)
		}

		UsageFromInvoke(fam, body)
		s := NewStreamUsage(fam)
		s.Observe("chunk", []byte(`{"bytes":"`+enc+`"}`))
		s.Observe("chunk", body)
		s.Observe("metadata", body)
		s.Observe("messageStop", body)
		s.Usage()
	})
}
