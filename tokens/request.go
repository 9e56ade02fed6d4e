package tokens

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// Request is what admission needs to know about a request body.
type Request struct {
	Family       Family
	InputTokens  int  // estimated input tokens (text, system prompt, tool definitions, images)
	MaxTokens    int  // requested max output tokens, or the family/model default when absent
	MaxTokensSet bool // whether the body named max tokens
}

// ErrMalformed is wrapped by every parse error caused by the caller's body
// (invalid JSON, wrong JSON types for fields we read, not a JSON object, negative max tokens,
// missing required structure such as CountTokens' input). The error's message
// reads "malformed request body: <field path>: <what is wrong>", for example
// "malformed request body: max_tokens: must be an integer, not a JSON string",
// because the gateway shows it to the caller in a ValidationException.
//
// Inside Anthropic content blocks, whose fields change type from one block
// type to the next, a field of an unexpected type is skipped rather than
// refused; Bedrock validates those itself.
var ErrMalformed = errors.New("malformed request body")

// malformedError is a parse error caused by the caller's body. It reads
// "malformed request body: <field path>: <problem>" and matches ErrMalformed
// with errors.Is. A type (rather than fmt.Errorf) lets CountTokens put the
// path of the embedded body in front of the path inside it.
type malformedError struct {
	field   string // dotted JSON path, empty for the whole body
	problem string
}

func (e *malformedError) Error() string {
	if e.field == "" {
		return ErrMalformed.Error() + ": " + e.problem
	}
	return ErrMalformed.Error() + ": " + e.field + ": " + e.problem
}

func (e *malformedError) Unwrap() error { return ErrMalformed }

// malformed returns a malformedError about field.
func malformed(field, format string, args ...any) error {
	return &malformedError{field: field, problem: fmt.Sprintf(format, args...)}
}

// decodeBody unmarshals body, which must be a JSON object, into v, turning
// every failure into a malformed error that names the field.
func decodeBody(body []byte, v any) error {
	if !isObject(body) {
		return malformed("", "must be a JSON object")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return asMalformed(err)
	}
	return nil
}

// isObject reports whether body's first significant byte opens an object.
// json.Unmarshal into a struct accepts null and reports arrays and strings
// in words meant for Go programmers, so this is checked first.
func isObject(body []byte) bool {
	body = bytes.TrimLeft(body, " \t\r\n")
	return len(body) > 0 && body[0] == '{'
}

// asMalformed words a json error for the caller who sent the body.
func asMalformed(err error) error {
	var (
		me *malformedError
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &me):
		return me
	case errors.As(err, &se):
		return malformed("", "invalid JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		return malformed(te.Field, "must be %s, not a JSON %s", describe(te.Type), te.Value)
	}
	return malformed("", "%v", err)
}

// describe names a Go type as the JSON value a caller should have sent.
func describe(t reflect.Type) string {
	if t == nil {
		return "a different type"
	}
	if t == stringOrArrayType {
		return "a string or an array"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return describe(t.Elem())
	}
	return "a different type"
}

// maxField is one max-output-tokens field of a body, for checkMax.
type maxField struct {
	path string
	v    *int
}

// checkMax sets r's max tokens from the fields the body named (the largest if
// it named several) and rejects negative values, which every model refuses
// and which would corrupt a reservation.
func checkMax(r *Request, fields ...maxField) error {
	for _, f := range fields {
		if f.v == nil {
			continue
		}
		if *f.v < 0 {
			return malformed(f.path, "must not be negative, got %d", *f.v)
		}
		if !r.MaxTokensSet || *f.v > r.MaxTokens {
			r.MaxTokens = *f.v
		}
		r.MaxTokensSet = true
	}
	return nil
}

// ParseInvoke parses a native InvokeModel/InvokeModelWithResponseStream body.
// modelID is used for model-specific defaults. For Unknown family: the body must be
// a JSON object; estimate from all string values; look for common max-token field names.
//
// A Converse family body is parsed as by ParseConverse.
func ParseInvoke(f Family, modelID string, body []byte) (Request, error) {
	r, err := opsOf(f).parse(modelID, body)
	if err != nil {
		return Request{}, err
	}
	r.Family = f
	if !r.MaxTokensSet {
		r.MaxTokens = defaultMaxTokens(f, modelID)
	}
	return r, nil
}

// defaultMaxTokens is the max output a body that names none gets.
func defaultMaxTokens(f Family, modelID string) int {
	if f == Converse {
		// Converse's maxTokens defaults to the model's maximum (API
		// reference, InferenceConfiguration); the model is known only by id.
		return limitFor(FamilyOf(modelID), modelID).max
	}
	return limitFor(f, modelID).def
}

// countTokensBody is a CountTokens request: input is a union of an
// InvokeModel body (a blob, so base64 in JSON) and a Converse request.
type countTokensBody struct {
	Input *struct {
		InvokeModel *struct {
			Body rawString `json:"body"`
		} `json:"invokeModel"`
		Converse *converseRequest `json:"converse"`
	} `json:"input"`
}

// rawString keeps a JSON string's raw contents without copying them; it is
// valid while the decoded body is.
type rawString []byte

// UnmarshalJSON implements json.Unmarshaler.
func (s *rawString) UnmarshalJSON(b []byte) error {
	switch b[0] {
	case '"':
		*s = b[1 : len(b)-1]
	case 'n':
		*s = nil
	default:
		return typeError(b, stringType)
	}
	return nil
}

var _ json.Unmarshaler = (*rawString)(nil)

// ParseCountTokens parses a CountTokens body: {"input":{"invokeModel":{"body":"<base64 blob of a native body>"}}}
// or {"input":{"converse":{"messages":[...],"system":[...],"toolConfig":...}}}. MaxTokens is 0 (CountTokens generates nothing).
//
// f is the family of the model's native body, used for an invokeModel input;
// a converse input gives Family Converse.
func ParseCountTokens(f Family, modelID string, body []byte) (Request, error) {
	var b countTokensBody
	if err := decodeBody(body, &b); err != nil {
		return Request{}, err
	}
	in := b.Input
	switch {
	case in == nil:
		return Request{}, malformed("input", "is required")
	case in.InvokeModel != nil && in.Converse != nil:
		return Request{}, malformed("input", "must have exactly one of invokeModel and converse")
	case in.Converse != nil:
		return Request{Family: Converse, InputTokens: in.Converse.inputTokens()}, nil
	case in.InvokeModel == nil:
		return Request{}, malformed("input", "must have one of invokeModel and converse")
	}
	const path = "input.invokeModel.body"
	raw := in.InvokeModel.Body
	if len(raw) == 0 {
		return Request{}, malformed(path, "is required")
	}
	native, err := decodeBase64(raw)
	if err != nil {
		return Request{}, malformed(path, "must be base64: %v", err)
	}
	r, err := ParseInvoke(f, modelID, native)
	if err != nil {
		var me *malformedError
		if errors.As(err, &me) {
			field := path
			if me.field != "" {
				field += "." + me.field
			}
			return Request{}, &malformedError{field: field, problem: me.problem}
		}
		return Request{}, err
	}
	r.MaxTokens, r.MaxTokensSet = 0, false
	return r, nil
}

// decodeBase64 decodes the raw contents of a JSON string holding a blob.
func decodeBase64(raw []byte) ([]byte, error) {
	if bytes.IndexByte(raw, '\\') >= 0 {
		// Escaped characters ("\/" is legal JSON): let the json package
		// unquote them first.
		var s string
		if err := json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &s); err != nil {
			return nil, err
		}
		raw = []byte(s)
	}
	enc := base64.StdEncoding
	if len(raw)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	out := make([]byte, enc.DecodedLen(len(raw)))
	n, err := enc.Decode(out, raw)
	return out[:n], err
}
