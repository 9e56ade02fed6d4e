package tokens_test

import (
	"fmt"
	"net/http"

	"github.com/quotagate/quotagate/tokens"
)

// http.Header is what the gateway passes to UsageFromHeaders.
var _ tokens.Header = http.Header(nil)

// The gateway's flow around one InvokeModel call: reserve from the request,
// settle from the response.
func Example() {
	model := "us.anthropic.claude-3-5-sonnet-20241022-v2:0"
	body := []byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":1024,"messages":[{"role":"user","content":"Hello, Claude"}]}`)

	f := tokens.FamilyOf(model)
	req, err := tokens.ParseInvoke(f, model, body)
	if err != nil {
		fmt.Println(err) // answered as a ValidationException
		return
	}
	fmt.Println(req.Family, req.MaxTokens, req.InputTokens > 0)

	respHeader := http.Header{}
	respHeader.Set("X-Amzn-Bedrock-Input-Token-Count", "12")
	respHeader.Set("X-Amzn-Bedrock-Output-Token-Count", "9")
	respBody := []byte(`{"type":"message","role":"assistant","content":[{"type":"text","text":"Hello!"}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":9}}`)

	used := tokens.UsageFromInvoke(f, respBody).Merge(tokens.UsageFromHeaders(respHeader))
	fmt.Printf("%+v\n", used)
	// Output:
	// anthropic 1024 true
	// {InputTokens:12 OutputTokens:9 CacheReadInputTokens:0 CacheWriteInputTokens:0 StopReason:end_turn Known:true}
}

func ExampleUsageFromHeaders() {
	h := http.Header{}
	// http.Header canonicalizes names, so any spelling is found.
	h.Set("x-amzn-bedrock-input-token-count", "42")
	h.Set("x-amzn-bedrock-output-token-count", "7")
	h.Set("x-amzn-bedrock-cache-read-input-token-count", "1000")
	fmt.Printf("%+v\n", tokens.UsageFromHeaders(h))
	// Output: {InputTokens:42 OutputTokens:7 CacheReadInputTokens:1000 CacheWriteInputTokens:0 StopReason: Known:true}
}

func ExampleParseInvoke_malformed() {
	_, err := tokens.ParseInvoke(tokens.Meta, "meta.llama3-8b-instruct-v1:0", []byte(`{"prompt":"Hi","max_gen_len":"512"}`))
	fmt.Println(err)
	// Output: malformed request body: max_gen_len: must be an integer, not a JSON string
}
