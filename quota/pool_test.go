package quota

import "testing"

func TestPoolID(t *testing.T) {
	cases := map[string]string{
		"anthropic.claude-3-haiku-20240307-v1:0":                                                             "anthropic.claude-3-haiku-20240307-v1:0",
		"arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0":                 "anthropic.claude-3-haiku-20240307-v1:0",
		"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0": "us.anthropic.claude-3-haiku-20240307-v1:0",
		"us.anthropic.claude-3-haiku-20240307-v1:0":                                                          "us.anthropic.claude-3-haiku-20240307-v1:0",
		"arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123":                        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123",
		"arn:aws:bedrock:us-east-1:123456789012:provisioned-model/xyz":                                       "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/xyz",
	}
	for in, want := range cases {
		if got := PoolID(in); got != want {
			t.Errorf("PoolID(%q) = %q, want %q", in, got, want)
		}
	}
}
