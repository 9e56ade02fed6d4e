// Package bedrocksim is a simulated Amazon Bedrock Runtime for tests, demos
// and benchmarks. It is what Quotagate sits in front of when it is not in
// front of AWS, so it behaves the way the real service does where the
// gateway can tell the difference:
//
//   - the five Bedrock Runtime operations (InvokeModel,
//     InvokeModelWithResponseStream, Converse, ConverseStream, CountTokens)
//     on their REST paths, with model ids percent-encoded as the SDKs send
//     them (foundation model ids, cross-Region inference profile ids, and
//     foundation-model/ or inference-profile/ ARNs);
//   - AWS Signature Version 4 verification (service "bedrock") and Bedrock
//     API keys (Authorization: Bearer), failing with the exceptions AWS uses;
//   - each model family's native request and response bodies (Anthropic
//     Claude, Meta Llama, Amazon Titan Text, Amazon Nova, Mistral, Cohere
//     Command and Command R), with usage, and the Converse shapes;
//   - application/vnd.amazon.eventstream responses, flushed event by event,
//     with Bedrock's invocation metrics in the last chunk;
//   - per-model quotas the way Bedrock counts them: tokens per minute with
//     the token burndown reservation (input + max tokens x burndown at the
//     start, settled to the actual usage at the end), requests per minute
//     and concurrency, answering 429 ThrottlingException;
//   - latency (time to first token, time per output token) and injectable
//     faults, including exceptions in the middle of a stream;
//   - AWS STS AssumeRole (NewSTS), for Bedrock in another account by role.
//
// Generated text is deterministic filler, and token counts come from the
// simulator's own simple tokenizer, so the gateway's estimates are checked
// against an independent count. The unmodified AWS SDK for Go v2
// (service/bedrockruntime) works against it; use it with
// net/http/httptest:
//
//	sim := bedrocksim.New(bedrocksim.Config{})
//	ts := httptest.NewServer(sim)
//	defer ts.Close()
//	client := bedrockruntime.New(bedrockruntime.Options{
//		BaseEndpoint: aws.String(ts.URL),
//		Region:       "us-east-1",
//		Credentials: credentials.NewStaticCredentialsProvider(
//			bedrocksim.AccessKeyID, bedrocksim.SecretAccessKey, ""),
//	})
package bedrocksim
