package tokens

import (
	"encoding/json"
	"reflect"
)

// Fixed parts of the input estimate. They err high on purpose: a reservation
// that is a little too large is settled back to the real usage after the
// call, one that is too small lets a caller overshoot its budget.
const (
	// requestOverhead covers the tokens a model's prompt template adds around
	// the whole request.
	requestOverhead = 3
	// messageOverhead covers the role markers and separators of one turn.
	messageOverhead = 4
	// toolUseOverhead is the system prompt a model adds when tools are
	// defined. Anthropic's "Tool use pricing and tokens" lists 159 to 530
	// tokens for Claude 3 models depending on model and tool_choice, and
	// about 350 for later ones, which are most of the traffic.
	toolUseOverhead = 350
	// imageTokens is one image. Anthropic counts width*height/750 tokens and
	// scales images down to about 1.15 megapixels, so about 1,600 is the most
	// a single image costs; the size of an encoded image says little about its
	// pixels, so every image is counted at that maximum.
	imageTokens = 1600
	// videoTokens is one video, whose length is unknown before the call (it
	// may be an S3 location). Nova samples frames; a rough, high constant.
	videoTokens = 8000
	// audioTokens is one audio clip, for the same reason.
	audioTokens = 4000
	// documentMinTokens is the least a binary document (PDF, DOCX, ...) is
	// counted at: Anthropic renders every PDF page as an image as well as
	// extracting its text.
	documentMinTokens = imageTokens
	// documentBytesPerToken is the compressed bytes of a binary document per
	// estimated token.
	documentBytesPerToken = 10
	// bigBase64 is the length from which a string of base64 characters in a
	// body of unknown shape is taken for media rather than text.
	bigBase64 = 1024
)

// EstimateText estimates the tokens of a piece of text. Every family's input
// estimate is built from it.
//
// The heuristic works on UTF-8 bytes, without decoding or allocating:
//
//   - an ASCII byte is 1/3.5 token: English prose tokenizes at about 4
//     characters a token and code, numbers and JSON at about 3, and Anthropic
//     advises 3.5 for Claude;
//   - a two-byte rune (Latin accents, Greek, Cyrillic, Hebrew, Arabic) is half
//     a token;
//   - a three-byte rune (CJK, Thai, Devanagari, ...) is one token, since BPE
//     vocabularies rarely merge those characters;
//   - a four-byte rune (emoji, rare CJK) is two tokens.
//
// The total is rounded up. It errs a little high for English and is not worse
// for other scripts, which a plain bytes/4 rule undercounts badly.
//
// A request's estimate adds to its text (system prompt, messages, tool
// results) the JSON text of tool definitions and tool inputs, 3 tokens for
// the request, 4 a message, 350 when tools are defined (the tool-use system
// prompt), 1,600 an image (Anthropic's largest), 8,000 a video, 4,000 an audio
// clip, and for a binary document (PDF, DOCX...) a token per 10 bytes but at
// least 1,600. In bodies of unknown shape, a long base64 string counts as an
// image. The estimate is meant to err high; calibration against the usage
// Bedrock reports is left to the caller.
func EstimateText(s string) int { return estimate(s) }

// estimate is EstimateText for strings and byte slices alike, so that text
// inside a body is measured where it lies instead of being copied out.
func estimate[T ~string | ~[]byte](s T) int {
	// Count in fourteenths of a token to stay in integers: 14/3.5 = 4.
	units := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x80:
			units += 4
		case c < 0xC0:
			// A continuation byte: counted with its rune's lead byte.
		case c < 0xE0:
			units += 7
		case c < 0xF0:
			units += 14
		default:
			units += 28
		}
	}
	return (units + 13) / 14
}

// documentTokens estimates a document of n bytes (decoded). Text formats are
// text; the bytes of binary formats are compressed, and a page costs an image.
func documentTokens(n int, textual bool) int {
	if textual {
		return (n*2 + 6) / 7 // n ASCII bytes at 3.5 a token
	}
	return max(documentMinTokens, n/documentBytesPerToken)
}

// base64Len is the decoded length of n characters of base64.
func base64Len(n int) int { return n / 4 * 3 }

// textTokens decodes a JSON string into the estimate of its tokens, measured
// on the raw JSON text: escapes (\n, \u4e2d) make it count a little high.
type textTokens int

// UnmarshalJSON implements json.Unmarshaler.
func (t *textTokens) UnmarshalJSON(b []byte) error {
	var s rawString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	*t = textTokens(estimate(s))
	return nil
}

// looseText is textTokens for fields whose type may vary: a string is
// measured as text, any other value as JSON text, and nothing is refused.
type looseText int

// UnmarshalJSON implements json.Unmarshaler.
func (t *looseText) UnmarshalJSON(b []byte) error {
	switch b[0] {
	case '"':
		*t = looseText(estimate(b[1 : len(b)-1]))
	case 'n':
		*t = 0
	default:
		*t = looseText(estimate(b))
	}
	return nil
}

// rawTokens decodes any JSON value into the estimate of its JSON text. Tool
// definitions and tool inputs are sent to the model as JSON, so their text is
// what it reads.
type rawTokens int

// UnmarshalJSON implements json.Unmarshaler.
func (t *rawTokens) UnmarshalJSON(b []byte) error {
	if b[0] == 'n' {
		*t = 0
		return nil
	}
	*t = rawTokens(estimate(b))
	return nil
}

// present records that a JSON value other than null was there, without
// decoding it: an image costs the same whatever its bytes.
type present bool

// UnmarshalJSON implements json.Unmarshaler.
func (p *present) UnmarshalJSON(b []byte) error {
	*p = b[0] != 'n'
	return nil
}

// size records the length of a JSON string's contents (base64 media) without
// copying it. Any other value has no size; it is not refused, since media
// fields are the model's to validate.
type size int

// UnmarshalJSON implements json.Unmarshaler.
func (s *size) UnmarshalJSON(b []byte) error {
	*s = 0
	if b[0] == '"' {
		*s = size(len(b) - 2)
	}
	return nil
}

// sumTokens adds up decoded estimates.
func sumTokens[T ~int](ts []T) int {
	n := 0
	for _, t := range ts {
		n += int(t)
	}
	return n
}

// toolTokens is the estimate for n tool definitions of t tokens in all.
func toolTokens(n, t int) int {
	if n == 0 && t == 0 {
		return 0
	}
	return t + toolUseOverhead
}

// looksBase64 reports whether s, a JSON string's raw contents, is a long run
// of base64 (or a data: URL of one): media, not text.
func looksBase64(s []byte) bool {
	if len(s) < bigBase64 {
		return false
	}
	if len(s) > 5 && string(s[:5]) == "data:" {
		for i, c := range s {
			if c == ',' {
				s = s[i+1:]
				break
			}
		}
	}
	for _, c := range s {
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9',
			c == '+', c == '/', c == '=', c == '\\', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// The custom unmarshalers above, checked at compile time.
var (
	_ json.Unmarshaler = (*textTokens)(nil)
	_ json.Unmarshaler = (*looseText)(nil)
	_ json.Unmarshaler = (*rawTokens)(nil)
	_ json.Unmarshaler = (*present)(nil)
	_ json.Unmarshaler = (*size)(nil)
)

// stringOrArray stands for "a string or an array" in type error messages.
type stringOrArray struct{}

var (
	stringType        = reflect.TypeFor[string]()
	intType           = reflect.TypeFor[int]()
	stringOrArrayType = reflect.TypeFor[stringOrArray]()
)

// typeError reports JSON value b where a value of type want belongs. The
// json package completes it with the path of the field being decoded.
func typeError(b []byte, want reflect.Type) error {
	return &json.UnmarshalTypeError{Value: jsonKind(b), Type: want}
}

// jsonKind names the kind of JSON value b as encoding/json does in its
// UnmarshalTypeError.
func jsonKind(b []byte) string {
	switch b[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}
