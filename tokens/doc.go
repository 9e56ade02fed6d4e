// Package tokens reads token figures out of Bedrock Runtime bodies.
//
// Before the gateway forwards a request it needs two numbers to reserve a
// token budget: an estimate of the input tokens and the most output tokens the
// call may produce. After the response it needs what Bedrock actually counted,
// to settle. Bedrock has no single body format: InvokeModel takes each model
// provider's native body, Converse takes its own, and usage comes back in the
// body, in X-Amzn-Bedrock-*-Token-Count headers, or in stream events depending
// on the family and the operation. This package knows those shapes, one file
// per family, and nothing about HTTP or quotas.
//
// Parsing is on the hot path, so bodies are decoded with encoding/json into
// small structs that declare only the fields read here. Text and JSON values
// are measured in place by custom unmarshalers (see [EstimateText]) instead of
// being copied out, and stream chunks that cannot carry usage are not decoded
// at all.
package tokens
