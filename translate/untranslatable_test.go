package translate

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/quotagate/quotagate/tokens"
)

// TestNewInvokeUntranslatable checks that what a target cannot take is
// refused with ErrUntranslatable, naming what, instead of being dropped.
func TestNewInvokeUntranslatable(t *testing.T) {
	const (
		claude  = "anthropic.claude-3-haiku-20240307-v1:0"
		llama   = "meta.llama3-8b-instruct-v1:0"
		titan   = "amazon.titan-text-express-v1"
		mistral = "mistral.mistral-7b-instruct-v0:2"
		nova    = "amazon.nova-lite-v1:0"
	)
	image := `{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},{"type":"text","text":"What is this?"}]}]}`
	tools := `{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"tools":[{"name":"get_time","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":"What time is it?"}]}`
	toolResult := `{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"messages":[{"role":"user","content":"Time?"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"get_time","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"noon"}]}]}`
	novaTools := `{"schemaVersion":"messages-v1","messages":[{"role":"user","content":[{"text":"Time?"}]}],"toolConfig":{"tools":[{"toolSpec":{"name":"get_time","inputSchema":{"json":{"type":"object"}}}}]}}`
	mistralTools := `{"messages":[{"role":"user","content":"Time?"}],"tools":[{"type":"function","function":{"name":"get_time","parameters":{}}}]}`
	stop := `{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"stop_sequences":["END"],"messages":[{"role":"user","content":"Hi"}]}`
	titanStop := `{"inputText":"Hi","textGenerationConfig":{"stopSequences":["User:"]}}`
	for _, tc := range []struct {
		name        string
		from        tokens.Family
		callerModel string
		to          tokens.Family
		targetModel string
		body        string
		want        string
	}{
		{"images into llama", tokens.Anthropic, claude, tokens.Meta, llama, image, "meta cannot take images"},
		{"images into titan", tokens.Anthropic, claude, tokens.Titan, titan, image, "titan cannot take images"},
		{"images into mistral 7b", tokens.Anthropic, claude, tokens.Mistral, mistral, image, "mistral cannot take images"},
		{"images into nova", tokens.Anthropic, claude, tokens.Nova, nova, image, "images: not translated from anthropic to nova"},
		{"tools into llama", tokens.Anthropic, claude, tokens.Meta, llama, tools, "meta cannot take tool use"},
		{"tools into titan", tokens.Anthropic, claude, tokens.Titan, titan, tools, "titan cannot take tool use"},
		{"tools into mistral 7b", tokens.Anthropic, claude, tokens.Mistral, mistral, tools, "mistral cannot take tool use"},
		{"tool results into titan", tokens.Anthropic, claude, tokens.Titan, titan, toolResult, "titan cannot take tool use"},
		{"nova tools into llama", tokens.Nova, nova, tokens.Meta, llama, novaTools, "meta cannot take tool use"},
		{"mistral tools into titan", tokens.Mistral, "mistral.mistral-large-2407-v1:0", tokens.Titan, titan, mistralTools, "titan cannot take tool use"},
		{"stop sequences into llama", tokens.Anthropic, claude, tokens.Meta, llama, stop, "meta cannot take stop sequences"},
		{"titan stop sequences into llama", tokens.Titan, titan, tokens.Meta, llama, titanStop, "meta cannot take stop sequences"},
		{"cohere caller", tokens.Cohere, "cohere.command-r-v1:0", tokens.Meta, llama, `{"message":"Hi"}`, "cohere bodies are not translated"},
		{"unknown target", tokens.Anthropic, claude, tokens.Unknown, "deepseek.r1-v1:0", stop, "unknown bodies are not translated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewInvoke(tc.from, tc.callerModel, tc.to, tc.targetModel, []byte(tc.body))
			if !errors.Is(err, ErrUntranslatable) {
				t.Fatalf("got error %v, want one wrapping ErrUntranslatable", err)
			}
			if want := "untranslatable: " + tc.want; err.Error() != want {
				t.Errorf("got %q, want %q", err, want)
			}
		})
	}
}

// TestNewInvokeMalformed checks that a body the caller's family cannot
// parse is reported as the caller's fault.
func TestNewInvokeMalformed(t *testing.T) {
	for _, body := range []string{`[]`, `{"max_tokens":"ten"}`, `{"messages":[{"role":"user","content":5}]}`} {
		_, err := NewInvoke(tokens.Anthropic, "anthropic.claude-3-haiku-20240307-v1:0", tokens.Meta, "meta.llama3-8b-instruct-v1:0", []byte(body))
		if !errors.Is(err, tokens.ErrMalformed) {
			t.Errorf("%s: got %v, want an error wrapping tokens.ErrMalformed", body, err)
		}
	}
}

// TestPassThrough checks that one family to itself changes nothing.
func TestPassThrough(t *testing.T) {
	body := []byte(`{"prompt":"[INST] Hi [/INST]","stop":["x"]}`)
	inv, err := NewInvoke(tokens.Mistral, "mistral.mistral-7b-instruct-v0:2", tokens.Mistral, "mistral.mixtral-8x7b-instruct-v0:1", body)
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.Body(); string(got) != string(body) {
		t.Errorf("Body: got %s, want the caller's body", got)
	}
	resp := []byte(`{"outputs":[{"text":"Hello","stop_reason":"stop"}]}`)
	if got, err := inv.Response(resp, tokens.Usage{}); err != nil || string(got) != string(resp) {
		t.Errorf("Response: got %s, %v, want the target's body", got, err)
	}
	chunks, err := inv.Stream().Chunk(resp)
	if err != nil || len(chunks) != 1 || string(chunks[0]) != string(resp) {
		t.Errorf("Chunk: got %q, %v, want the target's chunk", chunks, err)
	}
}

// TestPromptParsing checks that prompt families' templates are read back
// into turns, and that a prompt without a template is one user turn.
func TestPromptParsing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		from   tokens.Family
		model  string
		body   string
		system string
		turns  []string // "user: text" / "assistant: text"
	}{
		{"llama 2", tokens.Meta, "meta.llama2-13b-chat-v1",
			`{"prompt":"<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello! </s><s>[INST] Bye [/INST]"}`,
			"Be brief.", []string{"user: Hi there", "assistant: Hello!", "user: Bye"}},
		{"llama 3 prefill", tokens.Meta, "meta.llama3-8b-instruct-v1:0",
			`{"prompt":"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nCount<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nOne, two"}`,
			"", []string{"user: Count", "assistant: One, two"}},
		{"llama plain", tokens.Meta, "meta.llama3-8b-instruct-v1:0", `{"prompt":"Tell me a joke."}`, "", []string{"user: Tell me a joke."}},
		{"mistral", tokens.Mistral, "mistral.mistral-7b-instruct-v0:2",
			`{"prompt":"<s>[INST] Hi [/INST] Hello</s>[INST] Bye [/INST]"}`, "", []string{"user: Hi", "assistant: Hello", "user: Bye"}},
		{"mistral plain", tokens.Mistral, "mistral.mistral-7b-instruct-v0:2", `{"prompt":"Summarize this."}`, "", []string{"user: Summarize this."}},
		{"titan", tokens.Titan, "amazon.titan-text-express-v1",
			`{"inputText":"Be brief.\nUser: Hi\nthere\nBot: Hello\nUser: Bye\nBot:"}`, "Be brief.", []string{"user: Hi\nthere", "assistant: Hello", "user: Bye"}},
		{"titan plain", tokens.Titan, "amazon.titan-text-express-v1", `{"inputText":"Write a haiku."}`, "", []string{"user: Write a haiku."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := codecs[tc.from].readRequest(tc.model, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			var turns []string
			for _, m := range c.messages {
				turns = append(turns, string(m.role)+": "+m.text())
			}
			if c.system != tc.system || strings.Join(turns, "|") != strings.Join(tc.turns, "|") {
				t.Errorf("got system %q turns %q, want %q %q", c.system, turns, tc.system, tc.turns)
			}
		})
	}
}

// TestMaxTokens checks the max tokens rendered: none when the caller set
// none (the target's default applies), the caller family's default for
// Anthropic, which requires one, and never more than the target's largest.
func TestMaxTokens(t *testing.T) {
	for _, tc := range []struct {
		name        string
		from        tokens.Family
		callerModel string
		to          tokens.Family
		targetModel string
		body        string
		field       string
		want        any
	}{
		{"unset into llama", tokens.Titan, "amazon.titan-text-express-v1", tokens.Meta, "meta.llama3-8b-instruct-v1:0", `{"inputText":"Hi"}`, "max_gen_len", nil},
		{"titan default into claude", tokens.Titan, "amazon.titan-text-express-v1", tokens.Anthropic, "anthropic.claude-3-haiku-20240307-v1:0", `{"inputText":"Hi"}`, "max_tokens", 512.0},
		{"nova default lowered to claude 3's 4096", tokens.Nova, "amazon.nova-lite-v1:0", tokens.Anthropic, "anthropic.claude-3-haiku-20240307-v1:0",
			`{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}`, "max_tokens", 4096.0},
		{"set, lowered to llama 3's 2048", tokens.Anthropic, "anthropic.claude-3-5-sonnet-20240620-v1:0", tokens.Meta, "meta.llama3-8b-instruct-v1:0",
			`{"anthropic_version":"bedrock-2023-05-31","max_tokens":8000,"messages":[{"role":"user","content":"Hi"}]}`, "max_gen_len", 2048.0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := NewInvoke(tc.from, tc.callerModel, tc.to, tc.targetModel, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(inv.Body(), &m); err != nil {
				t.Fatal(err)
			}
			if got := m[tc.field]; got != tc.want {
				t.Errorf("%s: got %v, want %v in %s", tc.field, got, tc.want, inv.Body())
			}
		})
	}
}

// TestStopReasons checks the neutral stop reasons both ways, through a
// response of each target family.
func TestStopReasons(t *testing.T) {
	for _, tc := range []struct {
		from   tokens.Family
		to     tokens.Family
		target string
		want   string
	}{
		{tokens.Anthropic, tokens.Meta, `{"generation":"x","prompt_token_count":3,"generation_token_count":5,"stop_reason":"length"}`, "max_tokens"},
		{tokens.Anthropic, tokens.Titan, `{"inputTextTokenCount":3,"results":[{"tokenCount":5,"outputText":"x","completionReason":"STOP_CRITERIA_MET"}]}`, "stop_sequence"},
		{tokens.Anthropic, tokens.Nova, `{"output":{"message":{"role":"assistant","content":[{"text":"x"}]}},"stopReason":"content_filtered","usage":{"inputTokens":3,"outputTokens":5}}`, "refusal"},
		{tokens.Titan, tokens.Anthropic, `{"type":"message","role":"assistant","content":[{"type":"text","text":"x"}],"stop_reason":"max_tokens","usage":{"input_tokens":3,"output_tokens":5}}`, "LENGTH"},
		{tokens.Titan, tokens.Nova, `{"output":{"message":{"role":"assistant","content":[{"text":"x"}]}},"stopReason":"content_filtered","usage":{"inputTokens":3,"outputTokens":5}}`, "CONTENT_FILTERED"},
		{tokens.Nova, tokens.Mistral, `{"outputs":[{"text":"x","stop_reason":"length"}]}`, "max_tokens"},
		{tokens.Meta, tokens.Nova, `{"output":{"message":{"role":"assistant","content":[{"text":"x"}]}},"stopReason":"max_tokens","usage":{"inputTokens":3,"outputTokens":5}}`, "length"},
		{tokens.Mistral, tokens.Titan, `{"inputTextTokenCount":3,"results":[{"tokenCount":5,"outputText":"x","completionReason":"FINISH"}]}`, "stop"},
	} {
		t.Run(string(tc.from)+"_from_"+string(tc.to), func(t *testing.T) {
			req := []byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"messages":[{"role":"user","content":"Hi"}]}`)
			callerRequests := map[tokens.Family]string{
				tokens.Anthropic: string(req),
				tokens.Titan:     `{"inputText":"Hi"}`,
				tokens.Nova:      `{"schemaVersion":"messages-v1","messages":[{"role":"user","content":[{"text":"Hi"}]}]}`,
				tokens.Meta:      `{"prompt":"Hi"}`,
				tokens.Mistral:   `{"prompt":"[INST] Hi [/INST]"}`,
			}
			inv, err := NewInvoke(tc.from, goldenModels[tc.from], tc.to, goldenModels[tc.to], []byte(callerRequests[tc.from]))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := inv.Response([]byte(tc.target), tokens.Usage{InputTokens: 3, OutputTokens: 5, Known: true})
			if err != nil {
				t.Fatal(err)
			}
			if got := tokens.UsageFromInvoke(tc.from, resp).StopReason; got != tc.want {
				t.Errorf("got stop reason %q, want %q in %s", got, tc.want, resp)
			}
		})
	}
}

// TestStreamFirstText checks that text reaches the caller in the call that
// brings it, before the target has finished, and that an Anthropic caller
// gets its opening events first.
func TestStreamFirstText(t *testing.T) {
	inv, err := NewInvoke(tokens.Anthropic, goldenModels[tokens.Anthropic], tokens.Meta, goldenModels[tokens.Meta],
		[]byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"messages":[{"role":"user","content":"Hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := inv.Stream().Chunk([]byte(`{"generation":"Hello","prompt_token_count":7,"generation_token_count":1,"stop_reason":null}`))
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, c := range out {
		var e struct{ Type string }
		_ = json.Unmarshal(c, &e)
		types = append(types, e.Type)
	}
	if got, want := strings.Join(types, ","), "message_start,content_block_start,content_block_delta"; got != want {
		t.Fatalf("first chunk gave %s, want %s", got, want)
	}
	if !strings.Contains(string(out[0]), `"input_tokens":7`) || !strings.Contains(string(out[2]), `"text":"Hello"`) {
		t.Errorf("got %s", out)
	}
}
