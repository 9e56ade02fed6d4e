package bedrocksim_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/quotagate/quotagate/bedrocksim"
)

// ExampleNew serves a simulator with httptest and calls it with the
// unmodified AWS SDK.
func ExampleNew() {
	sim := bedrocksim.New(bedrocksim.Config{
		OutputTokens: 8,
		Models: map[string]bedrocksim.Limits{
			"anthropic.claude-3-haiku-20240307-v1:0": {TPM: 10_000, RPM: 100},
		},
	})
	ts := httptest.NewServer(sim)
	defer ts.Close()

	client := bedrockruntime.New(bedrockruntime.Options{
		BaseEndpoint: aws.String(ts.URL),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(bedrocksim.AccessKeyID, bedrocksim.SecretAccessKey, ""),
	})
	out, err := client.Converse(context.Background(), &bedrockruntime.ConverseInput{
		ModelId: aws.String("anthropic.claude-3-haiku-20240307-v1:0"),
		Messages: []types.Message{{
			Role:    types.ConversationRoleUser,
			Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "What does a quota gate do?"}},
		}},
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(256)},
	})
	if err != nil {
		log.Fatal(err)
	}
	text := out.Output.(*types.ConverseOutputMemberMessage).Value.Content[0].(*types.ContentBlockMemberText).Value
	fmt.Println(text)
	fmt.Println(out.StopReason, *out.Usage.InputTokens, *out.Usage.OutputTokens)

	st := sim.Stats().Models["anthropic.claude-3-haiku-20240307-v1:0"]
	fmt.Println(st.Requests, st.MaxWindowTokens)
	// Output:
	// the window slides forward and every request settles
	// end_turn 10 8
	// 1 18
}
