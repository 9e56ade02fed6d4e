package bedrocksim

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"

	"github.com/quotagate/quotagate/bedrock"
)

// The Converse API: one request and response shape for every model
// (ConverseRequest and ConverseResponse in the Bedrock Runtime API
// reference), validated the way Bedrock validates it before the model sees
// it.

// converseRequest is the part of a Converse body the simulator reads.
type converseRequest struct {
	Messages []struct {
		Role    string            `json:"role"`
		Content []json.RawMessage `json:"content"`
	} `json:"messages"`
	System          []json.RawMessage `json:"system"`
	ToolConfig      json.RawMessage   `json:"toolConfig"`
	InferenceConfig *struct {
		MaxTokens *int `json:"maxTokens"`
	} `json:"inferenceConfig"`
}

// constraint is the Smithy validation message for one bad member.
func constraint(value any, member, rule string) *bedrock.Error {
	return bedrock.Errorf(bedrock.Validation, "1 validation error detected: Value '%v' at '%s' failed to satisfy constraint: Member must %s", value, member, rule)
}

// parseConverse validates a Converse or ConverseStream body and counts its
// input. Without inferenceConfig.maxTokens the family's default applies.
func parseConverse(fam family, body []byte) (*nativeRequest, *bedrock.Error) {
	var c converseRequest
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, malformed("#: the body is not a valid Converse request (%v)", err)
	}
	n, err := converseTokens(&c)
	if err != nil {
		return nil, err
	}
	req := &nativeRequest{inputTokens: n, maxTokens: fam.converseMaxTokens()}
	if c.InferenceConfig != nil && c.InferenceConfig.MaxTokens != nil {
		if v := *c.InferenceConfig.MaxTokens; v < 1 {
			return nil, constraint(v, "inferenceConfig.maxTokens", "have value greater than or equal to 1")
		}
		req.maxTokens = *c.InferenceConfig.MaxTokens
	}
	return req, nil
}

// converseTokens checks the conversation and counts it: the text of every
// block of every message and of the system prompt, plus the tool
// definitions.
func converseTokens(c *converseRequest) (int, *bedrock.Error) {
	if len(c.Messages) == 0 || c.Messages[0].Role != "user" {
		return 0, bedrock.Errorf(bedrock.Validation, "A conversation must start with a user message. Try again with a conversation that starts with a user message.")
	}
	n := 0
	for i, m := range c.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			return 0, constraint(m.Role, "messages."+strconv.Itoa(i+1)+".member.role", "satisfy enum value set: [user, assistant]")
		}
		if i > 0 && m.Role == c.Messages[i-1].Role {
			return 0, bedrock.Errorf(bedrock.Validation, "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.")
		}
		if len(m.Content) == 0 {
			return 0, bedrock.Errorf(bedrock.Validation, "The content field in the Message object at messages.%d is empty. Add a ContentBlock object to the content field and try again.", i)
		}
		n += messageOverhead
		for _, b := range m.Content {
			n += blockTokens(b)
		}
	}
	for _, b := range c.System {
		n += blockTokens(b)
	}
	if len(c.ToolConfig) > 0 && jsonType(c.ToolConfig) == "JSONObject" {
		n += textTokens(string(c.ToolConfig))
	}
	return n, nil
}

// converseResponse is the Converse response body.
func converseResponse(g *generation, latency time.Duration) map[string]any {
	return map[string]any{
		"output": map[string]any{"message": map[string]any{
			"role":    "assistant",
			"content": []any{map[string]any{"text": g.text()}},
		}},
		"stopReason": g.converseStop(),
		"usage":      converseUsage(g),
		"metrics":    map[string]any{"latencyMs": latency.Milliseconds()},
	}
}

func converseUsage(g *generation) map[string]any {
	return map[string]any{
		"inputTokens":  g.inputTokens,
		"outputTokens": g.outputTokens(),
		"totalTokens":  g.inputTokens + g.outputTokens(),
	}
}

// countTokens answers CountTokens: the input tokens the same InvokeModel or
// Converse request would be charged, counted exactly as those operations
// count them.
func countTokens(fam family, model string, body []byte) (int, *bedrock.Error) {
	var c struct {
		Input *struct {
			InvokeModel *struct {
				Body *string `json:"body"`
			} `json:"invokeModel"`
			Converse *converseRequest `json:"converse"`
		} `json:"input"`
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return 0, malformed("#: the body is not a valid CountTokens request (%v)", err)
	}
	switch {
	case c.Input == nil:
		return 0, constraint(nil, "input", "not be null")
	case c.Input.InvokeModel != nil:
		if c.Input.InvokeModel.Body == nil {
			return 0, constraint(nil, "input.invokeModel.body", "not be null")
		}
		native, err := base64.StdEncoding.DecodeString(*c.Input.InvokeModel.Body)
		if err != nil {
			return 0, bedrock.Errorf(bedrock.Validation, "The body of input.invokeModel is not valid base64.")
		}
		req, berr := fam.parse(model, native)
		if berr != nil {
			return 0, berr
		}
		return req.inputTokens, nil
	case c.Input.Converse != nil:
		return converseTokens(c.Input.Converse)
	}
	return 0, bedrock.Errorf(bedrock.Validation, "The input must contain exactly one of invokeModel or converse.")
}

// converseStream is the ConverseStream event sequence: messageStart,
// contentBlockDelta..., contentBlockStop, messageStop and metadata (whose
// metrics are filled in when it is sent).
func converseStream(g *generation) []streamEvent {
	out := []streamEvent{{kind: "messageStart", body: map[string]any{"role": "assistant"}}}
	for _, d := range g.deltas() {
		out = append(out, streamEvent{kind: "contentBlockDelta", body: map[string]any{
			"contentBlockIndex": 0,
			"delta":             map[string]any{"text": d.text},
		}, tokens: d.tokens})
	}
	return append(out,
		streamEvent{kind: "contentBlockStop", body: map[string]any{"contentBlockIndex": 0}},
		streamEvent{kind: "messageStop", body: map[string]any{"stopReason": g.converseStop()}},
		streamEvent{kind: "metadata", body: map[string]any{"usage": converseUsage(g)}},
	)
}
