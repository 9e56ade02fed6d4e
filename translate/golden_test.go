package translate

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/quotagate/quotagate/tokens"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// families are the translatable families, in golden-file order.
var families = []tokens.Family{tokens.Anthropic, tokens.Meta, tokens.Nova, tokens.Titan, tokens.Mistral}

// goldenModels are the model ids of the golden files.
var goldenModels = map[tokens.Family]string{
	tokens.Anthropic: "anthropic.claude-3-haiku-20240307-v1:0",
	tokens.Meta:      "meta.llama3-8b-instruct-v1:0",
	tokens.Nova:      "amazon.nova-lite-v1:0",
	tokens.Titan:     "amazon.titan-text-express-v1",
	tokens.Mistral:   "mistral.mistral-7b-instruct-v0:2",
}

// headerUsage stands for the X-Amzn-Bedrock-*-Token-Count headers of the
// canonical responses.
var headerUsage = tokens.Usage{InputTokens: 57, OutputTokens: 18, Known: true}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withoutStop removes the caller's stop sequences, which Llama cannot take.
func withoutStop(t *testing.T, f tokens.Family, body []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	switch f {
	case tokens.Anthropic:
		delete(m, "stop_sequences")
	case tokens.Mistral:
		delete(m, "stop")
	case tokens.Nova:
		delete(m["inferenceConfig"].(map[string]any), "stopSequences")
	case tokens.Titan:
		delete(m["textGenerationConfig"].(map[string]any), "stopSequences")
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// chunksOf reads a stream file: a JSON array of chunks.
func chunksOf(t *testing.T, path string) [][]byte {
	t.Helper()
	var raw []json.RawMessage
	if err := json.Unmarshal(readFile(t, path), &raw); err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(raw))
	for i, r := range raw {
		var b bytes.Buffer
		if err := json.Compact(&b, r); err != nil {
			t.Fatal(err)
		}
		out[i] = b.Bytes()
	}
	return out
}

// streamUsage reads chunks as a usage reader reads a stream.
func streamUsage(f tokens.Family, chunks [][]byte) tokens.Usage {
	su := tokens.NewStreamUsage(f)
	for _, c := range chunks {
		payload, _ := json.Marshal(map[string]string{"bytes": base64.StdEncoding.EncodeToString(c)})
		su.Observe("chunk", payload)
	}
	return su.Usage()
}

// compareGolden checks got, indented, against the golden file (or writes
// it with -update).
func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, got, "", "  "); err != nil {
		t.Fatalf("%s: output is not JSON: %v: %s", path, err, got)
	}
	b.WriteByte('\n')
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want := readFile(t, path)
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("%s differs (go test ./translate -update rewrites it)\ngot:\n%s\nwant:\n%s", path, b.Bytes(), want)
	}
}

// TestGolden translates one canonical request per caller family into every
// other family, and one canonical response and chunk sequence per target
// family back, against testdata/golden/<from>_to_<to>. Beyond the
// snapshot, the translated response and stream must give the caller
// family's usage readers the target's figures.
func TestGolden(t *testing.T) {
	for _, from := range families {
		for _, to := range families {
			if from == to {
				continue
			}
			t.Run(string(from)+"_to_"+string(to), func(t *testing.T) {
				dir := filepath.Join("testdata", "golden", string(from)+"_to_"+string(to))
				req := readFile(t, filepath.Join("testdata", "requests", string(from)+".json"))
				if to == tokens.Meta {
					req = withoutStop(t, from, req)
				}
				inv, err := NewInvoke(from, goldenModels[from], to, goldenModels[to], req)
				if err != nil {
					t.Fatalf("NewInvoke: %v", err)
				}
				inv.newID = func() string { return "msg_bdrk_01GoldenMessageId000000" }
				if _, err := tokens.ParseInvoke(to, goldenModels[to], inv.Body()); err != nil {
					t.Errorf("translated request does not parse as %s: %v", to, err)
				}
				compareGolden(t, filepath.Join(dir, "request.json"), inv.Body())

				target := readFile(t, filepath.Join("testdata", "responses", string(to)+".json"))
				resp, err := inv.Response(target, headerUsage)
				if err != nil {
					t.Fatalf("Response: %v", err)
				}
				compareGolden(t, filepath.Join(dir, "response.json"), resp)
				got, want := tokens.UsageFromInvoke(from, resp), tokens.UsageFromInvoke(to, target).Merge(headerUsage)
				if got.InputTokens != want.InputTokens || got.OutputTokens != want.OutputTokens {
					t.Errorf("response usage: got %d in %d out, want %d in %d out", got.InputTokens, got.OutputTokens, want.InputTokens, want.OutputTokens)
				}

				targetChunks := chunksOf(t, filepath.Join("testdata", "streams", string(to)+".json"))
				s := inv.Stream()
				var callerChunks [][]byte
				for _, c := range targetChunks {
					out, err := s.Chunk(c)
					if err != nil {
						t.Fatalf("Chunk(%s): %v", c, err)
					}
					callerChunks = append(callerChunks, out...)
				}
				compareGolden(t, filepath.Join(dir, "stream.json"), []byte("["+string(bytes.Join(callerChunks, []byte(",")))+"]"))
				got, want = streamUsage(from, callerChunks), streamUsage(to, targetChunks)
				if got.InputTokens != want.InputTokens || got.OutputTokens != want.OutputTokens {
					t.Errorf("stream usage: got %d in %d out, want %d in %d out", got.InputTokens, got.OutputTokens, want.InputTokens, want.OutputTokens)
				}
				last := callerChunks[len(callerChunks)-1]
				if !bytes.Contains(last, []byte(`"amazon-bedrock-invocationMetrics":{"inputTokenCount":57`)) {
					t.Errorf("last caller chunk lacks the invocation metrics: %s", last)
				}
			})
		}
	}
}
