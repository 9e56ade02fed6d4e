package telemetry

import (
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// GenAI semantic-convention attributes (OpenTelemetry semconv for generative
// AI client spans), re-exported so that the rest of the gateway does not pick
// a semconv version of its own.
var (
	GenAIOperationName        = semconv.GenAIOperationNameKey
	GenAIProviderName         = semconv.GenAIProviderNameKey
	GenAIRequestModel         = semconv.GenAIRequestModelKey
	GenAIRequestMaxTokens     = semconv.GenAIRequestMaxTokensKey
	GenAIResponseFinishReason = semconv.GenAIResponseFinishReasonsKey
	GenAIResponseID           = semconv.GenAIResponseIDKey
	GenAIUsageInputTokens     = semconv.GenAIUsageInputTokensKey
	GenAIUsageOutputTokens    = semconv.GenAIUsageOutputTokensKey
	GenAIUsageCacheReadTokens = semconv.GenAIUsageCacheReadInputTokensKey
	ErrorType                 = semconv.ErrorTypeKey
	ServerAddress             = semconv.ServerAddressKey
	ServerPort                = semconv.ServerPortKey
	HTTPResponseStatusCode    = semconv.HTTPResponseStatusCodeKey
)

// ProviderAWSBedrock is the gen_ai.provider.name value for Bedrock.
var ProviderAWSBedrock = semconv.GenAIProviderNameAWSBedrock

// Quotagate's own attributes. They are namespaced so that they never collide
// with a future semantic convention.
const (
	// RequestID is the gateway's own id for a request, also in the access log.
	RequestID = attribute.Key("quotagate.request_id")
	// Tenant is the calling tenant's id (never a key or secret).
	Tenant = attribute.Key("quotagate.tenant")
	// Operation is the Bedrock Runtime operation (InvokeModel, ConverseStream, ...).
	Operation = attribute.Key("aws.bedrock.operation")
	// BodyFamily is the request body format (anthropic, meta, converse, ...).
	BodyFamily = attribute.Key("quotagate.body_family")
	// EstimatedInputTokens is the gateway's pre-flight estimate, kept next to
	// the actual input tokens so that estimate error can be read off a trace.
	EstimatedInputTokens = attribute.Key("quotagate.estimated_input_tokens")
	// CacheWriteTokens counts prompt-cache writes, which Bedrock bills as input.
	CacheWriteTokens = attribute.Key("gen_ai.usage.cache_creation.input_tokens")
	// UpstreamRequestID is Bedrock's x-amzn-RequestId, for AWS support cases.
	UpstreamRequestID = attribute.Key("aws.request_id")
	// Attempt numbers the upstream calls of one routed request, from 1.
	Attempt = attribute.Key("quotagate.attempt")
	// Target is the route target an attempt went to, as its budget pool
	// names it (model id, with @upstream for another upstream).
	Target = attribute.Key("quotagate.target")
	// FallbackReason is why a routed request moved on from an attempt's
	// target: the Bedrock exception, "connection", or "stream".
	FallbackReason = attribute.Key("quotagate.fallback.reason")
	// ServedModel is the model that served a routed request.
	ServedModel = attribute.Key("quotagate.served_model")
)

// Operation names for gen_ai.operation.name. Converse is a chat API; native
// InvokeModel bodies are chat for message-shaped families and text
// completion for prompt-shaped ones.
const (
	OperationChat           = "chat"
	OperationTextCompletion = "text_completion"
	// OperationCountTokens has no semantic-convention value yet.
	OperationCountTokens = "count_tokens"
)
