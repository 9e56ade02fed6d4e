package tokens

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// parseCase is one ParseInvoke (or ParseConverse) table row. The input
// estimate is checked against a range: at least the text the body carries
// (minIn), at most that plus the fixed overheads and some slack.
type parseCase struct {
	name    string
	model   string
	body    string
	wantMax int
	wantSet bool
	minIn   int
	slack   int // allowed above minIn; 0 means 40
}

func checkParse(t *testing.T, f Family, c parseCase, got Request, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("err = %v, want nil", err)
	}
	if got.Family != f {
		t.Errorf("Family = %q, want %q", got.Family, f)
	}
	if got.MaxTokens != c.wantMax || got.MaxTokensSet != c.wantSet {
		t.Errorf("MaxTokens, MaxTokensSet = %d, %v, want %d, %v", got.MaxTokens, got.MaxTokensSet, c.wantMax, c.wantSet)
	}
	slack := c.slack
	if slack == 0 {
		slack = 40
	}
	if got.InputTokens < c.minIn || got.InputTokens > c.minIn+slack {
		t.Errorf("InputTokens = %d, want %d..%d", got.InputTokens, c.minIn, c.minIn+slack)
	}
}

func runParseCases(t *testing.T, f Family, cases []parseCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseInvoke(f, c.model, []byte(c.body))
			checkParse(t, f, c, got, err)
		})
	}
}

// est is EstimateText of the texts, summed.
func est(texts ...string) int {
	n := 0
	for _, s := range texts {
		n += EstimateText(s)
	}
	return n
}

// chunkPayload builds the payload of an InvokeModelWithResponseStream chunk
// event as Bedrock frames it: the family's JSON chunk, base64 in "bytes".
func chunkPayload(t testing.TB, inner string) []byte {
	t.Helper()
	if !json.Valid([]byte(inner)) {
		t.Fatalf("test chunk is not JSON: %s", inner)
	}
	b, err := json.Marshal(map[string]string{"bytes": base64.StdEncoding.EncodeToString([]byte(inner))})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// streamUsage feeds chunk events, each an inner JSON chunk, to a StreamUsage.
func streamUsage(t testing.TB, f Family, chunks ...string) Usage {
	t.Helper()
	s := NewStreamUsage(f)
	for _, c := range chunks {
		s.Observe("chunk", chunkPayload(t, c))
	}
	return s.Usage()
}

func checkUsage(t *testing.T, got, want Usage) {
	t.Helper()
	if got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
}

// usageCase is one UsageFromInvoke table row.
type usageCase struct {
	name string
	body string
	want Usage
}

func runUsageCases(t *testing.T, f Family, cases []usageCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkUsage(t, UsageFromInvoke(f, []byte(c.body)), c.want)
		})
	}
}

// malformedCase is a body that must be refused, with words the error must
// contain.
type malformedCase struct {
	name string
	body string
	want string
}

func runMalformedCases(t *testing.T, f Family, cases []malformedCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseInvoke(f, "", []byte(c.body))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want one wrapping ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %q, want it to contain %q", err, c.want)
			}
		})
	}
}

// b64 is a stand-in for base64 media of n characters.
func b64(n int) string { return strings.Repeat("QUJD", n/4) }
