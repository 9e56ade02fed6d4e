package translate

import "strings"

// What a request may use beyond text, as named in ErrUntranslatable
// messages ("titan cannot take tool use").
const (
	featTools     = "tool use"
	featImages    = "images"
	featDocuments = "documents"
	featVideo     = "video"
	featSystem    = "a system prompt"
)

// capabilities are what a model takes through the Converse API besides text
// turns.
type capabilities struct {
	tools, images, documents, video, system bool
}

// can reports whether the model takes feature what. Anything not in the
// table (audio, extended thinking...) is assumed not.
func (c capabilities) can(what string) bool {
	switch what {
	case featTools:
		return c.tools
	case featImages:
		return c.images
	case featDocuments:
		return c.documents
	case featVideo:
		return c.video
	case featSystem:
		return c.system
	}
	return false
}

// modelCapabilities is the Bedrock user guide's "Supported models and model
// features" table (Converse API), by model id prefix, most specific first.
// It errs on the side of "no": a request refused here only loses one
// fallback candidate, while one sent to a model that cannot take it fails
// with a ValidationException after the fact. Video is Nova's alone.
var modelCapabilities = []struct {
	prefix string
	caps   capabilities
}{
	{"anthropic.claude-v2", capabilities{documents: true, system: true}},
	{"anthropic.claude-instant", capabilities{documents: true, system: true}},
	{"anthropic.claude-3-5-haiku", capabilities{tools: true, documents: true, system: true}},
	{"anthropic.claude", capabilities{tools: true, images: true, documents: true, system: true}},
	{"amazon.nova-micro", capabilities{tools: true, system: true}},
	{"amazon.nova-", capabilities{tools: true, images: true, documents: true, video: true, system: true}},
	{"amazon.titan-text-premier", capabilities{}},
	{"amazon.titan-t", capabilities{documents: true}}, // titan-text-*, titan-tg1-large
	{"meta.llama3-2-11b", capabilities{tools: true, images: true, documents: true, system: true}},
	{"meta.llama3-2-90b", capabilities{tools: true, images: true, documents: true, system: true}},
	{"meta.llama3-2", capabilities{documents: true, system: true}},
	{"meta.llama3-1", capabilities{tools: true, documents: true, system: true}},
	{"meta.llama3-3", capabilities{tools: true, documents: true, system: true}},
	{"meta.llama4", capabilities{tools: true, images: true, documents: true, system: true}},
	{"meta.llama", capabilities{documents: true, system: true}}, // Llama 2, Llama 3
	{"mistral.mistral-large", capabilities{tools: true, documents: true, system: true}},
	{"mistral.mistral-small", capabilities{tools: true, system: true}},
	{"mistral.pixtral", capabilities{tools: true, images: true, documents: true, system: true}},
	{"mistral.", capabilities{documents: true}}, // Mistral 7B and Mixtral Instruct: no system prompts
	{"cohere.command-r", capabilities{tools: true, documents: true, system: true}},
	{"cohere.command", capabilities{documents: true}},
}

// capabilitiesOf looks a model up. An unknown model, or an ARN that does not
// name its model, takes text turns only.
func capabilitiesOf(modelID string) capabilities {
	id, ok := foundationID(modelID)
	if !ok {
		return capabilities{}
	}
	for _, m := range modelCapabilities {
		if strings.HasPrefix(id, m.prefix) {
			return m.caps
		}
	}
	return capabilities{}
}

// providers are the first segment of foundation model ids; anything else
// before a dot is a cross-Region inference profile's geography.
var providers = []string{"anthropic", "amazon", "meta", "mistral", "cohere", "ai21", "deepseek", "writer", "openai", "qwen", "stability", "twelvelabs"}

// foundationID reduces a model id, cross-Region inference profile id or ARN
// to the foundation model id, as tokens.FamilyOf reads them. It reports
// false for ARNs that do not spell out the model (application inference
// profiles, provisioned throughput, custom and imported models).
func foundationID(modelID string) (string, bool) {
	id := modelID
	if strings.HasPrefix(id, "arn:") {
		parts := strings.SplitN(id, ":", 6)
		if len(parts) < 6 {
			return "", false
		}
		kind, rest, ok := strings.Cut(parts[5], "/")
		if !ok || (kind != "foundation-model" && kind != "inference-profile") {
			return "", false
		}
		id = rest
	}
	first, rest, ok := strings.Cut(id, ".")
	if !ok {
		return id, true
	}
	for _, p := range providers {
		if first == p {
			return id, true
		}
	}
	return rest, true
}
