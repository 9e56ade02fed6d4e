package tokens

import "testing"

func TestFamilyOf(t *testing.T) {
	for _, c := range []struct {
		id   string
		want Family
	}{
		// Foundation model ids, every family.
		{"anthropic.claude-3-haiku-20240307-v1:0", Anthropic},
		{"anthropic.claude-v2:1", Anthropic},
		{"anthropic.claude-opus-4-6-v1", Anthropic},
		{"meta.llama3-8b-instruct-v1:0", Meta},
		{"meta.llama4-maverick-17b-instruct-v1:0", Meta},
		{"amazon.titan-text-express-v1", Titan},
		{"amazon.titan-text-premier-v1:0", Titan},
		{"amazon.titan-tg1-large", Titan},
		{"amazon.nova-micro-v1:0", Nova},
		{"amazon.nova-premier-v1:0", Nova},
		{"amazon.nova-2-lite-v1:0", Nova},
		{"mistral.mistral-7b-instruct-v0:2", Mistral},
		{"mistral.mistral-large-2407-v1:0", Mistral},
		{"cohere.command-text-v14", Cohere},
		{"cohere.command-light-text-v14", Cohere},
		{"cohere.command-r-plus-v1:0", Cohere},
		// Cross-region inference profiles.
		{"us.anthropic.claude-3-5-sonnet-20241022-v2:0", Anthropic},
		{"eu.anthropic.claude-3-7-sonnet-20250219-v1:0", Anthropic},
		{"apac.amazon.nova-pro-v1:0", Nova},
		{"global.anthropic.claude-sonnet-4-5-20250929-v1:0", Anthropic},
		{"us-gov.anthropic.claude-3-haiku-20240307-v1:0", Anthropic},
		{"us.meta.llama3-2-90b-instruct-v1:0", Meta},
		{"us.mistral.pixtral-large-2502-v1:0", Mistral},
		{"jp.anthropic.claude-sonnet-4-5-20250929-v1:0", Anthropic},
		// ARNs that name the model.
		{"arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0", Anthropic},
		{"arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-lite-v1", Titan},
		{"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-1-8b-instruct-v1:0", Meta},
		{"arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:inference-profile/us-gov.anthropic.claude-3-5-sonnet-20240620-v1:0", Anthropic},
		// Opaque ARNs.
		{"arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6", Unknown},
		{"arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcdef123456", Unknown},
		{"arn:aws:bedrock:us-east-1:123456789012:custom-model/anthropic.claude-3-haiku-20240307-v1:0:200k/abc", Unknown},
		{"arn:aws:bedrock:us-east-1:123456789012:imported-model/abc123", Unknown},
		{"arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1", Unknown},
		{"arn:aws:bedrock", Unknown},
		// Same providers, other body shapes.
		{"amazon.titan-embed-text-v2:0", Unknown},
		{"amazon.nova-canvas-v1:0", Unknown},
		{"amazon.nova-reel-v1:1", Unknown},
		{"amazon.nova-sonic-v1:0", Unknown},
		{"cohere.embed-english-v3", Unknown},
		{"cohere.rerank-v3-5:0", Unknown},
		// Other providers and nonsense.
		{"ai21.jamba-1-5-large-v1:0", Unknown},
		{"deepseek.r1-v1:0", Unknown},
		{"us.deepseek.r1-v1:0", Unknown},
		{"stability.sd3-large-v1:0", Unknown},
		{"", Unknown},
		{"anthropic", Unknown},
		{"claude-3-haiku", Unknown},
	} {
		if got := FamilyOf(c.id); got != c.want {
			t.Errorf("FamilyOf(%q) = %q, want %q", c.id, got, c.want)
		}
	}
}

func TestLimitFor(t *testing.T) {
	for _, c := range []struct {
		f        Family
		id       string
		def, max int
	}{
		{Anthropic, "anthropic.claude-3-haiku-20240307-v1:0", 4096, 4096},
		{Anthropic, "anthropic.claude-3-5-haiku-20241022-v1:0", 8192, 8192},
		{Anthropic, "anthropic.claude-3-7-sonnet-20250219-v1:0", 64000, 64000},
		{Anthropic, "anthropic.claude-sonnet-4-20250514-v1:0", 64000, 64000},
		{Anthropic, "anthropic.claude-sonnet-4-5-20250929-v1:0", 64000, 64000},
		{Anthropic, "anthropic.claude-haiku-4-5-20251001-v1:0", 64000, 64000},
		{Anthropic, "anthropic.claude-opus-4-20250514-v1:0", 32000, 32000},
		{Anthropic, "anthropic.claude-opus-4-5-20251101-v1:0", 64000, 64000},
		{Anthropic, "anthropic.claude-opus-4-6-v1", 128000, 128000},
		{Meta, "meta.llama2-13b-chat-v1", 512, 2048},
		{Meta, "meta.llama3-1-405b-instruct-v1:0", 512, 4096},
		{Titan, "amazon.titan-text-premier-v1:0", 512, 3072},
		{Nova, "amazon.nova-lite-v1:0", 5000, 5000},
		{Mistral, "mistral.mixtral-8x7b-instruct-v0:1", 512, 4096},
		{Cohere, "cohere.command-r-v1:0", 4000, 4000},
		{Cohere, "cohere.command-text-v14", 20, 4096},
		{Unknown, "ai21.jamba-instruct-v1:0", 4096, 4096},
		{Family("future"), "x", 4096, 4096},
	} {
		if got := limitFor(c.f, c.id); got.def != c.def || got.max != c.max {
			t.Errorf("limitFor(%q, %q) = %d, %d, want %d, %d", c.f, c.id, got.def, got.max, c.def, c.max)
		}
	}
}
