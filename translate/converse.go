package translate

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/quotagate/quotagate/tokens"
)

// Converse prepares a Converse or ConverseStream request body written for
// callerModel so that targetModel can take it. The Converse shape is the
// same for every model, so only two things can stand in the way:
// additionalModelRequestFields and additionalModelResponseFieldPaths, which
// are model-specific and are dropped when the two models' families differ
// (a Claude "top_k" or "thinking" would fail a Llama), and what the target
// cannot take at all (tools, images, documents, video, a system prompt),
// which gives an error wrapping ErrUntranslatable. Within one family the
// body is returned unchanged.
func Converse(callerModel, targetModel string, body []byte) ([]byte, error) {
	if sameFamily(callerModel, targetModel) {
		return body, nil
	}
	var fields map[string]json.RawMessage
	if !bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{")) {
		return nil, malformed("must be a JSON object")
	}
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, malformed("%v", err)
	}
	var req struct {
		Messages []struct {
			Content []converseBlock `json:"content"`
		} `json:"messages"`
		System     []converseBlock `json:"system"`
		ToolConfig json.RawMessage `json:"toolConfig"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, malformed("%v", err)
	}
	var uses chat
	if len(req.ToolConfig) > 0 && string(req.ToolConfig) != "null" {
		uses.need(featTools)
	}
	for _, m := range req.Messages {
		for _, b := range m.Content {
			b.uses(&uses)
		}
	}
	for _, b := range req.System {
		if b.Text != nil {
			uses.need(featSystem)
		}
	}
	caps := capabilitiesOf(targetModel)
	to := tokens.FamilyOf(targetModel)
	for _, what := range uses.needs {
		if !caps.can(what) {
			return nil, untranslatable("%s cannot take %s", modelName(to, targetModel), what)
		}
	}
	_, extra := fields["additionalModelRequestFields"]
	_, paths := fields["additionalModelResponseFieldPaths"]
	if !extra && !paths {
		return body, nil
	}
	delete(fields, "additionalModelRequestFields")
	delete(fields, "additionalModelResponseFieldPaths")
	return json.Marshal(fields)
}

// converseBlock is a ContentBlock, read for what it needs of the model.
// Guard content, cache points and citations need nothing model-specific.
type converseBlock struct {
	Text       *string         `json:"text"`
	Image      json.RawMessage `json:"image"`
	Document   json.RawMessage `json:"document"`
	Video      json.RawMessage `json:"video"`
	Audio      json.RawMessage `json:"audio"`
	ToolUse    json.RawMessage `json:"toolUse"`
	ToolResult *struct {
		Content []converseBlock `json:"content"`
	} `json:"toolResult"`
	ReasoningContent json.RawMessage `json:"reasoningContent"`
}

func (b *converseBlock) uses(c *chat) {
	switch {
	case b.Image != nil:
		c.need(featImages)
	case b.Document != nil:
		c.need(featDocuments)
	case b.Video != nil:
		c.need(featVideo)
	case b.Audio != nil:
		c.need("audio")
	case b.ToolUse != nil:
		c.need(featTools)
	case b.ToolResult != nil:
		c.need(featTools)
		for _, inner := range b.ToolResult.Content {
			inner.uses(c)
		}
	case b.ReasoningContent != nil:
		// Reasoning blocks are signed by the model that wrote them.
		c.need("reasoning content")
	}
}

// sameFamily reports whether two models take the same model-specific
// fields. Models of no known family are compared by provider.
func sameFamily(a, b string) bool {
	fa, fb := tokens.FamilyOf(a), tokens.FamilyOf(b)
	if fa != tokens.Unknown || fb != tokens.Unknown {
		return fa == fb
	}
	ia, okA := foundationID(a)
	ib, okB := foundationID(b)
	if !okA || !okB {
		return a == b
	}
	pa, _, _ := strings.Cut(ia, ".")
	pb, _, _ := strings.Cut(ib, ".")
	return pa == pb
}

// modelName names a target in messages: its family, or its id when the
// family is unknown.
func modelName(f tokens.Family, model string) string {
	if f == tokens.Unknown {
		return model
	}
	return string(f)
}
