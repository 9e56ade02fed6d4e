package translate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"github.com/quotagate/quotagate/tokens"
)

// codec is one family's reader and writer of the neutral form.
type codec interface {
	// readRequest parses a native request body written for model.
	readRequest(model string, body []byte) (*chat, error)
	// writeRequest renders c as a native body for model.
	writeRequest(model string, c *chat) ([]byte, error)
	// readResponse reads the text and stop reason of a native response;
	// usage is read by tokens.UsageFromInvoke, which knows every family.
	readResponse(body []byte) (result, error)
	// writeResponse renders r as the response to c, sent to model; id
	// names the message where the family has ids.
	writeResponse(model string, c *chat, r result, id string) ([]byte, error)
	// readChunk reads one stream chunk.
	readChunk(chunk []byte) (event, error)
	// streamWriter writes the chunks of a stream answering c, sent to
	// model; id names the message where the family has ids.
	streamWriter(model string, c *chat, id string) chunkWriter
}

// chunkWriter writes one family's stream chunks. Each method returns the
// chunks to send, as values to encode in order.
type chunkWriter interface {
	// open starts the stream, before its first text.
	open(st *streamState) []any
	// text sends a piece of output.
	text(st *streamState, s string) []any
	// close ends the stream; the invocation metrics go on its last chunk.
	close(st *streamState) []any
}

// codecs are the translatable families. Cohere's two APIs and unknown
// models are left out: their bodies say too little for a faithful chat.
var codecs = map[tokens.Family]codec{
	tokens.Anthropic: anthropicCodec{},
	tokens.Meta:      metaCodec{},
	tokens.Nova:      novaCodec{},
	tokens.Titan:     titanCodec{},
	tokens.Mistral:   mistralCodec{},
}

// Invoke is one translation of a native InvokeModel or
// InvokeModelWithResponseStream request from the caller's family into a
// target's, and of the target's response back. Use it from one goroutine.
type Invoke struct {
	from, to             tokens.Family
	callerModel, toModel string
	caller, target       codec
	chat                 *chat
	body                 []byte
	pass                 bool // same family: nothing to translate
	newID                func() string
}

// NewInvoke parses body, written in family from for callerModel (the model
// id the caller named), and renders it in family to for targetModel:
// rendering depends on the model id (Llama 2 and Llama 3 prompt templates,
// Mistral's two request shapes). from == to is a pass-through whose Body is
// body unchanged and whose Response and Stream return their input
// unchanged.
//
// A body the caller's family cannot parse gives an error wrapping
// tokens.ErrMalformed; a request the target cannot take gives one wrapping
// ErrUntranslatable.
func NewInvoke(from tokens.Family, callerModel string, to tokens.Family, targetModel string, body []byte) (*Invoke, error) {
	t := &Invoke{from: from, to: to, callerModel: callerModel, toModel: targetModel, body: body, newID: anthropicID}
	if from == to {
		t.pass = true
		return t, nil
	}
	var ok bool
	if t.caller, ok = codecs[from]; !ok {
		return nil, untranslatable("%s bodies are not translated", familyName(from))
	}
	if t.target, ok = codecs[to]; !ok {
		return nil, untranslatable("%s bodies are not translated", familyName(to))
	}
	// tokens validates the body as the gateway did, and knows the caller
	// family's documented max tokens default.
	req, err := tokens.ParseInvoke(from, callerModel, body)
	if err != nil {
		return nil, err
	}
	c, err := t.caller.readRequest(callerModel, body)
	if err != nil {
		return nil, err
	}
	if err := check(c, from, to, targetModel); err != nil {
		return nil, err
	}
	c.maxTokens = fitMaxTokens(c.maxTokens, req.MaxTokens, to, targetModel)
	t.chat = c
	if t.body, err = t.target.writeRequest(targetModel, c); err != nil {
		return nil, err
	}
	return t, nil
}

// check refuses a chat that uses what is not translated, naming the target
// as unable when the capability table says it is.
func check(c *chat, from, to tokens.Family, targetModel string) error {
	if len(c.needs) == 0 {
		return nil
	}
	what := c.needs[0]
	if !capabilitiesOf(targetModel).can(what) {
		return untranslatable("%s cannot take %s", to, what)
	}
	return untranslatable("%s: not translated from %s to %s", what, from, to)
}

// fitMaxTokens decides the max tokens to render. A limit the caller set is
// kept, lowered to the target model's largest output so that the target
// does not refuse it (the caller asked for at most that many; it gets at
// most that many). Without one, the target's own default applies, except
// for Anthropic, whose Messages API requires max_tokens: it gets the caller
// family's documented default, callerDefault.
func fitMaxTokens(set *int, callerDefault int, to tokens.Family, targetModel string) *int {
	n := 0
	switch {
	case set != nil:
		n = *set
	case to == tokens.Anthropic:
		n = callerDefault
	default:
		return nil
	}
	// Converse's default max tokens is the model's largest output, which
	// tokens knows for every model.
	if r, err := tokens.ParseConverse(targetModel, []byte(`{}`)); err == nil && r.MaxTokens > 0 {
		n = min(n, r.MaxTokens)
	}
	return &n
}

// familyName names a family in messages; Unknown is the empty string.
func familyName(f tokens.Family) string {
	if f == tokens.Unknown {
		return "unknown"
	}
	return string(f)
}

// Body is the request body to send to the target model.
func (t *Invoke) Body() []byte { return t.body }

// Response translates a complete (not streamed, HTTP 200) target response
// body into the caller's family. headerUsage is the usage Bedrock sent in
// the X-Amzn-Bedrock-Input-Token-Count and -Output-Token-Count headers
// (tokens.UsageFromHeaders), used when the body carries none (Mistral). The
// result reads as the caller family's response, with the same usage.
func (t *Invoke) Response(body []byte, headerUsage tokens.Usage) ([]byte, error) {
	if t.pass {
		return body, nil
	}
	r, err := t.target.readResponse(body)
	if err != nil {
		return nil, fmt.Errorf("translate: %s response: %w", t.to, err)
	}
	u := tokens.UsageFromInvoke(t.to, body).Merge(headerUsage)
	r.input, r.output = u.InputTokens, u.OutputTokens
	r.stopSeq = matchedStop(t.chat, r.stop, r.stopSeq)
	return t.caller.writeResponse(t.callerModel, t.chat, r, t.newID())
}

// matchedStop is the stop sequence to report: the target's, or the
// caller's only one when the target says a sequence matched but not which
// (Nova, Titan).
func matchedStop(c *chat, r stopReason, seq string) string {
	if r == stopSequence && seq == "" && len(c.stop) == 1 {
		return c.stop[0]
	}
	return seq
}

// Stream returns a new translator for one InvokeModelWithResponseStream
// response.
func (t *Invoke) Stream() *Stream {
	s := &Stream{pass: t.pass, chat: t.chat}
	if !t.pass {
		s.reader = t.target
		s.writer = t.caller.streamWriter(t.callerModel, t.chat, t.newID())
	}
	return s
}

// Stream translates the chunks of one streamed response. A chunk is the
// JSON document a "chunk" event carries base64-encoded in its {"bytes"}
// payload, already decoded. Not safe for concurrent use.
type Stream struct {
	pass   bool
	chat   *chat
	reader codec
	writer chunkWriter
	state  streamState
}

// streamState is what a stream has said so far, for the writers.
type streamState struct {
	started, ended   bool
	input, output    int
	hasInput, hasOut bool
	inputSent        bool // the input count went out (Llama sends it once)
	stop             stopReason
	stopSeq          string
}

// Chunk takes one target chunk and returns the caller chunks it makes, in
// order: none while the target says nothing the caller's family can carry
// yet, several where the caller's family needs more chunks than the
// target's (Anthropic's message_start and content_block_start). Text goes
// out in the same call that receives it. The invocation metrics Bedrock puts
// on the target's last chunk go, unchanged, on the caller's last chunk, so
// that usage readers find them where they look.
func (s *Stream) Chunk(chunk []byte) ([][]byte, error) {
	if s.pass {
		return [][]byte{chunk}, nil
	}
	ev, err := s.reader.readChunk(chunk)
	if err != nil {
		return nil, fmt.Errorf("translate: stream chunk: %w", err)
	}
	st := &s.state
	if st.ended {
		// Bedrock sends nothing after the chunk with the metrics.
		return nil, nil
	}
	if ev.hasInput {
		st.input, st.hasInput = ev.input, true
	}
	if ev.hasOut {
		st.output, st.hasOut = max(st.output, ev.output), true
	}
	if ev.hasStop {
		st.stop, st.stopSeq = ev.stop, ev.stopSeq
	}
	if ev.metrics != nil {
		// Bedrock's own counts, the ones it bills, win over the model's;
		// for Mistral they are the only ones in the stream.
		var m struct {
			Input  *int `json:"inputTokenCount"`
			Output *int `json:"outputTokenCount"`
		}
		if json.Unmarshal(ev.metrics, &m) == nil {
			if m.Input != nil {
				st.input, st.hasInput = *m.Input, true
			}
			if m.Output != nil {
				st.output, st.hasOut = *m.Output, true
			}
		}
	}
	end := ev.end || ev.metrics != nil
	var out []any
	if !st.started && (ev.start || ev.text != "" || end) {
		st.started = true
		out = append(out, s.writer.open(st)...)
	}
	if ev.text != "" {
		out = append(out, s.writer.text(st, ev.text)...)
	}
	closing := 0
	if end {
		st.ended = true
		st.stopSeq = matchedStop(s.chat, st.stop, st.stopSeq)
		closing = len(out)
		out = append(out, s.writer.close(st)...)
	}
	chunks := make([][]byte, len(out))
	for i, v := range out {
		if chunks[i], err = encode(v); err != nil {
			return nil, fmt.Errorf("translate: stream chunk: %w", err)
		}
	}
	if end && ev.metrics != nil && len(chunks) > closing {
		last := len(chunks) - 1
		chunks[last] = withMetrics(chunks[last], ev.metrics)
	}
	return chunks, nil
}

// withMetrics adds Bedrock's invocation metrics to an encoded chunk, an
// object.
func withMetrics(chunk []byte, metrics json.RawMessage) []byte {
	chunk = bytes.TrimRight(chunk, " \n")
	out := make([]byte, 0, len(chunk)+len(metrics)+len(metricsKey)+4)
	out = append(out, chunk[:len(chunk)-1]...)
	if len(chunk) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"`+metricsKey+`":`...)
	out = append(out, metrics...)
	return append(out, '}')
}

// anthropicID is a Messages API message id in Bedrock's style
// ("msg_bdrk_" and 24 base62 characters).
func anthropicID() string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := []byte("msg_bdrk_")
	// An id need not be secret, only unlikely to repeat.
	for range 24 {
		b = append(b, alphabet[rand.IntN(len(alphabet))])
	}
	return string(b)
}

// encode is json.Marshal without HTML escaping: prompt templates are full
// of "<" and ">" ("<|eot_id|>", "<s>"), which read better, and weigh less,
// unescaped.
func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
