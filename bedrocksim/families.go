package bedrocksim

import (
	"math/rand/v2"
	"strings"

	"github.com/quotagate/quotagate/bedrock"
)

// family is one model provider's native format on InvokeModel and
// InvokeModelWithResponseStream: how Bedrock reads its request body and
// spells its response and its stream chunks ("Inference request parameters
// and response fields for foundation models" in the Bedrock user guide).
type family interface {
	// parse validates a native request body and counts its input.
	parse(model string, body []byte) (*nativeRequest, *bedrock.Error)
	// converseMaxTokens is the output limit when a Converse request sets
	// none.
	converseMaxTokens() int
	// response is the InvokeModel response body.
	response(req *nativeRequest, g *generation) map[string]any
	// chunks are the JSON documents of InvokeModelWithResponseStream, in
	// order. The last one gets Bedrock's invocation metrics.
	chunks(req *nativeRequest, g *generation) []streamEvent
}

// Every family implements the interface.
var (
	_ family = anthropic{}
	_ family = llama{}
	_ family = titan{}
	_ family = nova{}
	_ family = mistral{}
	_ family = cohere{}
	_ family = commandR{}
)

// nativeRequest is what the simulator needs from a request body.
type nativeRequest struct {
	inputTokens int
	// maxTokens is the output limit in effect: requested, or the default.
	maxTokens int
	// api tells apart the shapes a family accepts (text vs messages).
	api api
	// prompt and history are echoed by families whose responses carry
	// them (Cohere).
	prompt  string
	history []map[string]any
}

// api is which of a family's request shapes a body used.
type api int

const (
	apiMessages api = iota // a list of messages (the default)
	apiText                // a single prompt string
)

// streamEvent is one event of a stream before it is framed: for
// InvokeModelWithResponseStream a native chunk, for ConverseStream a member
// of the ConverseStreamOutput union named by kind.
type streamEvent struct {
	kind   string
	body   map[string]any
	tokens int // output tokens this event carries
}

// lookupFamily finds the family of a model id (an ARN already reduced to
// its last segment). A cross-Region inference profile id ("us.", "eu.",
// "apac.", "global." ...) names the same model as the foundation id after
// its prefix.
func lookupFamily(model string) (family, bool) {
	id := model
	if _, rest, ok := strings.Cut(model, "."); ok && !knownProvider(model) {
		id = rest
	}
	switch {
	case strings.HasPrefix(id, "anthropic.claude"):
		return anthropic{}, true
	case strings.HasPrefix(id, "meta.llama"):
		return llama{}, true
	case strings.HasPrefix(id, "amazon.titan-text"), strings.HasPrefix(id, "amazon.titan-tg1"):
		return titan{}, true
	case strings.HasPrefix(id, "amazon.nova-") && !isNovaMedia(id):
		return nova{}, true
	case strings.HasPrefix(id, "mistral."), strings.HasPrefix(id, "mistralai."):
		return mistral{}, true
	case strings.HasPrefix(id, "cohere.command-r"):
		return commandR{}, true
	case strings.HasPrefix(id, "cohere.command"):
		return cohere{}, true
	}
	return nil, false
}

// knownProvider reports whether a model id starts with a provider name
// rather than an inference-profile geography.
func knownProvider(id string) bool {
	for _, p := range []string{"anthropic.", "meta.", "amazon.", "mistral.", "mistralai.", "cohere.", "ai21.", "stability.", "deepseek.", "writer.", "openai.", "qwen.", "twelvelabs."} {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	return false
}

// isNovaMedia reports Nova models that do not generate text (Canvas
// images, Reel video, Sonic speech): they have other APIs.
func isNovaMedia(id string) bool {
	return strings.HasPrefix(id, "amazon.nova-canvas") || strings.HasPrefix(id, "amazon.nova-reel") || strings.HasPrefix(id, "amazon.nova-sonic")
}

// generation is the simulated model's answer to one request.
type generation struct {
	model       string
	inputTokens int
	maxTokens   int
	words       []string // one token each, with their leading spaces
	truncated   bool     // stopped by the max tokens limit
}

// tokensPerDelta is how many tokens one streamed delta carries; real
// streams carry a few.
const tokensPerDelta = 3

// newGeneration decides the answer: outputTokens words of deterministic
// filler, fewer when the request's max tokens is lower (and then it stops
// for that reason).
func newGeneration(model string, req *nativeRequest, outputTokens int) *generation {
	n := min(req.maxTokens, outputTokens)
	g := &generation{
		model:       model,
		inputTokens: req.inputTokens,
		maxTokens:   req.maxTokens,
		truncated:   req.maxTokens < outputTokens,
		words:       make([]string, n),
	}
	for i := range n {
		w := filler[(req.inputTokens+i)%len(filler)]
		if i > 0 {
			w = " " + w
		}
		g.words[i] = w
	}
	return g
}

// filler is the vocabulary of generated text.
var filler = strings.Fields(`quota gates keep tokens flowing at a steady rate while
the window slides forward and every request settles what it used so that
throughput stays fair across tenants models and regions`)

func (g *generation) outputTokens() int { return len(g.words) }

func (g *generation) text() string { return strings.Join(g.words, "") }

// deltas splits the text into the pieces a stream sends, tokensPerDelta
// tokens each.
func (g *generation) deltas() []delta {
	var out []delta
	for i := 0; i < len(g.words); i += tokensPerDelta {
		j := min(i+tokensPerDelta, len(g.words))
		out = append(out, delta{text: strings.Join(g.words[i:j], ""), tokens: j - i})
	}
	return out
}

// delta is one streamed piece of text.
type delta struct {
	text   string
	tokens int
}

// converseStop is the Converse stopReason of a generation.
func (g *generation) converseStop() string {
	if g.truncated {
		return "max_tokens"
	}
	return "end_turn"
}

// randomID returns n characters of base62, for response ids in the style
// of a provider ("msg_bdrk_01...").
func randomID(n int) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}
