// Package translate converts native Bedrock InvokeModel bodies between model
// families, so that the gateway can serve a request written for one family
// (Anthropic Claude Messages, say) with a model of another (Meta Llama) and
// answer in the caller's family: the response body, and every chunk of a
// streamed response, read as the caller's own model would have written them.
//
// Every family has one reader and one writer between its native shapes and a
// neutral form: a chat (system prompt, user and assistant turns, inference
// settings), a result (text, a neutral stop reason, usage) and stream events
// (text deltas, stop, usage, Bedrock's invocation metrics). A translation is
// the caller's reader followed by the target's writer, and back; no code
// knows about a pair of families.
//
// Only what all the families can say is translated: text turns, the system
// prompt, max tokens, temperature, top_p, top_k where the target has it and
// stop sequences. A request that uses more (tools, images, documents,
// extended thinking) fails with ErrUntranslatable rather than reach a model
// that would silently drop part of it.
//
// The shapes follow the Bedrock user guide, "Inference request parameters
// and response fields for foundation models".
package translate
