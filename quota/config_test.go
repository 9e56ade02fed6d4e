package quota

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var updateConfigGolden = flag.Bool("update", false, "rewrite testdata/good/*.golden from the parser's output")

func TestParseConfigFull(t *testing.T) {
	c := mustLoadConfig(t, "testdata/good/full.yaml")
	sonnet := ModelBudget{
		Limits:          Limits{TPM: 400000, RPM: 200, Concurrency: 50, TokensPerDay: 576000000},
		MaxInputTokens:  200000,
		MaxOutputTokens: 8192,
		OutputBurndown:  1,
	}
	if got := c.Models["anthropic.claude-3-5-sonnet-20240620-v1:0"]; got != sonnet {
		t.Errorf("sonnet: got %+v, want %+v", got, sonnet)
	}
	sonnet4 := ModelBudget{
		Limits:           Limits{TPM: 200000, RPM: 200, Concurrency: 20, TokensPerDay: 288000000},
		MaxInputTokens:   150000,
		MaxOutputTokens:  32000,
		OutputBurndown:   5,
		DefaultMaxTokens: 4096,
	}
	if got := c.Models["anthropic.claude-sonnet-4-20250514-v1:0"]; got != sonnet4 {
		t.Errorf("sonnet 4: got %+v, want %+v", got, sonnet4)
	}
	wantDefault := &ModelBudget{Limits: Limits{TPM: 100000, RPM: 100}, OutputBurndown: 1}
	if !reflect.DeepEqual(c.Default, wantDefault) {
		t.Errorf("default: got %+v, want %+v", c.Default, wantDefault)
	}
	if got, want := len(c.Models), 8; got != want {
		t.Errorf("got %d models, want %d", got, want)
	}
	if got, ok := c.Models["amazon.titan-embed-text-v2:0"]; !ok || !got.Limits.IsZero() {
		t.Errorf("titan ({}): got %+v, %t, want a listed model with no limits", got, ok)
	}
}

func TestParseConfigGood(t *testing.T) {
	for _, tc := range []struct {
		file        string
		models      int
		withDefault bool
		tenants     int
	}{
		{"minimal.yaml", 1, false, 0},
		{"empty.yaml", 0, false, 0},
		{"commented_out.yaml", 0, false, 0},
		{"anchors.yaml", 2, true, 0},
		{"full.yaml", 8, true, 3},
		{"tenants.yaml", 1, true, 5},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c := mustLoadConfig(t, filepath.Join("testdata/good", tc.file))
			if c.Models == nil || c.Tenants == nil {
				t.Fatal("Models or Tenants is nil, want an empty map")
			}
			if len(c.Models) != tc.models || (c.Default != nil) != tc.withDefault || len(c.Tenants) != tc.tenants {
				t.Errorf("got %d models, default %t, %d tenants; want %d, %t, %d",
					len(c.Models), c.Default != nil, len(c.Tenants), tc.models, tc.withDefault, tc.tenants)
			}
		})
	}
}

func TestParseConfigEmpty(t *testing.T) {
	for _, data := range []string{"", "\n", "# only a comment\n", "---\n", "~\n"} {
		c, err := ParseConfig([]byte(data))
		if err != nil {
			t.Errorf("ParseConfig(%q): %v", data, err)
			continue
		}
		if c.Default != nil || len(c.Models) != 0 {
			t.Errorf("ParseConfig(%q) = %+v, want no budgets", data, c)
		}
	}
}

// TestParseConfigMergeKeys: a key written in the model wins over a merged
// one; an alias gives the whole mapping.
func TestParseConfigMergeKeys(t *testing.T) {
	c := mustLoadConfig(t, "testdata/good/anchors.yaml")
	want := map[string]ModelBudget{
		"anthropic.claude-3-5-sonnet-20240620-v1:0": {Limits: Limits{TPM: 400000, RPM: 100}, MaxOutputTokens: 8192, OutputBurndown: 1},
		"anthropic.claude-3-haiku-20240307-v1:0":    {Limits: Limits{TPM: 200000, RPM: 100}, MaxOutputTokens: 8192, OutputBurndown: 1},
	}
	if !reflect.DeepEqual(c.Models, want) {
		t.Errorf("got %+v, want %+v", c.Models, want)
	}
}

func TestParseConfigIntegerForms(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  int64
	}{
		{"0", 0},
		{"400000", 400000},
		{"576_000_000", 576000000},
		{"9007199254740991", 9007199254740991},
	} {
		c, err := ParseConfig([]byte("models:\n  m:\n    tpm: " + tc.value + "\n"))
		if err != nil {
			t.Errorf("tpm: %s: %v", tc.value, err)
			continue
		}
		if got := c.Models["m"].Limits.TPM; got != tc.want {
			t.Errorf("tpm: %s: got %d, want %d", tc.value, got, tc.want)
		}
	}
}

// TestParseConfigGolden compares the canonical rendering of the full example
// with a golden file. Run with -update to rewrite it after a deliberate
// change.
func TestParseConfigGolden(t *testing.T) {
	c := mustLoadConfig(t, "testdata/good/full.yaml")
	got := c.Canonical()
	golden := "testdata/good/full.golden"
	if *updateConfigGolden {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("canonical rendering differs from %s (run with -update if the change is intended)\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
}

// TestConfigCanonicalRoundTrip: parsing the canonical rendering gives the
// same Config, so the rendering shows exactly what is enforced.
func TestConfigCanonicalRoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good fixtures: %v", err)
	}
	for _, file := range files {
		c := mustLoadConfig(t, file)
		again, err := ParseConfig(c.Canonical())
		if err != nil {
			t.Errorf("%s: parsing the canonical rendering: %v\n%s", file, err, c.Canonical())
			continue
		}
		if !reflect.DeepEqual(again, c) {
			t.Errorf("%s: round trip: got %+v, want %+v", file, again, c)
		}
	}
	odd := &Config{
		Models: map[string]ModelBudget{`quote"and\backslash`: {OutputBurndown: 1.5}},
		Tenants: map[string]TenantConfig{"t": {
			AccessKeys: []AccessKeyConfig{{ID: "QGAKEXAMPLE12345", SecretFile: `/run/with "quotes"`}},
			Models:     []string{`anthropic.\*`},
			Budgets:    map[string]TenantBudget{`quote"and\backslash`: {GuaranteedTPM: 0}},
		}},
		Upstreams: map[string]Upstream{},
		Routes:    map[string]Route{},
	}
	again, err := ParseConfig(odd.Canonical())
	if err != nil || !reflect.DeepEqual(again, odd) {
		t.Errorf("round trip of an id with escapes: got %+v, %v; want %+v", again, err, odd)
	}
}

// TestParseConfigBad: every bad fixture is rejected with a message naming
// the line, the field and the problem.
func TestParseConfigBad(t *testing.T) {
	cases := []struct {
		file string
		want []string // fragments, each in one of the errors
	}{
		{"negative.yaml", []string{`line 3: models["anthropic.x"].tpm: must be a non-negative integer, got -5`}},
		{"models_arn_key.yaml", []string{`line 2: models["arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"]: an ARN draws on the pool of the model id it names; write "anthropic.claude-3-haiku-20240307-v1:0"`}},
		{"non_integer.yaml", []string{`line 3: models["anthropic.x"].rpm: must be a non-negative integer, got 1.5`}},
		{"quoted_number.yaml", []string{`models["anthropic.x"].tpm: must be a non-negative integer, got the string "400000"`}},
		{"octal.yaml", []string{`tpm: must be a non-negative integer written in decimal, got 0400000`}},
		{"too_large.yaml", []string{`tokens_per_day: must be at most 9007199254740991`}},
		{"null_limit.yaml", []string{`tpm: must be a non-negative integer, got null`}},
		{"bool_limit.yaml", []string{`concurrency: must be a non-negative integer, got true`}},
		{"burndown_below_one.yaml", []string{`line 3: models["anthropic.x"].output_burndown: must be a number >= 1`, "got 0.5"}},
		{"burndown_not_number.yaml", []string{`output_burndown: must be a number >= 1`, `got the string "five"`}},
		{"max_output_over_tpm.yaml", []string{`line 4: models["anthropic.x"].max_output_tokens: max_output_tokens 8192 plus any input exceeds tpm 4096`, "could never be admitted"}},
		{"max_output_burndown_over_tpm.yaml", []string{`max_output_tokens 8192 (× output_burndown 5 = 40960 tokens) plus any input exceeds tpm 40000`}},
		{"max_output_over_tokens_per_day.yaml", []string{`max_output_tokens 4096 plus any input exceeds tokens_per_day 1000`}},
		{"max_input_over_tpm.yaml", []string{`line 4: models["anthropic.x"].max_input_tokens: max_input_tokens 200000 plus any output exceeds tpm 100000`}},
		{"default_max_over_max_output.yaml", []string{`line 4: models["anthropic.x"].default_max_tokens: default_max_tokens 16384 exceeds max_output_tokens 8192`}},
		{"default_max_over_tpm.yaml", []string{`default_max_tokens 4096 (× output_burndown 5 = 20480 tokens) plus any input exceeds tpm 10000: a request that names no max tokens could never be admitted`}},
		{"empty_model_id.yaml", []string{`line 2: models[""]: empty model id`}},
		{"model_id_space.yaml", []string{`models["anthropic.x "]: a model id must not contain white space`}},
		{"model_id_wildcard.yaml", []string{`models["anthropic.*"]: model ids are matched exactly`, "use default_model"}},
		{"model_id_percent_encoded.yaml", []string{"percent-encoded"}},
		{"model_id_empty_upstream.yaml", []string{`models["anthropic.x@"]: id@upstream needs both a model id and an upstream name`}},
		{"duplicate_model.yaml", []string{`line 4: models: duplicate key "anthropic.x" (first at line 2)`}},
		{"duplicate_field.yaml", []string{`line 4: models["anthropic.x"]: duplicate key "tpm" (first at line 3)`}},
		{"unknown_field.yaml", []string{`line 3: models["anthropic.x"].tmp: unknown field "tmp" (did you mean "tpm"?)`}},
		{"unknown_field_unlike.yaml", []string{`unknown field "burst" (known fields: tpm, rpm, concurrency, tokens_per_day, max_input_tokens, max_output_tokens, output_burndown, default_max_tokens)`}},
		{"unknown_top_level.yaml", []string{`line 1: modles: unknown field "modles" (did you mean "models"?)`}},
		{"routes.yaml", []string{
			`line 4: models["anthropic.x@nowhere"]: upstream "nowhere" is not defined in upstreams`,
			`line 6: upstreams["west"].region: "us-westish" is not an AWS region`,
			`line 6: upstreams["west"].endpoint: must be an http(s) URL`,
			`line 6: upstreams["west"].role_arn: must be an IAM role ARN`,
			`line 7: upstreams["east"].color: unknown field "color"`,
			`line 7: upstreams["east"].region: required`,
			`line 7: upstreams["east"].external_id: applies only with role_arn`,
			`line 8: upstreams["bad name"]: an upstream name is`,
			`line 11: routes["anthropic.x"].strategy: must be priority or spread, got the string "fastest"`,
			`line 12: routes["anthropic.x"].targets[1]: anthropic.x is already target 0`,
			`line 12: routes["anthropic.x"].targets[2]: upstream "wset" is not defined in upstreams`,
			`line 15: routes["anthropic.y"].targets[0]: amazon.nova-lite-v1:0 is a nova model but callers of anthropic.y write anthropic bodies, and cross_family is false`,
			`line 17: routes["anthropic.z"].targets: required: at least one target`,
			`line 19: routes["anthropic.w"].targets: weight applies only to strategy: spread`,
			`line 20: routes["anthropic.v@west"]: callers name a model or an alias, never an upstream`,
			`line 24: routes["anthropic.u"].targets[0].weight: must be 1 to 1000, got 0`,
			`line 24: routes["anthropic.u"].targets[0].colour: unknown field "colour"`,
			`line 26: routes["anthropic.t"].targets[1]: cohere.command-r-v1:0 (cohere) and anthropic.t (anthropic) bodies cannot be translated`,
			`line 28: routes["anthropic.s"].targets[0]: id@upstream needs both a model id and an upstream name`,
			`line 28: routes["anthropic.s"].targets[1]: name the upstream once`,
			`line 32: routes["alias-b"].targets[0]: "alias-a" is a route alias, not a model`,
		}},
		{"not_mapping.yaml", []string{"line 1: the budgets file must be a mapping with default_model, models and tenants, got a list"}},
		{"scalar_document.yaml", []string{`must be a mapping with default_model, models and tenants, got the string "budgets"`}},
		{"models_not_mapping.yaml", []string{"line 1: models: must be a mapping from model id to budget, got a list"}},
		{"budget_not_mapping.yaml", []string{`line 2: models["anthropic.x"]: must be a mapping of limits (tpm, rpm, ...), got 400000`}},
		{"default_model_invalid.yaml", []string{"line 2: default_model.tpm: must be a non-negative integer, got -1"}},
		{"merge_not_mapping.yaml", []string{`models["anthropic.x"]: << must merge a mapping or a list of mappings, got 5`}},
		{"syntax.yaml", []string{"invalid YAML", "line "}},
		{"two_documents.yaml", []string{"line 5: a second YAML document: the budgets file must hold one document"}},
	}
	cases = append(cases, badTenantFixtures...)
	cases = append(cases, []struct {
		file string
		want []string
	}{
		{"many.yaml", []string{
			"line 3: default_model.rpm: must be a non-negative integer, got -1",
			`line 6: models["anthropic.x"].tpm: must be a non-negative integer, got 1.5`,
			`line 7: models["anthropic.x"].rpm: must be a non-negative integer, got the string "many"`,
			`line 8: models["anthropic.x"].output_burndown: must be a number >= 1`,
			`line 9: models[""]: empty model id`,
			`line 12: models["anthropic.y"].concurency: unknown field "concurency" (did you mean "concurrency"?)`,
			`line 13: routes["x"]: must be a mapping with strategy and targets`,
		}},
	}...)
	seen := map[string]bool{}
	for _, tc := range cases {
		seen[tc.file] = true
		t.Run(strings.TrimSuffix(tc.file, ".yaml"), func(t *testing.T) {
			path := filepath.Join("testdata/bad", tc.file)
			c, err := LoadConfig(path)
			if err == nil {
				t.Fatalf("LoadConfig(%s) = %+v, want an error", path, c)
			}
			if c != nil {
				t.Errorf("got a config with the error: %+v", c)
			}
			if !strings.HasPrefix(err.Error(), "budgets file "+path+": ") {
				t.Errorf("error %q does not start with the path", err)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("error %q holds no *ConfigError", err)
			}
			for _, frag := range tc.want {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("error does not contain %q; got:\n%v", frag, err)
				}
			}
		})
	}
	// Every fixture has a row, so that none is dead.
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("fixture %s has no test row", f)
		}
	}
}

// TestParseConfigErrorsAreConfigErrors: each joined error is a *ConfigError
// with a line, for tools that show problems next to the file.
func TestParseConfigErrorsAreConfigErrors(t *testing.T) {
	data, err := os.ReadFile("testdata/bad/many.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseConfig(data)
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("got %T, want an errors.Join", err)
	}
	if got, want := len(joined.Unwrap()), 7; got != want {
		t.Errorf("got %d errors, want %d:\n%v", got, want, err)
	}
	for _, e := range joined.Unwrap() {
		ce, ok := e.(*ConfigError)
		if !ok || ce.Line == 0 {
			t.Errorf("got %#v, want a *ConfigError with a line", e)
		}
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want an error wrapping os.ErrNotExist", err)
	}
}

func TestConfigModel(t *testing.T) {
	c := mustLoadConfig(t, "testdata/good/full.yaml")
	const sonnet = "anthropic.claude-3-5-sonnet-20240620-v1:0"
	for _, tc := range []struct {
		id      string
		wantTPM int64
	}{
		{sonnet, 400000},
		// Each requested id is its own pool unless listed: these are not
		// folded into the bare model's pool.
		{"us." + sonnet, 800000},
		{"eu." + sonnet, 100000},
		{"arn:aws:bedrock:us-east-1::foundation-model/" + sonnet, 100000},
		{"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us." + sonnet, 100000},
		{"arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6", 50000},
		{"anthropic.claude-3-haiku-20240307-v1:0@us-west-2", 500000},
		{"anthropic.claude-3-haiku-20240307-v1:0", 1000000},
		{"amazon.titan-embed-text-v2:0", 0}, // listed without limits
		{"mistral.mistral-large-2402-v1:0", 100000},
	} {
		b, ok := c.Model(tc.id)
		if !ok || b.Limits.TPM != tc.wantTPM {
			t.Errorf("Model(%q) = tpm %d, %t; want %d, true", tc.id, b.Limits.TPM, ok, tc.wantTPM)
		}
	}

	noDefault := mustLoadConfig(t, "testdata/good/minimal.yaml")
	if b, ok := noDefault.Model("meta.llama3-70b-instruct-v1:0"); ok {
		t.Errorf("unlisted model without a default: got %+v, true; want false", b)
	}
	var none *Config
	if _, ok := none.Model(sonnet); ok {
		t.Error("nil Config: got ok, want unlimited")
	}
}

func TestConfigReservation(t *testing.T) {
	for _, tc := range []struct {
		burndown         float64
		input, maxOutput int
		want             int64
		why              string
	}{
		{1, 1000, 4096, 5096, "input + output"},
		{5, 1000, 4096, 1000 + 5*4096, "Claude 4 class burns output down 5x"},
		{0, 1000, 4096, 5096, "zero value counts as 1"},
		{1.5, 0, 3, 5, "4.5 rounds up"},
		{1.1, 0, 10, 11, "10 × 1.1 is 11, not 12, despite binary floating point"},
		{1.1, 0, 3, 4, "3.3 rounds up"},
		{1, -5, -5, 0, "negatives count as zero"},
		{5, math.MaxInt, math.MaxInt, math.MaxInt64, "saturates"},
	} {
		b := ModelBudget{OutputBurndown: tc.burndown}
		if got := b.Reservation(tc.input, tc.maxOutput); got != tc.want {
			t.Errorf("burndown %g: Reservation(%d, %d) = %d, want %d (%s)", tc.burndown, tc.input, tc.maxOutput, got, tc.want, tc.why)
		}
	}
}

func TestConfigMaxOutput(t *testing.T) {
	withDefault := ModelBudget{DefaultMaxTokens: 4096}
	for _, tc := range []struct {
		b         ModelBudget
		maxTokens int
		named     bool
		want      int
	}{
		{withDefault, 64000, false, 4096}, // body names none: the configured default replaces the family's
		{withDefault, 64000, true, 64000}, // body names its own: kept
		{ModelBudget{}, 64000, false, 64000},
	} {
		if got := tc.b.MaxOutput(tc.maxTokens, tc.named); got != tc.want {
			t.Errorf("%+v.MaxOutput(%d, %t) = %d, want %d", tc.b, tc.maxTokens, tc.named, got, tc.want)
		}
	}
}

func ExampleParseConfig() {
	_, err := ParseConfig([]byte(`
models:
  anthropic.claude-3-haiku-20240307-v1:0:
    tpm: -5
    tmp: 1000
tenants:
  search:
    budgets:
      "*": {tpm: -5}
`))
	fmt.Println(err)
	// Output:
	// line 4: models["anthropic.claude-3-haiku-20240307-v1:0"].tpm: must be a non-negative integer, got -5
	// line 5: models["anthropic.claude-3-haiku-20240307-v1:0"].tmp: unknown field "tmp" (did you mean "tpm"?)
	// line 9: tenants["search"].budgets["*"].tpm: must be a non-negative integer, got -5
}

func mustLoadConfig(t *testing.T, path string) *Config {
	t.Helper()
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
