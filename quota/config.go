package quota

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// Config is a validated budgets file (ARCHITECTURE.md section 3). It is
// immutable once parsed: a Watcher hands the same *Config to every request
// goroutine, so callers must not modify it or its Models map.
type Config struct {
	// Default is the budget of every model not listed in Models; each such
	// model gets its own pool with these limits. Nil: unlisted models are
	// unlimited.
	Default *ModelBudget
	// Models are the listed pools, by model id exactly as written in the
	// file (and as Bedrock's API names the model, decoded: ':' not %3A).
	// Never nil after ParseConfig.
	Models map[string]ModelBudget
	// Tenants are the tenants defined in the file, by tenant id. Never nil
	// after ParseConfig; empty means the file defines none (the run-time
	// tenants of the admin API may still apply). Like the rest of Config,
	// the map and every TenantConfig in it are shared and must not be
	// modified.
	Tenants map[string]TenantConfig
	// Upstreams are the other Bedrock endpoints targets may name, by name.
	// Never nil after ParseConfig.
	Upstreams map[string]Upstream
	// Routes send requests for a model id or alias to their targets, by the
	// name callers request. Never nil after ParseConfig; a model without a
	// route is served by itself on the gateway's own upstream.
	Routes map[string]Route
}

// ModelBudget is one model pool's budget and per-request caps.
type ModelBudget struct {
	// Limits are the pool's TPM, RPM, concurrency and tokens per UTC day;
	// zero means no limit on that dimension.
	Limits Limits
	// MaxInputTokens caps a request's estimated input tokens; over it, the
	// gateway answers ValidationException. 0 means no cap.
	MaxInputTokens int
	// MaxOutputTokens caps a request's max output tokens, like
	// MaxInputTokens. 0 means no cap.
	MaxOutputTokens int
	// OutputBurndown is how many quota tokens one output token costs: Bedrock
	// counts output of Claude 4 class models five times against TPM. Always
	// >= 1 after ParseConfig; Reservation treats a zero value as 1.
	OutputBurndown float64
	// DefaultMaxTokens is the max output tokens to reserve when a body names
	// none. 0 means the tokens package's family default, which for Converse
	// is the model's maximum and can be far above what callers really use.
	DefaultMaxTokens int
}

// Model returns the budget for a model id: the entry listed under that exact
// id, else Default; ok is false when neither applies, and the model is then
// unlimited. A nil Config has no budgets.
//
// id is a pool id, as PoolID gives it for a requested id: a
// foundation-model or inference-profile ARN has already been reduced to the
// id it names, because Bedrock counts both against the same quota. A
// cross-region inference profile such as
// "us.anthropic.claude-3-5-sonnet-20240620-v1:0" is not folded into the pool
// of the bare model id: Bedrock itself keeps separate quotas for on-demand
// and cross-region inference of one model, and separate pools mirror them.
// List every id callers use, or rely on Default. Keys of the form
// "id@upstream" are matched the same way, exactly.
func (c *Config) Model(id string) (ModelBudget, bool) {
	if c == nil {
		return ModelBudget{}, false
	}
	if b, ok := c.Models[id]; ok {
		return b, true
	}
	if c.Default != nil {
		return *c.Default, true
	}
	return ModelBudget{}, false
}

// Reservation returns the tokens to reserve for a request: input +
// maxOutput × OutputBurndown, rounded up, which is how Bedrock itself counts
// a request against TPM when it starts. Negative arguments count as zero; the
// result saturates at math.MaxInt64 rather than wrapping.
func (b ModelBudget) Reservation(input, maxOutput int) int64 {
	in, out := int64(max(input, 0)), burnedDown(int64(max(maxOutput, 0)), b.OutputBurndown)
	if in > math.MaxInt64-out {
		return math.MaxInt64
	}
	return in + out
}

// MaxOutput returns the max output tokens to reserve for a request, given
// the body's max tokens and whether the body named them (tokens.Request's
// MaxTokens and MaxTokensSet): DefaultMaxTokens replaces the family default
// when the body names none.
func (b ModelBudget) MaxOutput(maxTokens int, named bool) int {
	if !named && b.DefaultMaxTokens > 0 {
		return b.DefaultMaxTokens
	}
	return maxTokens
}

// burnedDown returns n × burndown rounded up; a burndown below 1 (the zero
// value) counts as 1.
func burnedDown(n int64, burndown float64) int64 {
	if !(burndown > 1) { // also catches NaN
		return n
	}
	p := float64(n) * burndown
	if p >= math.MaxInt64 {
		return math.MaxInt64
	}
	// A burndown written as a decimal such as 1.1 is not exact in binary:
	// 10 × 1.1 is 11.000000000000002. A product within a few units in the
	// last place of an integer is that integer, so that 10 × 1.1 reserves
	// 11, not 12.
	if r := math.Round(p); math.Abs(p-r) <= p*0x1p-49 {
		return int64(r)
	}
	return int64(math.Ceil(p))
}

// ConfigError is one problem in a budgets file. ParseConfig joins every
// ConfigError it finds with errors.Join, so that one edit can fix them all;
// errors.As finds the first.
type ConfigError struct {
	// Line is the 1-based line in the file; 0 when the problem has none.
	Line int
	// Path is the field, e.g. `models["anthropic.x"].tpm`; empty for the
	// document as a whole.
	Path string
	// Msg says what is wrong.
	Msg string
}

// Error reads e.g. `line 7: models["anthropic.x"].tpm: must be a
// non-negative integer, got -5`.
func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// LoadConfig reads and parses a budgets file. A parse error is prefixed with
// the path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading budgets file: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("budgets file %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses and validates a budgets file. Every problem is reported
// (errors.Join of *ConfigError), each with its YAML line and field path, e.g.
// `line 7: models["anthropic.x"].tpm: must be a non-negative integer, got
// -5`. Decoding is strict: an unknown field is an error, because a
// misspelt limit would otherwise leave a model silently unlimited. An empty
// file is valid and has no budgets.
//
// Integers must be written in decimal (digits may be grouped with _, as in
// 576_000_000): YAML reads 010000 as octal 4096 and a quoted "400000" as a
// string, and neither is what the writer meant. YAML anchors, aliases and
// merge keys (<<: *anchor) work, so that models can share limits.
func ParseConfig(data []byte) (*Config, error) {
	cfg := &Config{Models: map[string]ModelBudget{}, Tenants: map[string]TenantConfig{}, Upstreams: map[string]Upstream{}, Routes: map[string]Route{}}
	root, trailing, syntax := decodeOne(data, "the budgets file")
	if syntax != nil {
		return nil, errors.Join(syntax)
	}
	var p configParser
	p.document(root, cfg)
	if trailing != nil {
		p.errs = append(p.errs, trailing)
	}
	// A pool whose own budget is invalid has unknown limits: checking
	// guarantees against them would only add misleading errors.
	skip := func(pool string) bool {
		if _, listed := cfg.Models[pool]; listed {
			return false
		}
		return p.badModels[pool] || p.badDefault
	}
	p.checkUpstreamRefs(cfg)
	p.checkAliasTargets(cfg)
	p.errs = append(p.errs, checkTenants(cfg, cfg.Tenants, p.sites, skip)...)
	if err := joinConfigErrors(p.errs); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decodeOne decodes data that must hold a single YAML document and returns
// its root, nil or a null node when the document is empty (or only
// comments). A second document with content is returned as trailing, to be
// reported after the first document's own problems; what names the input
// in that message. A syntax error in the first document is returned alone,
// as there is nothing else to check.
func decodeOne(data []byte, what string) (root *yaml.Node, trailing, syntax *ConfigError) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // empty, or only comments
			return nil, nil, nil
		}
		return nil, nil, yamlSyntaxError(err)
	}
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			trailing = yamlSyntaxError(err)
			break
		}
		// A trailing "---" with nothing after it is harmless; a second
		// document with content would be silently ignored otherwise.
		if r := yamlRoot(&extra); !yamlIsNull(r) {
			trailing = &ConfigError{Line: r.Line, Msg: "a second YAML document: " + what + " must hold one document"}
			break
		}
	}
	return yamlRoot(&doc), trailing, nil
}

// yamlLineRE picks the line out of yaml.v3's syntax errors, which read
// "yaml: line 3: did not find expected key".
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func yamlSyntaxError(err error) *ConfigError {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &ConfigError{Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &ConfigError{Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// Field names of the file, for "did you mean" in unknown-field errors.
var (
	configTopFields    = []string{"default_model", "models", "tenants", "upstreams", "routes"}
	configBudgetFields = []string{"tpm", "rpm", "concurrency", "tokens_per_day", "max_input_tokens", "max_output_tokens", "output_burndown", "default_max_tokens"}
)

// maxConfigCount bounds every integer in the file: Redis scripts count in
// Lua numbers, which are doubles and exact only up to 2^53.
const maxConfigCount = 1<<53 - 1

// configParser walks the YAML node tree by hand rather than decoding into
// structs, so that every problem is found (not just the first), each with
// its line and field path.
type configParser struct {
	errs []*ConfigError
	// sites locates tenants' credentials and guarantees for checkTenants.
	sites map[string]tenantSite
	// badModels are the listed pools whose budget has a problem, and
	// badDefault is set when default_model has one.
	badModels  map[string]bool
	badDefault bool
	// upstreamRefs are the upstream names pools and targets use.
	upstreamRefs []upstreamRef
	// targetNodes locate route targets by path, for checks made once
	// every route is parsed.
	targetNodes map[string]*yaml.Node
}

func (p *configParser) add(n *yaml.Node, path, format string, args ...any) {
	e := &ConfigError{Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line = n.Line
	}
	p.errs = append(p.errs, e)
}

func (p *configParser) document(root *yaml.Node, cfg *Config) {
	if yamlIsNull(root) {
		return
	}
	if root.Kind != yaml.MappingNode {
		p.add(root, "", "the budgets file must be a mapping with default_model, models and tenants, got %s", yamlDescribe(root))
		return
	}
	for _, e := range p.entries(root, "", true) {
		switch e.key.Value {
		case "default_model":
			v := yamlResolve(e.val)
			if yamlIsNull(v) {
				continue
			}
			if b, ok := p.budget(v, "default_model"); ok {
				cfg.Default = &b
			} else {
				p.badDefault = true
			}
		case "models":
			p.models(yamlResolve(e.val), cfg)
		case "tenants":
			p.tenants(yamlResolve(e.val), cfg)
		case "upstreams":
			p.upstreams(yamlResolve(e.val), cfg)
		case "routes":
			p.routes(yamlResolve(e.val), cfg)
		default:
			p.unknownField(e.key, "", configTopFields)
		}
	}
}

// section returns the entries of a top-level section that maps names to
// values (models, tenants): none when every entry is commented out, and an
// error naming what it should be when it is not a mapping.
func (p *configParser) section(n *yaml.Node, name, want string) []yamlEntry {
	if yamlIsNull(n) { // every entry commented out
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.add(n, name, "must be a mapping from %s, got %s", want, yamlDescribe(n))
		return nil
	}
	return p.entries(n, name, true)
}

func (p *configParser) models(n *yaml.Node, cfg *Config) {
	for _, e := range p.section(n, "models", "model id to budget") {
		id := e.key.Value
		if yamlIsNull(e.key) {
			id = ""
		}
		path := "models[" + strconv.Quote(id) + "]"
		if msg := checkModelID(id); msg != "" {
			p.add(e.key, path, "%s", msg)
			continue
		}
		if _, up, ok := strings.Cut(id, "@"); ok {
			p.upstreamRefs = append(p.upstreamRefs, upstreamRef{name: up, node: e.key, path: path})
		}
		if b, ok := p.budget(yamlResolve(e.val), path); ok {
			cfg.Models[id] = b
		} else {
			if p.badModels == nil {
				p.badModels = map[string]bool{}
			}
			p.badModels[id] = true
		}
	}
}

// checkModelID returns what is wrong with a model key, or "". Model ids,
// inference-profile ids and ARNs contain none of the characters refused
// here, so each refusal catches a key that could never match a request.
func checkModelID(id string) string {
	switch {
	case id == "":
		return "empty model id"
	case strings.ContainsFunc(id, unicode.IsSpace):
		return "a model id must not contain white space"
	case strings.Contains(id, "*"):
		return "model ids are matched exactly, so a wildcard matches nothing; use default_model for the models not listed"
	case strings.Contains(id, "%"):
		return "the model id looks percent-encoded; write it decoded, as Bedrock names it (':' not %3A, '/' not %2F)"
	case strings.Count(id, "@") > 1:
		return "at most one @ (id@upstream)"
	case strings.HasPrefix(id, "@") || strings.HasSuffix(id, "@"):
		return "id@upstream needs both a model id and an upstream name"
	case PoolID(id) != id:
		// Requests naming this ARN draw on the pool of the id it names,
		// so a key spelt as the ARN would never be looked up.
		return fmt.Sprintf("an ARN draws on the pool of the model id it names; write %q", PoolID(id))
	}
	return ""
}

// budget parses one model's budget. ok is false when it has any problem.
func (p *configParser) budget(n *yaml.Node, path string) (b ModelBudget, ok bool) {
	b.OutputBurndown = 1
	if yamlIsNull(n) { // a listed model with no limits: an unlimited pool, exempt from default_model
		return b, true
	}
	if n.Kind != yaml.MappingNode {
		p.add(n, path, "must be a mapping of limits (tpm, rpm, ...), got %s", yamlDescribe(n))
		return b, false
	}
	before := len(p.errs)
	valid := map[string]*yaml.Node{} // fields set and valid, for the cross-field checks
	bad := map[string]bool{}
	for _, e := range p.entries(n, path, true) {
		name, fpath := e.key.Value, path+"."+e.key.Value
		v := yamlResolve(e.val)
		good, isLimit := p.limit(&b.Limits, name, v, fpath)
		switch {
		case isLimit:
		case name == "max_input_tokens":
			b.MaxInputTokens, good = p.intCount(v, fpath)
		case name == "max_output_tokens":
			b.MaxOutputTokens, good = p.intCount(v, fpath)
		case name == "default_max_tokens":
			b.DefaultMaxTokens, good = p.intCount(v, fpath)
		case name == "output_burndown":
			b.OutputBurndown, good = p.burndown(v, fpath)
		default:
			p.unknownField(e.key, path, configBudgetFields)
			continue
		}
		if good {
			valid[name] = v
		} else {
			bad[name] = true
		}
	}
	p.crossCheck(b, path, valid, bad)
	return b, len(p.errs) == before
}

// limit parses name into l if it is one of the four limits a model pool
// and a tenant budget share; isLimit is false for any other field.
func (p *configParser) limit(l *Limits, name string, v *yaml.Node, path string) (good, isLimit bool) {
	var dst *int64
	switch name {
	case "tpm":
		dst = &l.TPM
	case "rpm":
		dst = &l.RPM
	case "concurrency":
		dst = &l.Concurrency
	case "tokens_per_day":
		dst = &l.TokensPerDay
	default:
		return false, false
	}
	*dst, good = p.count(v, path)
	return good, true
}

// crossCheck reports caps that contradict the limits. A request that passes
// the per-request caps but reserves more than a limit could never be
// admitted: the gateway would answer ThrottlingException forever, and SDKs
// retry throttles, so the mistake must be caught here. The reservation is
// input + max output × burndown, and every request has at least one input
// and one output token, so a cap equal to the limit is already too much.
func (p *configParser) crossCheck(b ModelBudget, path string, valid map[string]*yaml.Node, bad map[string]bool) {
	burndownOK := !bad["output_burndown"]
	outputCost := func(name string, n int) string {
		if b.OutputBurndown == 1 {
			return fmt.Sprintf("%s %d", name, n)
		}
		return fmt.Sprintf("%s %d (× output_burndown %g = %d tokens)", name, n, b.OutputBurndown, burnedDown(int64(n), b.OutputBurndown))
	}
	limits := []struct {
		name  string
		value int64
	}{{"tpm", b.Limits.TPM}, {"tokens_per_day", b.Limits.TokensPerDay}}
	for _, lim := range limits {
		if lim.value == 0 || valid[lim.name] == nil {
			continue
		}
		if n := valid["max_input_tokens"]; n != nil && b.MaxInputTokens > 0 && int64(b.MaxInputTokens) >= lim.value {
			p.add(n, path+".max_input_tokens", "max_input_tokens %d plus any output exceeds %s %d: a request at this cap could never be admitted",
				b.MaxInputTokens, lim.name, lim.value)
		}
		if !burndownOK {
			continue
		}
		if n := valid["max_output_tokens"]; n != nil && b.MaxOutputTokens > 0 && burnedDown(int64(b.MaxOutputTokens), b.OutputBurndown) >= lim.value {
			p.add(n, path+".max_output_tokens", "%s plus any input exceeds %s %d: a request at this cap could never be admitted",
				outputCost("max_output_tokens", b.MaxOutputTokens), lim.name, lim.value)
		}
		// With max_output_tokens set, default_max_tokens is checked
		// against it below, which covers this.
		if n := valid["default_max_tokens"]; n != nil && b.DefaultMaxTokens > 0 && b.MaxOutputTokens == 0 &&
			burnedDown(int64(b.DefaultMaxTokens), b.OutputBurndown) >= lim.value {
			p.add(n, path+".default_max_tokens", "%s plus any input exceeds %s %d: a request that names no max tokens could never be admitted",
				outputCost("default_max_tokens", b.DefaultMaxTokens), lim.name, lim.value)
		}
	}
	if n := valid["default_max_tokens"]; n != nil && valid["max_output_tokens"] != nil &&
		b.MaxOutputTokens > 0 && b.DefaultMaxTokens > b.MaxOutputTokens {
		p.add(n, path+".default_max_tokens", "default_max_tokens %d exceeds max_output_tokens %d: a request that names no max tokens would be refused by the cap",
			b.DefaultMaxTokens, b.MaxOutputTokens)
	}
}

// count parses a non-negative decimal integer of at most maxConfigCount.
func (p *configParser) count(n *yaml.Node, path string) (int64, bool) {
	const want = "must be a non-negative integer"
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		p.add(n, path, "%s, got %s", want, yamlDescribe(n))
		return 0, false
	}
	s := n.Value
	if n.ShortTag() == "!!float" || strings.HasPrefix(s, "-") {
		p.add(n, path, "%s, got %s", want, s)
		return 0, false
	}
	digits := strings.ReplaceAll(s, "_", "")
	if digits == "" || strings.Trim(digits, "0123456789") != "" || (len(digits) > 1 && digits[0] == '0') {
		p.add(n, path, "%s written in decimal, got %s (YAML reads a leading 0 as octal and 0x as hex)", want, s)
		return 0, false
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || v > maxConfigCount {
		p.add(n, path, "must be at most %d (Redis scripts count in doubles), got %s", int64(maxConfigCount), s)
		return 0, false
	}
	return v, true
}

// intCount is count for the int fields of ModelBudget.
func (p *configParser) intCount(n *yaml.Node, path string) (int, bool) {
	v, ok := p.count(n, path)
	return int(v), ok
}

// burndown parses output_burndown: a finite number >= 1.
func (p *configParser) burndown(n *yaml.Node, path string) (float64, bool) {
	const want = "must be a number >= 1 (1 for most models, 5 for those Bedrock burns down 5x)"
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		p.add(n, path, "%s, got %s", want, yamlDescribe(n))
		return 1, false
	}
	var f float64
	if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 1 {
		p.add(n, path, "%s, got %s", want, n.Value)
		return 1, false
	}
	return f, true
}

func (p *configParser) unknownField(key *yaml.Node, path string, known []string) {
	msg := fmt.Sprintf("unknown field %q", key.Value)
	if s := configClosestName(key.Value, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else {
		msg += " (known fields: " + strings.Join(known, ", ") + ")"
	}
	// The path names the unknown field itself: it is the field at fault,
	// and a top-level one would otherwise have no path at all.
	p.add(key, joinPath(path, key.Value), "%s", msg)
}

// yamlEntry is one key and value of a mapping.
type yamlEntry struct{ key, val *yaml.Node }

// entries returns a mapping's pairs in order, with merge keys (<<) expanded:
// as YAML's merge-key type specifies, a key written in the mapping wins over
// a merged one, and an earlier merged mapping wins over a later one.
// Duplicate and non-string keys are reported when report is set (it is not
// for merged mappings, which are reported where they are written).
func (p *configParser) entries(m *yaml.Node, path string, report bool) []yamlEntry {
	var out []yamlEntry
	first := map[string]int{} // key -> line
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			if report {
				p.add(k, path, "a key must be a plain string, got %s", yamlDescribe(k))
			}
			continue
		}
		if line, dup := first[k.Value]; dup {
			// yaml.v3 reports duplicate keys only when decoding into Go
			// maps and structs, not into a yaml.Node.
			if report {
				p.add(k, path, "duplicate key %q (first at line %d)", k.Value, line)
			}
			continue
		}
		first[k.Value] = k.Line
		out = append(out, yamlEntry{k, v})
	}
	for _, mv := range merges {
		mv = yamlResolve(mv)
		sources := []*yaml.Node{mv}
		if mv.Kind == yaml.SequenceNode {
			sources = sources[:0]
			for _, s := range mv.Content {
				sources = append(sources, yamlResolve(s))
			}
		}
		for _, src := range sources {
			if src.Kind != yaml.MappingNode {
				if report {
					p.add(src, path, "<< must merge a mapping or a list of mappings, got %s", yamlDescribe(src))
				}
				continue
			}
			for _, e := range p.entries(src, path, false) {
				if _, ok := first[e.key.Value]; ok {
					continue
				}
				first[e.key.Value] = e.key.Line
				out = append(out, e)
			}
		}
	}
	return out
}

func yamlRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil
		}
		return yamlResolve(doc.Content[0])
	}
	return yamlResolve(doc)
}

// yamlResolve returns the node an alias (*name) refers to.
func yamlResolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func yamlIsNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// yamlDescribe names what a node is, for "got ..." in messages.
func yamlDescribe(n *yaml.Node) string {
	switch {
	case yamlIsNull(n):
		return "null"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
		return "the string " + strconv.Quote(n.Value)
	case n.Kind == yaml.ScalarNode:
		return n.Value
	}
	return "an alias"
}

// configClosestName returns the known name nearest to name if it is a likely
// misspelling (edit distance at most 2, ignoring case), else "".
func configClosestName(name string, known []string) string {
	best, bestDist := "", 3
	lower := strings.ToLower(name)
	for _, k := range known {
		if d := configEditDistance(lower, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// configEditDistance is the Levenshtein distance between a and b, by bytes.
func configEditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Canonical renders the config as a budgets file: model ids and tenant ids
// sorted and quoted, every field written with its default filled in (0
// means no limit or no cap), no anchors or comments. Tenants' credentials
// appear as the file has them: key hashes, and the names of the variables
// or files that hold access-key secrets. Parsing it gives an equal Config. It
// shows what the gateway will enforce, e.g. for `gateway -check-config`, and
// is the form the golden test compares.
func (c *Config) Canonical() []byte {
	var b bytes.Buffer
	if c != nil && c.Default != nil {
		b.WriteString("default_model:\n")
		writeCanonicalBudget(&b, "  ", *c.Default)
	}
	if c == nil {
		b.WriteString("models: {}\ntenants: {}\n")
		return b.Bytes()
	}
	if len(c.Models) == 0 {
		b.WriteString("models: {}\n")
	} else {
		b.WriteString("models:\n")
	}
	for _, id := range slices.Sorted(maps.Keys(c.Models)) {
		// strconv.Quote's escapes are all valid in a YAML double-quoted
		// scalar, so any id round-trips.
		fmt.Fprintf(&b, "  %s:\n", strconv.Quote(id))
		writeCanonicalBudget(&b, "    ", c.Models[id])
	}
	writeCanonicalTenants(&b, c.Tenants)
	writeCanonicalRoutes(&b, c)
	return b.Bytes()
}

func writeCanonicalBudget(b *bytes.Buffer, indent string, m ModelBudget) {
	burndown := m.OutputBurndown
	if !(burndown >= 1) {
		burndown = 1
	}
	fields := []struct {
		name  string
		value string
	}{
		{"tpm", strconv.FormatInt(m.Limits.TPM, 10)},
		{"rpm", strconv.FormatInt(m.Limits.RPM, 10)},
		{"concurrency", strconv.FormatInt(m.Limits.Concurrency, 10)},
		{"tokens_per_day", strconv.FormatInt(m.Limits.TokensPerDay, 10)},
		{"max_input_tokens", strconv.Itoa(m.MaxInputTokens)},
		{"max_output_tokens", strconv.Itoa(m.MaxOutputTokens)},
		{"output_burndown", strconv.FormatFloat(burndown, 'g', -1, 64)},
		{"default_max_tokens", strconv.Itoa(m.DefaultMaxTokens)},
	}
	for _, f := range fields {
		fmt.Fprintf(b, "%s%s: %s\n", indent, f.name, f.value)
	}
}
