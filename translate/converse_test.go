package translate

import (
	"encoding/json"
	"errors"
	"testing"
)

// TestConverse checks that Converse bodies keep what the target can take,
// lose the model-specific fields across families, and are refused when
// the target cannot take them.
func TestConverse(t *testing.T) {
	const (
		claude       = "anthropic.claude-3-haiku-20240307-v1:0"
		claudeSonnet = "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
		llama        = "meta.llama3-8b-instruct-v1:0"
		titan        = "amazon.titan-text-express-v1"
		mistral      = "mistral.mistral-7b-instruct-v0:2"
		nova         = "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0"
	)
	text := `{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"inferenceConfig":{"maxTokens":50},` +
		`"additionalModelRequestFields":{"top_k":40},"additionalModelResponseFieldPaths":["/stop_sequence"]}`
	system := `{"system":[{"text":"Be brief."}],"messages":[{"role":"user","content":[{"text":"Hi"}]}]}`
	tools := `{"messages":[{"role":"user","content":[{"text":"Time?"}]}],"toolConfig":{"tools":[{"toolSpec":{"name":"get_time","inputSchema":{"json":{"type":"object"}}}}]}}`
	toolUse := `{"messages":[{"role":"user","content":[{"text":"Time?"}]},{"role":"assistant","content":[{"toolUse":{"toolUseId":"t1","name":"get_time","input":{}}}]}]}`
	image := `{"messages":[{"role":"user","content":[{"image":{"format":"png","source":{"bytes":"iVBORw0KGgo="}}},{"text":"What is this?"}]}]}`
	document := `{"messages":[{"role":"user","content":[{"document":{"format":"txt","name":"notes","source":{"bytes":"aGk="}}},{"text":"Summarize"}]}]}`

	t.Run("same family keeps model fields", func(t *testing.T) {
		got, err := Converse(claude, claudeSonnet, []byte(text))
		if err != nil || string(got) != text {
			t.Errorf("got %s, %v, want the body unchanged", got, err)
		}
	})
	t.Run("other family drops model fields", func(t *testing.T) {
		got, err := Converse(claude, llama, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(got, &m); err != nil {
			t.Fatal(err)
		}
		if _, ok := m["additionalModelRequestFields"]; ok {
			t.Errorf("additionalModelRequestFields kept: %s", got)
		}
		if _, ok := m["additionalModelResponseFieldPaths"]; ok {
			t.Errorf("additionalModelResponseFieldPaths kept: %s", got)
		}
		if string(m["messages"]) != `[{"role":"user","content":[{"text":"Hi"}]}]` || string(m["inferenceConfig"]) != `{"maxTokens":50}` {
			t.Errorf("the rest changed: %s", got)
		}
	})
	t.Run("nothing to drop", func(t *testing.T) {
		body := `{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}`
		if got, err := Converse(claude, titan, []byte(body)); err != nil || string(got) != body {
			t.Errorf("got %s, %v, want the body unchanged", got, err)
		}
	})
	for _, tc := range []struct {
		name, target, body, want string
	}{
		{"toolConfig into titan", titan, tools, "untranslatable: titan cannot take tool use"},
		{"toolUse into llama 3", llama, toolUse, "untranslatable: meta cannot take tool use"},
		{"images into titan", titan, image, "untranslatable: titan cannot take images"},
		{"images into llama 3", llama, image, "untranslatable: meta cannot take images"},
		{"images into mistral 7b", mistral, image, "untranslatable: mistral cannot take images"},
		{"system into mistral 7b", mistral, system, "untranslatable: mistral cannot take a system prompt"},
		{"system into titan", titan, system, "untranslatable: titan cannot take a system prompt"},
		{"documents into nova micro", "amazon.nova-micro-v1:0", document, "untranslatable: nova cannot take documents"},
		{"images into an unknown model", "deepseek.r1-v1:0", image, "untranslatable: deepseek.r1-v1:0 cannot take images"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Converse(claude, tc.target, []byte(tc.body))
			if !errors.Is(err, ErrUntranslatable) || err.Error() != tc.want {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, target, body string }{
		{"images into nova (ARN)", nova, image},
		{"tools into mistral large", "mistral.mistral-large-2407-v1:0", tools},
		{"system into llama 3", llama, system},
		{"documents into titan", titan, document},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Converse(claude, tc.target, []byte(tc.body)); err != nil {
				t.Errorf("got %v, want the body accepted", err)
			}
		})
	}
}
