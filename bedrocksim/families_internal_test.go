package bedrocksim

import (
	"fmt"
	"testing"
)

func TestLookupFamily(t *testing.T) {
	cases := map[string]string{
		"anthropic.claude-3-haiku-20240307-v1:0":         "bedrocksim.anthropic",
		"us.anthropic.claude-3-5-sonnet-20241022-v2:0":   "bedrocksim.anthropic",
		"global.anthropic.claude-sonnet-4-20250514-v1:0": "bedrocksim.anthropic",
		"anthropic.claude-v2:1":                          "bedrocksim.anthropic",
		"meta.llama3-1-70b-instruct-v1:0":                "bedrocksim.llama",
		"us.meta.llama3-2-90b-instruct-v1:0":             "bedrocksim.llama",
		"amazon.titan-text-premier-v1:0":                 "bedrocksim.titan",
		"amazon.titan-tg1-large":                         "bedrocksim.titan",
		"amazon.nova-pro-v1:0":                           "bedrocksim.nova",
		"eu.amazon.nova-lite-v1:0":                       "bedrocksim.nova",
		"mistral.mistral-large-2402-v1:0":                "bedrocksim.mistral",
		"cohere.command-light-text-v14":                  "bedrocksim.cohere",
		"cohere.command-r-plus-v1:0":                     "bedrocksim.commandR",
		"amazon.nova-canvas-v1:0":                        "<nil>",
		"amazon.titan-embed-text-v2:0":                   "<nil>",
		"cohere.embed-english-v3":                        "<nil>",
		"ai21.jamba-1-5-large-v1:0":                      "<nil>",
		"nonsense":                                       "<nil>",
		"us.nonsense":                                    "<nil>",
	}
	for id, want := range cases {
		f, _ := lookupFamily(id)
		if got := fmt.Sprintf("%T", f); got != want {
			t.Errorf("%s: got %s, want %s", id, got, want)
		}
	}
}

func TestAnthropicModel(t *testing.T) {
	cases := map[string]string{
		"anthropic.claude-3-haiku-20240307-v1:0":       "claude-3-haiku-20240307",
		"us.anthropic.claude-3-5-sonnet-20241022-v2:0": "claude-3-5-sonnet-20241022",
		"anthropic.claude-3-sonnet-20240229-v1:0:28k":  "claude-3-sonnet-20240229",
		"anthropic.claude-v2:1":                        "claude-v2:1",
		"anthropic.claude-instant-v1":                  "claude-instant-v1",
	}
	for id, want := range cases {
		if got := anthropicModel(id); got != want {
			t.Errorf("%s: got %s, want %s", id, got, want)
		}
	}
}

func TestTokenCounting(t *testing.T) {
	cases := []struct {
		content string
		want    int
	}{
		{`"hello"`, 2},
		{`"héllo wörld!"`, 3}, // runes, not bytes
		{`[{"type":"text","text":"hello"},{"type":"text","text":"abcd"}]`, 3},
		{`[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]`, mediaTokens},
		{`[{"image":{"format":"png","source":{"bytes":"AAAA"}}},{"text":"hi"}]`, mediaTokens + 1},
		{`[{"cachePoint":{"type":"default"}}]`, 0},
		{`[{"toolUse":{"toolUseId":"t1","name":"f","input":{}}}]`, 13}, // its JSON text
		{`null`, 0},
	}
	for _, tc := range cases {
		if got := contentTokens([]byte(tc.content)); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.content, got, tc.want)
		}
	}
}
