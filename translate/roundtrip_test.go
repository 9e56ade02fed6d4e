package translate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/bedrocksim"
	"github.com/quotagate/quotagate/internal/jsondoc"
	"github.com/quotagate/quotagate/tokens"
)

// roundTrip is one translation sent to the simulator.
type roundTrip struct {
	from        tokens.Family
	callerModel string
	request     string // file in testdata/requests
	to          tokens.Family
	targetModel string
}

func (rt roundTrip) name() string {
	return rt.callerModel + "_to_" + rt.targetModel
}

// roundTrips are every ordered pair of the golden models, the Llama 2
// template, and Mistral's chat completion shape both ways.
func roundTrips() []roundTrip {
	var out []roundTrip
	for _, from := range families {
		for _, to := range families {
			if from != to {
				out = append(out, roundTrip{from, goldenModels[from], string(from), to, goldenModels[to]})
			}
		}
	}
	const llama2, large = "meta.llama2-13b-chat-v1", "mistral.mistral-large-2407-v1:0"
	out = append(out,
		roundTrip{tokens.Anthropic, goldenModels[tokens.Anthropic], "anthropic", tokens.Meta, llama2},
		roundTrip{tokens.Nova, goldenModels[tokens.Nova], "nova", tokens.Meta, llama2},
		roundTrip{tokens.Meta, llama2, "meta", tokens.Titan, goldenModels[tokens.Titan]},
		roundTrip{tokens.Anthropic, goldenModels[tokens.Anthropic], "anthropic", tokens.Mistral, large},
	)
	for _, to := range families {
		if to != tokens.Mistral {
			out = append(out, roundTrip{tokens.Mistral, large, "mistral_messages", to, goldenModels[to]})
		}
	}
	return out
}

// send signs and sends a request to the simulator as an SDK would.
func send(t *testing.T, base string, op bedrock.Operation, model string, body []byte) *http.Response {
	t.Helper()
	url := base + bedrock.Path(op, bedrock.EscapeModelID(model))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: bedrocksim.AccessKeyID, SecretAccessKey: bedrocksim.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "bedrock", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: status %d: %s", op, model, resp.StatusCode, b)
	}
	return resp
}

// TestRoundTrip sends translated requests to the simulated Bedrock and
// translates its answers back: the caller family's readers must find the
// simulator's usage, its text and the caller's own stop reason, and the
// stream must carry the same text and usage, each piece of text in the
// call that received it.
func TestRoundTrip(t *testing.T) {
	ts := httptest.NewServer(bedrocksim.New(bedrocksim.Config{}))
	t.Cleanup(ts.Close)
	for _, rt := range roundTrips() {
		t.Run(rt.name(), func(t *testing.T) {
			t.Parallel()
			body := readFile(t, filepath.Join("testdata", "requests", rt.request+".json"))
			if rt.to == tokens.Meta || mistralChat(rt.targetModel) {
				body = withoutStop(t, rt.from, body)
			}
			inv, err := NewInvoke(rt.from, rt.callerModel, rt.to, rt.targetModel, body)
			if err != nil {
				t.Fatalf("NewInvoke: %v", err)
			}

			resp := send(t, ts.URL, bedrock.InvokeModel, rt.targetModel, inv.Body())
			target, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			sim := tokens.UsageFromHeaders(resp.Header)
			got, err := inv.Response(target, sim)
			if err != nil {
				t.Fatalf("Response: %v", err)
			}
			u := tokens.UsageFromInvoke(rt.from, got)
			if u.InputTokens != sim.InputTokens || u.OutputTokens != sim.OutputTokens || sim.OutputTokens == 0 {
				t.Errorf("response usage: got %d in %d out, want %d in %d out", u.InputTokens, u.OutputTokens, sim.InputTokens, sim.OutputTokens)
			}
			if want := endReason[rt.from]; u.StopReason != want {
				t.Errorf("response stop reason: got %q, want %q", u.StopReason, want)
			}
			text := responseText(t, rt.from, got)
			if want := responseText(t, rt.to, target); text != want || text == "" {
				t.Errorf("response text: got %q, want %q", text, want)
			}

			resp = send(t, ts.URL, bedrock.InvokeModelWithResponseStream, rt.targetModel, inv.Body())
			s := inv.Stream()
			usage := tokens.NewStreamUsage(rt.from)
			var streamed strings.Builder
			frames := bedrock.NewFrameReader(resp.Body)
			for {
				frame, err := frames.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				ev, err := bedrock.DecodeFrame(frame)
				if err != nil || ev.EventType != "chunk" {
					t.Fatalf("event %q: %v", ev.EventType, err)
				}
				var p struct{ Bytes []byte }
				if err := json.Unmarshal(ev.Payload, &p); err != nil {
					t.Fatal(err)
				}
				out, err := s.Chunk(p.Bytes)
				if err != nil {
					t.Fatalf("Chunk(%s): %v", p.Bytes, err)
				}
				var piece string
				for _, c := range out {
					payload, _ := json.Marshal(map[string][]byte{"bytes": c})
					usage.Observe("chunk", payload)
					piece += chunkText(t, rt.from, c)
				}
				if want := chunkText(t, rt.to, p.Bytes); piece != want {
					t.Errorf("chunk %s became %q, want its text %q", p.Bytes, piece, want)
				}
				streamed.WriteString(piece)
			}
			if streamed.String() != text {
				t.Errorf("streamed text: got %q, want %q", streamed.String(), text)
			}
			if su := usage.Usage(); su.InputTokens != sim.InputTokens || su.OutputTokens != sim.OutputTokens {
				t.Errorf("stream usage: got %d in %d out, want %d in %d out", su.InputTokens, su.OutputTokens, sim.InputTokens, sim.OutputTokens)
			}
			if got := usage.Usage().StopReason; got != endReason[rt.from] {
				t.Errorf("stream stop reason: got %q, want %q", got, endReason[rt.from])
			}
		})
	}
}

// endReason is each family's word for a model that ended its turn.
var endReason = map[tokens.Family]string{
	tokens.Anthropic: "end_turn",
	tokens.Meta:      "stop",
	tokens.Nova:      "end_turn",
	tokens.Titan:     "FINISH",
	tokens.Mistral:   "stop",
}

// responseText reads the text of a family's response by the documented
// field paths, independently of the codecs under test.
func responseText(t *testing.T, f tokens.Family, body []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s response is not JSON: %v: %s", f, err, body)
	}
	switch f {
	case tokens.Anthropic:
		if jsonAt(v, "type") != "message" || jsonAt(v, "role") != "assistant" || jsonAt(v, "content", 0, "type") != "text" {
			t.Errorf("not a Messages API response: %s", body)
		}
		return str(jsonAt(v, "content", 0, "text"))
	case tokens.Meta:
		return str(jsonAt(v, "generation"))
	case tokens.Nova:
		return str(jsonAt(v, "output", "message", "content", 0, "text"))
	case tokens.Titan:
		return str(jsonAt(v, "results", 0, "outputText"))
	case tokens.Mistral:
		if s, ok := jsonAt(v, "choices", 0, "message", "content").(string); ok {
			return s
		}
		return str(jsonAt(v, "outputs", 0, "text"))
	}
	return ""
}

// chunkText reads the text of one stream chunk.
func chunkText(t *testing.T, f tokens.Family, chunk []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(chunk, &v); err != nil {
		t.Fatalf("%s chunk is not JSON: %v: %s", f, err, chunk)
	}
	switch f {
	case tokens.Anthropic:
		if jsonAt(v, "type") == "content_block_delta" {
			return str(jsonAt(v, "delta", "text"))
		}
		return ""
	case tokens.Meta:
		return str(jsonAt(v, "generation"))
	case tokens.Nova:
		return str(jsonAt(v, "contentBlockDelta", "delta", "text"))
	case tokens.Titan:
		return str(jsonAt(v, "outputText"))
	case tokens.Mistral:
		if s, ok := jsonAt(v, "choices", 0, "message", "content").(string); ok {
			return s
		}
		return str(jsonAt(v, "outputs", 0, "text"))
	}
	return ""
}

// jsonAt and str read decoded JSON (see internal/jsondoc).
var (
	jsonAt = jsondoc.At
	str    = jsondoc.Str
)
