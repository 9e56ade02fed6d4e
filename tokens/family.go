package tokens

import "strings"

// Family is a request/response body format.
type Family string

// The body families. A model's native InvokeModel body belongs to the family
// of its provider; Converse and ConverseStream bodies are one family whatever
// the model.
const (
	Unknown   Family = ""
	Anthropic Family = "anthropic" // Anthropic Claude Messages API bodies (anthropic_version bedrock-2023-05-31)
	Meta      Family = "meta"      // Meta Llama: prompt / max_gen_len
	Titan     Family = "titan"     // Amazon Titan Text: inputText / textGenerationConfig
	Nova      Family = "nova"      // Amazon Nova: schemaVersion messages-v1, inferenceConfig.max_new_tokens
	Mistral   Family = "mistral"   // Mistral: prompt or messages / max_tokens
	Cohere    Family = "cohere"    // Cohere Command (prompt) and Command R/R+ (message, chat_history)
	Converse  Family = "converse"  // the Converse / ConverseStream shape, any model
)

// FamilyOf maps a decoded model id to the family of its native InvokeModel body.
// Handles foundation model ids ("anthropic.claude-3-haiku-20240307-v1:0"),
// cross-region inference profile ids ("us.anthropic...", "eu.", "apac.", "global." etc.),
// and ARNs (arn:aws:bedrock:us-east-1::foundation-model/<id>,
// arn:aws:bedrock:us-east-1:123456789012:inference-profile/<id>). Opaque ARNs
// (application-inference-profile, provisioned-model, custom-model, imported-model) -> Unknown.
//
// Models of a known provider whose bodies are not text generation (Titan and
// Cohere embeddings, Nova Canvas, Reel and Sonic) are Unknown too: their
// bodies have a different shape.
func FamilyOf(modelID string) Family {
	id, ok := baseModelID(modelID)
	if !ok {
		return Unknown
	}
	provider, rest, ok := strings.Cut(id, ".")
	if !ok {
		return Unknown
	}
	f := providerFamily(provider, rest)
	if f == Unknown {
		// A cross-region inference profile id puts a geography before the
		// provider: us., eu., apac., global., us-gov., jp. and more to come,
		// so any first segment is accepted rather than a fixed list.
		if provider, rest, ok = strings.Cut(rest, "."); ok {
			f = providerFamily(provider, rest)
		}
	}
	return f
}

// baseModelID strips an ARN down to the model or inference profile id it
// names. It reports false for ARNs whose resource does not spell out the model
// (application inference profiles, provisioned throughput, custom and imported
// models, prompt routers): their family depends on account configuration.
func baseModelID(modelID string) (string, bool) {
	if !strings.HasPrefix(modelID, "arn:") {
		return modelID, true
	}
	// arn:partition:service:region:account:resource; the resource itself may
	// contain colons ("...-v1:0"), so split off the first five fields only.
	parts := strings.SplitN(modelID, ":", 6)
	if len(parts) < 6 {
		return "", false
	}
	kind, id, ok := strings.Cut(parts[5], "/")
	if !ok || (kind != "foundation-model" && kind != "inference-profile") {
		return "", false
	}
	return id, true
}

// providerFamily maps the provider segment of a model id, and the rest of the
// id after it, to a family.
func providerFamily(provider, rest string) Family {
	switch provider {
	case "anthropic":
		return Anthropic
	case "meta":
		return Meta
	case "mistral":
		return Mistral
	case "cohere":
		// command-text, command-light-text, command-r, command-r-plus;
		// embed-* and rerank-* take other bodies.
		if strings.HasPrefix(rest, "command") {
			return Cohere
		}
	case "amazon":
		switch {
		case strings.HasPrefix(rest, "titan-text"), strings.HasPrefix(rest, "titan-tg1"):
			return Titan
		case strings.HasPrefix(rest, "nova-"):
			for _, other := range []string{"canvas", "reel", "sonic", "embed"} {
				if strings.Contains(rest, other) {
					return Unknown
				}
			}
			return Nova
		}
	}
	return Unknown
}

// familyOps is what one family contributes: the rest of the package is shared.
type familyOps struct {
	// parse reads a native request body.
	parse func(modelID string, body []byte) (Request, error)
	// usage reads a native response body or one decoded stream chunk; both
	// carry the same field names, and so share one struct per family.
	usage func(body []byte) (Usage, *invocationMetrics, error)
	// streamKeys are quoted JSON keys of which a stream chunk must contain at
	// least one to carry usage; other chunks (the text deltas, which are most
	// of them) are not decoded. Empty means decode every chunk.
	streamKeys [][]byte
	// limits are the output-token defaults by model id substring, most
	// specific first; fallback applies when none matches.
	limits   []modelLimit
	fallback modelLimit
}

// modelLimit is the output budget of a group of models.
type modelLimit struct {
	match string // substring of the model id
	// def is the max output tokens the model uses when a native body omits
	// the field.
	def int
	// max is the model's largest max output. Converse uses it when
	// inferenceConfig.maxTokens is absent: the API reference says the
	// default "is the maximum allowed value for the model that you are using".
	max int
}

// unknownLimit is the conservative budget of a model we know nothing about.
var unknownLimit = modelLimit{def: 4096, max: 4096}

// keys converts streamKeys once, so that matching them allocates nothing.
func keys(ks ...string) [][]byte {
	out := make([][]byte, len(ks))
	for i, k := range ks {
		out[i] = []byte(k)
	}
	return out
}

// metricsKey is the object Bedrock adds to the last chunk of every
// InvokeModelWithResponseStream response.
const metricsKey = `"amazon-bedrock-invocationMetrics"`

var families = map[Family]*familyOps{
	Anthropic: &anthropicOps,
	Meta:      &metaOps,
	Titan:     &titanOps,
	Nova:      &novaOps,
	Mistral:   &mistralOps,
	Cohere:    &cohereOps,
	Converse:  &converseOps,
	Unknown:   &unknownOps,
}

// opsOf returns the family's functions; a family this package does not know
// is read like Unknown.
func opsOf(f Family) *familyOps {
	if ops, ok := families[f]; ok {
		return ops
	}
	return &unknownOps
}

// limitFor returns the output budget of modelID within family f.
func limitFor(f Family, modelID string) modelLimit {
	ops := opsOf(f)
	for _, l := range ops.limits {
		if strings.Contains(modelID, l.match) {
			return l
		}
	}
	if ops.fallback.max == 0 {
		return unknownLimit
	}
	return ops.fallback
}
