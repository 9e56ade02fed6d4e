package translate

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/quotagate/quotagate/tokens"
)

// ErrUntranslatable is wrapped by NewInvoke and Converse when the request
// uses something the target cannot take: tool use or tool results, images or
// documents, stop sequences into Llama (which has none on Bedrock), a family
// with no translation (Cohere, Unknown). The message says what, for example
// "untranslatable: meta cannot take images". Such a target is not a fallback
// candidate for the request.
var ErrUntranslatable = errors.New("untranslatable")

// untranslatable words an ErrUntranslatable.
func untranslatable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUntranslatable, fmt.Sprintf(format, args...))
}

// malformed wraps tokens.ErrMalformed, so that the gateway answers a
// ValidationException as for any other unreadable body.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", tokens.ErrMalformed, fmt.Sprintf(format, args...))
}

// role is who speaks a turn.
type role string

const (
	user      role = "user"
	assistant role = "assistant"
)

// message is one turn: its text blocks, in order. Families that take a
// single string per turn join them with newlines.
type message struct {
	role  role
	parts []string
}

func (m message) text() string { return strings.Join(m.parts, "\n") }

// shape tells apart the two request shapes of a family that has two
// (Mistral's text completion and chat completion), so that the response goes
// back in the matching one.
type shape int

const (
	shapePrompt   shape = iota // a single prompt string
	shapeMessages              // a list of messages
)

// chat is a request in neutral form.
type chat struct {
	system   string
	messages []message
	// Inference settings; nil when the caller did not set them, so that the
	// target's own defaults apply.
	maxTokens   *int
	temperature *float64
	topP        *float64
	topK        *int
	stop        []string
	// needs lists what the request uses that is not translated ("images",
	// "tool use"...). A request that needs anything can only pass through.
	needs []string
	// shape is the request shape the caller used.
	shape shape
}

// need records a feature the request uses, once.
func (c *chat) need(what string) {
	for _, n := range c.needs {
		if n == what {
			return
		}
	}
	c.needs = append(c.needs, what)
}

// add appends text to the conversation as role's. Consecutive turns of one
// role are merged, because the messages families (Anthropic, Nova) want
// turns to alternate while prompt templates and Anthropic's own API accept
// consecutive ones.
func (c *chat) add(r role, text ...string) {
	if n := len(c.messages); n > 0 && c.messages[n-1].role == r {
		c.messages[n-1].parts = append(c.messages[n-1].parts, text...)
		return
	}
	c.messages = append(c.messages, message{role: r, parts: text})
}

// prefill is the text of a final assistant turn: the caller wrote the start
// of the answer and wants the model to continue it (Anthropic's "prefill";
// an unclosed assistant turn in a prompt template). Renderers leave that
// turn open instead of closing it and cueing a new one.
func (c *chat) prefill() (string, bool) {
	if n := len(c.messages); n > 0 && c.messages[n-1].role == assistant {
		return c.messages[n-1].text(), true
	}
	return "", false
}

// stopReason is why generation ended, in neutral form.
type stopReason int

const (
	stopEnd      stopReason = iota // the model ended its turn
	stopMax                        // the max tokens limit cut it
	stopSequence                   // a stop sequence matched
	stopFiltered                   // a content filter stopped it
)

// stopNames maps a family's stop reasons both ways. Reading, unknown
// spellings mean stopEnd: the model stopped for a reason of its own, which
// the caller's family has no word for.
type stopNames map[stopReason]string

func (n stopNames) read(s string) stopReason {
	for r, name := range n {
		if name == s {
			return r
		}
	}
	return stopEnd
}

func (n stopNames) write(r stopReason) string {
	if s, ok := n[r]; ok {
		return s
	}
	return n[stopEnd]
}

// result is a complete response in neutral form.
type result struct {
	text    string
	stop    stopReason
	stopSeq string // the stop sequence that matched, when known
	input   int
	output  int
}

// event is what one stream chunk of the target said.
type event struct {
	start bool   // the target opened its message
	text  string // output text, "" for none
	// Usage figures the chunk carried; counts are cumulative.
	input, output    int
	hasInput, hasOut bool
	stop             stopReason
	hasStop          bool
	stopSeq          string
	end              bool            // the target's last chunk
	metrics          json.RawMessage // Bedrock's invocation metrics, carried unchanged
}

// metricsKey names the object Bedrock adds to the last chunk of every
// InvokeModelWithResponseStream response.
const metricsKey = "amazon-bedrock-invocationMetrics"
