package bedrocksim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/quotagate/quotagate/bedrock"
)

// Reading native request bodies. Bedrock validates them against a JSON
// schema per model family and answers a ValidationException worded by the
// validator: "Malformed input request: #/max_tokens: expected type: Integer,
// found: String, please reformat your input and try again." The helpers
// below produce the same wording.

// malformed is Bedrock's ValidationException for a body that fails the
// family's schema; detail names the JSON pointer and the problem.
func malformed(format string, args ...any) *bedrock.Error {
	return bedrock.Errorf(bedrock.Validation, "Malformed input request: %s, please reformat your input and try again.", fmt.Sprintf(format, args...))
}

// object is a JSON object whose members are decoded on demand; path is its
// JSON pointer ("#" for the body itself).
type object struct {
	path    string
	members map[string]json.RawMessage
}

// decodeObject reads a body that must be one JSON object.
func decodeObject(body []byte) (object, *bedrock.Error) {
	return asObject("#", body)
}

func asObject(path string, raw json.RawMessage) (object, *bedrock.Error) {
	if t := jsonType(raw); t != "JSONObject" {
		if t == "" {
			return object{}, malformed("%s: the body is not valid JSON", path)
		}
		return object{}, malformed("%s: expected type: JSONObject, found: %s", path, t)
	}
	o := object{path: path}
	if err := json.Unmarshal(raw, &o.members); err != nil {
		return object{}, malformed("%s: the body is not valid JSON", path)
	}
	return o, nil
}

// jsonType names the type of a JSON value as the schema validator does, or
// "" if it is not valid JSON.
func jsonType(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if !json.Valid(raw) || len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '{':
		return "JSONObject"
	case '[':
		return "JSONArray"
	case '"':
		return "String"
	case 't', 'f':
		return "Boolean"
	case 'n':
		return "Null"
	}
	if _, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return "Integer"
	}
	return "BigDecimal"
}

func (o object) pointer(key string) string { return o.path + "/" + key }

// has reports whether a member is present and not null.
func (o object) has(key string) bool {
	raw, ok := o.members[key]
	return ok && jsonType(raw) != "Null"
}

func (o object) missing(key string) *bedrock.Error {
	return malformed("%s: required key [%s] not found", o.path, key)
}

func (o object) wrongType(key, want string) *bedrock.Error {
	return malformed("%s: expected type: %s, found: %s", o.pointer(key), want, jsonType(o.members[key]))
}

// str reads a string member.
func (o object) str(key string, required bool) (string, *bedrock.Error) {
	if !o.has(key) {
		if required {
			return "", o.missing(key)
		}
		return "", nil
	}
	var v string
	if err := json.Unmarshal(o.members[key], &v); err != nil {
		return "", o.wrongType(key, "String")
	}
	return v, nil
}

// integer reads an integer member no smaller than minimum. It reports
// whether the member was present.
func (o object) integer(key string, minimum int) (int, bool, *bedrock.Error) {
	if !o.has(key) {
		return 0, false, nil
	}
	raw := o.members[key]
	if jsonType(raw) != "Integer" {
		return 0, false, o.wrongType(key, "Integer")
	}
	v, err := strconv.Atoi(string(bytes.TrimSpace(raw)))
	if err != nil {
		return 0, false, malformed("%s: %s is not a valid integer", o.pointer(key), raw)
	}
	if v < minimum {
		return 0, false, malformed("%s: %d is not greater or equal to %d", o.pointer(key), v, minimum)
	}
	return v, true, nil
}

// array reads an array member.
func (o object) array(key string, required bool) ([]json.RawMessage, *bedrock.Error) {
	if !o.has(key) {
		if required {
			return nil, o.missing(key)
		}
		return nil, nil
	}
	var v []json.RawMessage
	if jsonType(o.members[key]) != "JSONArray" || json.Unmarshal(o.members[key], &v) != nil {
		return nil, o.wrongType(key, "JSONArray")
	}
	return v, nil
}

// object reads an object member; absent, it is an empty object.
func (o object) object(key string) (object, *bedrock.Error) {
	if !o.has(key) {
		return object{path: o.pointer(key)}, nil
	}
	return asObject(o.pointer(key), o.members[key])
}

// Counting tokens. The simulator has its own tokenizer, deliberately simple
// and independent of the gateway's estimator, like the real service's.

// Token counting constants.
const (
	charsPerToken   = 4    // roughly what BPE tokenizers average on English
	messageOverhead = 3    // role and turn markers around each message
	promptOverhead  = 1    // the beginning-of-sequence token of a raw prompt
	mediaTokens     = 1000 // an image, document, video or audio block
)

// textTokens counts a text: one token per four characters, rounded up.
func textTokens(s string) int {
	return (utf8.RuneCountInString(s) + charsPerToken - 1) / charsPerToken
}

// contentTokens counts a message content: a string, or a list of content
// blocks (Anthropic, Nova and Converse all use lists of blocks).
func contentTokens(raw json.RawMessage) int {
	switch jsonType(raw) {
	case "String":
		var s string
		_ = json.Unmarshal(raw, &s) // valid: jsonType checked
		return textTokens(s)
	case "JSONArray":
		var blocks []json.RawMessage
		_ = json.Unmarshal(raw, &blocks)
		n := 0
		for _, b := range blocks {
			n += blockTokens(b)
		}
		return n
	case "", "Null":
		return 0
	}
	return textTokens(string(raw))
}

// blockTokens counts one content block: its text, a flat amount for media,
// nothing for a cache point, and the JSON text of anything else (tool calls
// and results, guard content, reasoning).
func blockTokens(raw json.RawMessage) int {
	var b map[string]json.RawMessage
	if json.Unmarshal(raw, &b) != nil {
		return textTokens(string(raw))
	}
	if t, ok := b["text"]; ok && jsonType(t) == "String" {
		var s string
		_ = json.Unmarshal(t, &s)
		return textTokens(s)
	}
	var typ string
	_ = json.Unmarshal(b["type"], &typ)
	for _, media := range []string{"image", "document", "video", "audio"} {
		if _, ok := b[media]; ok || typ == media {
			return mediaTokens
		}
	}
	if _, ok := b["cachePoint"]; ok || strings.HasPrefix(typ, "cache") {
		return 0
	}
	return textTokens(string(raw))
}

// parsePrompt parses the plain prompt-completion body shared by several
// families ({"prompt": ..., <maxField>: n, ...}), with def as the family's
// documented default for maxField.
func parsePrompt(body []byte, maxField string, def int) (*nativeRequest, *bedrock.Error) {
	o, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	prompt, err := o.str("prompt", true)
	if err != nil {
		return nil, err
	}
	maxTokens, ok, err := o.integer(maxField, 1)
	if err != nil {
		return nil, err
	}
	if !ok {
		maxTokens = def
	}
	return &nativeRequest{inputTokens: textTokens(prompt) + promptOverhead, maxTokens: maxTokens, api: apiText, prompt: prompt}, nil
}
