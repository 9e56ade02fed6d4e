package tokens

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestParseCountTokens(t *testing.T) {
	native := `{"anthropic_version":"bedrock-2023-05-31","max_tokens":500,"system":"You are terse.","messages":[{"role":"user","content":"What is a token?"}]}`
	enc := base64.StdEncoding.EncodeToString([]byte(native))
	want := est("You are terse.", "What is a token?")

	for _, c := range []struct {
		name   string
		f      Family
		body   string
		family Family
	}{
		{"invokeModel", Anthropic, `{"input":{"invokeModel":{"body":"` + enc + `"}}}`, Anthropic},
		{"invokeModel with escaped slashes", Anthropic, `{"input":{"invokeModel":{"body":"` + strings.ReplaceAll(enc, "/", `\/`) + `"}}}`, Anthropic},
		{"invokeModel unpadded", Anthropic, `{"input":{"invokeModel":{"body":"` + strings.TrimRight(enc, "=") + `"}}}`, Anthropic},
		{"converse", Anthropic, `{"input":{"converse":{"system":[{"text":"You are terse."}],"messages":[{"role":"user","content":[{"text":"What is a token?"}]}]}}}`, Converse},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseCountTokens(c.f, haiku3, []byte(c.body))
			if err != nil {
				t.Fatalf("err = %v, want nil", err)
			}
			if got.Family != c.family || got.MaxTokens != 0 || got.MaxTokensSet {
				t.Errorf("Family, MaxTokens, MaxTokensSet = %q, %d, %v, want %q, 0, false", got.Family, got.MaxTokens, got.MaxTokensSet, c.family)
			}
			if got.InputTokens < want || got.InputTokens > want+20 {
				t.Errorf("InputTokens = %d, want %d..%d", got.InputTokens, want, want+20)
			}
		})
	}
}

func TestParseCountTokensMalformed(t *testing.T) {
	bad := base64.StdEncoding.EncodeToString([]byte(`{"max_tokens":"many"}`))
	notObject := base64.StdEncoding.EncodeToString([]byte(`[1]`))
	for _, c := range []malformedCase{
		{"missing input", `{}`, "input: is required"},
		{"null input", `{"input":null}`, "input: is required"},
		{"empty input", `{"input":{}}`, "input: must have one of invokeModel and converse"},
		{"both members", `{"input":{"invokeModel":{"body":"e30="},"converse":{"messages":[]}}}`, "input: must have exactly one"},
		{"missing body", `{"input":{"invokeModel":{}}}`, "input.invokeModel.body: is required"},
		{"body not a string", `{"input":{"invokeModel":{"body":{"messages":[]}}}}`, "input.invokeModel.body: must be a string, not a JSON object"},
		{"bad base64", `{"input":{"invokeModel":{"body":"not base64!!"}}}`, "input.invokeModel.body: must be base64"},
		{"bad native body", `{"input":{"invokeModel":{"body":"` + bad + `"}}}`, "input.invokeModel.body.max_tokens: must be an integer"},
		{"native body not an object", `{"input":{"invokeModel":{"body":"` + notObject + `"}}}`, "input.invokeModel.body: must be a JSON object"},
		{"bad converse", `{"input":{"converse":{"messages":"hi"}}}`, "input.converse.messages: must be an array"},
		{"not JSON", `input=1`, "must be a JSON object"},
		{"cut short", `{"input":{"converse":`, "invalid JSON"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseCountTokens(Anthropic, haiku3, []byte(c.body))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want one wrapping ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %q, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestMalformedErrorText(t *testing.T) {
	_, err := ParseInvoke(Anthropic, haiku3, []byte(`{"max_tokens":"1024"}`))
	want := "malformed request body: max_tokens: must be an integer, not a JSON string"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}
