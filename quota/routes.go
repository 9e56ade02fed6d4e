package quota

import (
	"bytes"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/quotagate/quotagate/tokens"
)

// Upstream is a Bedrock Runtime endpoint other than the gateway's own: a
// region, a private endpoint, or another account reached by assuming a role.
// A model served there has its own pool, keyed "id@name", because Bedrock's
// quotas are per region and per account.
type Upstream struct {
	// Name is the key in the file's upstreams section, and the part after
	// @ in a target or a pool id.
	Name string
	// Region is the signing region, and names the endpoint when Endpoint is
	// empty.
	Region string
	// Endpoint is the base URL; empty means the regional Bedrock Runtime
	// endpoint.
	Endpoint string
	// RoleARN, when set, is assumed (STS AssumeRole) with the gateway's own
	// credentials, and requests to this upstream are signed with the role's.
	RoleARN string
	// ExternalID is passed to AssumeRole, as the role's trust policy may
	// require.
	ExternalID string
}

// URL is where the upstream's Bedrock Runtime answers.
func (u Upstream) URL() string {
	if u.Endpoint != "" {
		return u.Endpoint
	}
	host := "bedrock-runtime." + u.Region + ".amazonaws.com"
	if strings.HasPrefix(u.Region, "cn-") {
		host += ".cn"
	}
	return "https://" + host
}

// Strategy is how a route orders its targets for a request.
type Strategy string

// The strategies.
const (
	// Priority tries the targets in order: the first with room serves, the
	// rest take only its overflow.
	Priority Strategy = "priority"
	// Spread picks among the targets by remaining headroom × weight, so that
	// load spreads before any budget is empty.
	Spread Strategy = "spread"
)

// Target is one model a route may send a request to.
type Target struct {
	// Model is the model id as the target upstream's Bedrock names it.
	Model string
	// Upstream names an entry of Config.Upstreams; empty is the gateway's
	// own upstream.
	Upstream string
	// Weight scales the target's share under Spread; at least 1.
	Weight int
}

// Pool is the target's budget pool: its model id, with "@upstream" when it
// is served elsewhere.
func (t Target) Pool() string {
	if t.Upstream == "" {
		return t.Model
	}
	return t.Model + "@" + t.Upstream
}

// Route sends requests for one model id (or an alias callers name instead of
// a model) to its targets.
type Route struct {
	// Name is the model id or alias callers request.
	Name string
	// Strategy orders the targets; Priority when the file names none.
	Strategy Strategy
	// CrossFamily allows targets of another model family than the caller's
	// body, translated (the default). False keeps a request within its
	// family: such targets are refused when the file is loaded.
	CrossFamily bool
	// Targets are tried in order (Priority) or by headroom (Spread).
	Targets []Target
}

// Family is the body family callers of the route write: the requested
// model's, or for an alias the first target's.
func (r Route) Family() tokens.Family {
	if f := tokens.FamilyOf(r.Name); f != tokens.Unknown {
		return f
	}
	if len(r.Targets) == 0 {
		return tokens.Unknown
	}
	return tokens.FamilyOf(r.Targets[0].Model)
}

// Route returns the route for a requested model id (a pool id: ARNs already
// reduced, see PoolID).
func (c *Config) Route(model string) (Route, bool) {
	if c == nil {
		return Route{}, false
	}
	r, ok := c.Routes[model]
	return r, ok
}

// Field names, for "did you mean".
var (
	routeFields    = []string{"strategy", "cross_family", "targets"}
	targetFields   = []string{"model", "upstream", "weight"}
	upstreamFields = []string{"region", "endpoint", "role_arn", "external_id"}
)

var (
	upstreamNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)
	regionRE       = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d+$`)
	roleARNRE      = regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$`)
)

func (p *configParser) upstreams(n *yaml.Node, cfg *Config) {
	for _, e := range p.section(n, "upstreams", "upstream name to region, endpoint and role") {
		name := e.key.Value
		path := "upstreams[" + strconv.Quote(name) + "]"
		if !upstreamNameRE.MatchString(name) {
			p.add(e.key, path, "an upstream name is 1 to 63 letters, digits, _ and -, starting with a letter or digit")
			continue
		}
		v := yamlResolve(e.val)
		if v.Kind != yaml.MappingNode {
			p.add(v, path, "must be a mapping with region (and optionally endpoint, role_arn, external_id), got %s", yamlDescribe(v))
			continue
		}
		u := Upstream{Name: name}
		before := len(p.errs)
		for _, f := range p.entries(v, path, true) {
			fpath, fv := path+"."+f.key.Value, yamlResolve(f.val)
			if f.key.Value != "region" && f.key.Value != "endpoint" && f.key.Value != "role_arn" && f.key.Value != "external_id" {
				p.unknownField(f.key, path, upstreamFields)
				continue
			}
			if !yamlIsString(fv) {
				p.add(fv, fpath, "must be a string, got %s", yamlDescribe(fv))
				continue
			}
			switch s := fv.Value; f.key.Value {
			case "region":
				if !regionRE.MatchString(s) {
					p.add(fv, fpath, "%q is not an AWS region (e.g. us-west-2)", s)
				}
				u.Region = s
			case "endpoint":
				if eu, err := url.Parse(s); err != nil || (eu.Scheme != "https" && eu.Scheme != "http") || eu.Host == "" || eu.RawQuery != "" {
					p.add(fv, fpath, "must be an http(s) URL such as https://bedrock-runtime.us-west-2.amazonaws.com, got %q", s)
				}
				u.Endpoint = strings.TrimSuffix(s, "/")
			case "role_arn":
				if !roleARNRE.MatchString(s) {
					p.add(fv, fpath, "must be an IAM role ARN (arn:aws:iam::123456789012:role/name), got %q", s)
				}
				u.RoleARN = s
			case "external_id":
				u.ExternalID = s
			}
		}
		if u.Region == "" {
			p.add(v, path+".region", "required: the region requests are signed for")
		}
		if u.ExternalID != "" && u.RoleARN == "" {
			p.add(v, path+".external_id", "applies only with role_arn")
		}
		if len(p.errs) == before {
			cfg.Upstreams[name] = u
		}
	}
}

func (p *configParser) routes(n *yaml.Node, cfg *Config) {
	for _, e := range p.section(n, "routes", "requested model id or alias to strategy and targets") {
		name := e.key.Value
		path := "routes[" + strconv.Quote(name) + "]"
		if msg := checkModelID(name); msg != "" {
			p.add(e.key, path, "%s", msg)
			continue
		}
		if strings.Contains(name, "@") {
			p.add(e.key, path, "callers name a model or an alias, never an upstream: remove the @")
			continue
		}
		if r, ok := p.route(name, yamlResolve(e.val), path); ok {
			cfg.Routes[name] = r
		}
	}
}

func (p *configParser) route(name string, n *yaml.Node, path string) (Route, bool) {
	r := Route{Name: name, Strategy: Priority, CrossFamily: true}
	if n.Kind != yaml.MappingNode {
		p.add(n, path, "must be a mapping with strategy and targets, got %s", yamlDescribe(n))
		return r, false
	}
	before := len(p.errs)
	var targetsNode *yaml.Node
	weighted := map[int]*yaml.Node{}
	for _, e := range p.entries(n, path, true) {
		fpath, v := path+"."+e.key.Value, yamlResolve(e.val)
		switch e.key.Value {
		case "strategy":
			if !yamlIsString(v) || (v.Value != string(Priority) && v.Value != string(Spread)) {
				p.add(v, fpath, "must be priority or spread, got %s", yamlDescribe(v))
				continue
			}
			r.Strategy = Strategy(v.Value)
		case "cross_family":
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
				p.add(v, fpath, "must be true or false, got %s", yamlDescribe(v))
				continue
			}
			r.CrossFamily = v.Value == "true"
		case "targets":
			targetsNode = v
			items, ok := p.list(v, fpath, "targets (model ids, id@upstream, or {model, upstream, weight})")
			if !ok {
				continue
			}
			seen := map[string]int{}
			for i, it := range items {
				tpath := fmt.Sprintf("%s[%d]", fpath, i)
				t, wn, ok := p.target(it, tpath)
				if !ok {
					continue
				}
				if first, dup := seen[t.Pool()]; dup {
					p.add(it, tpath, "%s is already target %d", t.Pool(), first)
					continue
				}
				seen[t.Pool()] = i
				if wn != nil {
					weighted[len(r.Targets)] = wn
				}
				if p.targetNodes == nil {
					p.targetNodes = map[string]*yaml.Node{}
				}
				p.targetNodes[fmt.Sprintf("%s[%d]", fpath, len(r.Targets))] = it
				r.Targets = append(r.Targets, t)
			}
		default:
			p.unknownField(e.key, path, routeFields)
		}
	}
	if targetsNode == nil || (len(r.Targets) == 0 && len(p.errs) == before) {
		p.add(n, path+".targets", "required: at least one target")
	}
	if r.Strategy == Priority {
		for _, wn := range weighted {
			p.add(wn, path+".targets", "weight applies only to strategy: spread")
			break
		}
	}
	if len(p.errs) != before {
		return r, false
	}
	caller := r.Family()
	for i, t := range r.Targets {
		tf := tokens.FamilyOf(t.Model)
		switch {
		case tf == caller:
		case !r.CrossFamily:
			p.add(targetsNode, fmt.Sprintf("%s.targets[%d]", path, i), "%s is a %s model but callers of %s write %s bodies, and cross_family is false", t.Model, familyName(tf), name, familyName(caller))
		case !translatable(caller) || !translatable(tf):
			p.add(targetsNode, fmt.Sprintf("%s.targets[%d]", path, i), "%s (%s) and %s (%s) bodies cannot be translated into each other; the translatable families are anthropic, meta, nova, titan and mistral (Converse calls need no translation: use a target of the same family, or set cross_family: false)",
				t.Model, familyName(tf), name, familyName(caller))
		}
	}
	return r, len(p.errs) == before
}

// translatable reports whether native bodies of f can be translated to and
// from the other translatable families (see package translate).
func translatable(f tokens.Family) bool {
	switch f {
	case tokens.Anthropic, tokens.Meta, tokens.Nova, tokens.Titan, tokens.Mistral:
		return true
	}
	return false
}

func familyName(f tokens.Family) string {
	if f == tokens.Unknown {
		return "unknown-family"
	}
	return string(f)
}

// target parses one target: "id", "id@upstream", or a mapping. wn is the
// weight's node when the target names one.
func (p *configParser) target(n *yaml.Node, path string) (t Target, wn *yaml.Node, ok bool) {
	t.Weight = 1
	before := len(p.errs)
	var atForm bool // written as id@upstream
	switch {
	case yamlIsString(n):
		var ok bool
		t.Model, t.Upstream, ok = strings.Cut(n.Value, "@")
		atForm = ok
	case n.Kind == yaml.MappingNode:
		for _, e := range p.entries(n, path, true) {
			fpath, v := path+"."+e.key.Value, yamlResolve(e.val)
			switch e.key.Value {
			case "model", "upstream":
				if !yamlIsString(v) {
					p.add(v, fpath, "must be a string, got %s", yamlDescribe(v))
					continue
				}
				if e.key.Value == "model" {
					t.Model = v.Value
				} else {
					t.Upstream = v.Value
				}
			case "weight":
				w, good := p.count(v, fpath)
				if good && (w < 1 || w > 1000) {
					p.add(v, fpath, "must be 1 to 1000, got %d", w)
				}
				t.Weight, wn = int(w), v
			default:
				p.unknownField(e.key, path, targetFields)
			}
		}
		if m, u, has := strings.Cut(t.Model, "@"); has {
			if t.Upstream != "" {
				p.add(n, path, "name the upstream once: model %q already has one after @", t.Model)
				return t, nil, false
			}
			t.Model, t.Upstream, atForm = m, u, true
		}
	default:
		p.add(n, path, "must be a model id, id@upstream, or a mapping {model, upstream, weight}, got %s", yamlDescribe(n))
		return t, nil, false
	}
	if len(p.errs) != before {
		return t, nil, false
	}
	if msg := checkModelID(t.Model); msg != "" {
		p.add(n, path, "%s", msg)
		return t, nil, false
	}
	switch {
	case strings.Contains(t.Upstream, "@"):
		p.add(n, path, "at most one @ (id@upstream)")
		return t, nil, false
	case atForm && t.Upstream == "":
		p.add(n, path, "id@upstream needs both a model id and an upstream name")
		return t, nil, false
	}
	if t.Upstream != "" {
		p.upstreamRefs = append(p.upstreamRefs, upstreamRef{name: t.Upstream, node: n, path: path})
	}
	return t, wn, true
}

// upstreamRef is a use of an upstream name, checked once every upstream is
// parsed (the sections may come in any order).
type upstreamRef struct {
	name string
	node *yaml.Node
	path string
}

// checkUpstreamRefs reports targets and pools naming an upstream the file
// does not define: such a pool would never be drawn on.
func (p *configParser) checkUpstreamRefs(cfg *Config) {
	for _, r := range p.upstreamRefs {
		if _, ok := cfg.Upstreams[r.name]; ok {
			continue
		}
		known := slices.Sorted(maps.Keys(cfg.Upstreams))
		msg := fmt.Sprintf("upstream %q is not defined in upstreams", r.name)
		if s := configClosestName(r.name, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		p.add(r.node, r.path, "%s", msg)
	}
}

// checkAliasTargets reports targets that name another route's alias: an
// alias is no model Bedrock knows, and routes are not followed from one
// to the next.
func (p *configParser) checkAliasTargets(cfg *Config) {
	for _, name := range slices.Sorted(maps.Keys(cfg.Routes)) {
		for i, t := range cfg.Routes[name].Targets {
			if other, ok := cfg.Routes[t.Model]; ok && other.Name != name && tokens.FamilyOf(t.Model) == tokens.Unknown && t.Upstream == "" {
				path := fmt.Sprintf("routes[%s].targets[%d]", strconv.Quote(name), i)
				p.add(p.targetNodes[path], path,
					"%q is a route alias, not a model: name its targets' models instead (routes are not chained)", t.Model)
			}
		}
	}
}

// writeCanonicalRoutes renders upstreams and routes for Canonical.
func writeCanonicalRoutes(b *bytes.Buffer, c *Config) {
	if len(c.Upstreams) > 0 {
		b.WriteString("upstreams:\n")
		for _, name := range slices.Sorted(maps.Keys(c.Upstreams)) {
			u := c.Upstreams[name]
			fmt.Fprintf(b, "  %s:\n    region: %s\n", strconv.Quote(name), strconv.Quote(u.Region))
			for _, f := range [][2]string{{"endpoint", u.Endpoint}, {"role_arn", u.RoleARN}, {"external_id", u.ExternalID}} {
				if f[1] != "" {
					fmt.Fprintf(b, "    %s: %s\n", f[0], strconv.Quote(f[1]))
				}
			}
		}
	}
	if len(c.Routes) == 0 {
		return
	}
	b.WriteString("routes:\n")
	for _, name := range slices.Sorted(maps.Keys(c.Routes)) {
		r := c.Routes[name]
		fmt.Fprintf(b, "  %s:\n    strategy: %s\n    cross_family: %t\n    targets:\n", strconv.Quote(name), r.Strategy, r.CrossFamily)
		for _, t := range r.Targets {
			fmt.Fprintf(b, "      - model: %s\n", strconv.Quote(t.Model))
			if t.Upstream != "" {
				fmt.Fprintf(b, "        upstream: %s\n", strconv.Quote(t.Upstream))
			}
			if r.Strategy == Spread {
				fmt.Fprintf(b, "        weight: %d\n", t.Weight)
			}
		}
	}
}
