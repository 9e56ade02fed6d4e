// Package bedrock is the Bedrock Runtime wire vocabulary that the gateway and
// the simulator share: the five operations and their paths, the rest-json
// error shape that the AWS SDKs turn into typed exceptions, and the
// application/vnd.amazon.eventstream framing of streamed responses.
//
// It holds no policy. Which error the gateway answers with, and why, is
// decided in package proxy; this package only knows how Bedrock spells it.
package bedrock
