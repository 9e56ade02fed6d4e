package bedrock

import (
	"net/url"
	"strings"
)

// Operation is a Bedrock Runtime API operation, named as in the API reference.
type Operation string

// The Bedrock Runtime operations the gateway serves.
const (
	InvokeModel                   Operation = "InvokeModel"
	InvokeModelWithResponseStream Operation = "InvokeModelWithResponseStream"
	Converse                      Operation = "Converse"
	ConverseStream                Operation = "ConverseStream"
	CountTokens                   Operation = "CountTokens"
)

// pathSuffixes maps the last path segment of /model/{modelId}/{suffix} to its
// operation (Bedrock Runtime REST bindings).
var pathSuffixes = map[string]Operation{
	"invoke":                      InvokeModel,
	"invoke-with-response-stream": InvokeModelWithResponseStream,
	"converse":                    Converse,
	"converse-stream":             ConverseStream,
	"count-tokens":                CountTokens,
}

// Streaming reports whether the operation answers with an eventstream.
func (o Operation) Streaming() bool {
	return o == InvokeModelWithResponseStream || o == ConverseStream
}

// Native reports whether the operation carries a model family's native body
// (InvokeModel and its stream) rather than the Converse shape.
func (o Operation) Native() bool {
	return o == InvokeModel || o == InvokeModelWithResponseStream
}

// Route is a parsed Bedrock Runtime request path.
type Route struct {
	Operation Operation
	// ModelID is the decoded model id: a foundation model id, an inference
	// profile id, or an ARN.
	ModelID string
	// RawModelID is the model id exactly as it was escaped on the wire. It is
	// kept so that a re-signed request carries the same bytes: SigV4 escapes
	// the escaped path once more, so decoding and re-encoding would change the
	// signature (ARNs arrive with %2F, which must not become a path separator).
	RawModelID string
}

// ParsePath parses an escaped request path of the form
// /model/{modelId}/{operation}. It reports false for anything else, including
// an empty model id.
func ParsePath(escapedPath string) (Route, bool) {
	rest, ok := strings.CutPrefix(escapedPath, "/model/")
	if !ok {
		return Route{}, false
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return Route{}, false
	}
	op, ok := pathSuffixes[rest[i+1:]]
	if !ok {
		return Route{}, false
	}
	raw := rest[:i]
	// A literal '/' inside the model id segment means the caller did not
	// escape an ARN; Bedrock treats that as a different path, so do we.
	if strings.Contains(raw, "/") {
		return Route{}, false
	}
	id, err := url.PathUnescape(raw)
	if err != nil || strings.TrimSpace(id) == "" {
		return Route{}, false
	}
	return Route{Operation: op, ModelID: id, RawModelID: raw}, true
}

// Path returns the escaped request path for an operation on a model id that
// is already escaped, the inverse of ParsePath.
func Path(op Operation, rawModelID string) string {
	for suffix, o := range pathSuffixes {
		if o == op {
			return "/model/" + rawModelID + "/" + suffix
		}
	}
	return ""
}

// EscapeModelID escapes a model id for use as one path segment, as the AWS
// SDKs do: ':' becomes %3A and '/' becomes %2F.
func EscapeModelID(id string) string {
	return strings.ReplaceAll(url.PathEscape(id), ":", "%3A")
}
