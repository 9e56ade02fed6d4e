package proxy

import (
	"mime"
	"net/http"
	"strings"
)

// forwardRequestHeaders copies the caller's headers that Bedrock acts on, and
// nothing else. An allow-list rather than a deny-list: the caller's
// Authorization, X-Amz-* signing headers, cookies and SDK retry bookkeeping
// must never reach Bedrock under the gateway's identity.
func forwardRequestHeaders(dst, src http.Header) {
	for k, vv := range src {
		if forwardable(k) {
			dst[k] = append([]string(nil), vv...)
		}
	}
}

// forwardable reports whether a canonical request header name is forwarded.
// All X-Amzn-Bedrock-* headers are request parameters of the Runtime API
// (Accept for streams, Trace, GuardrailIdentifier, GuardrailVersion,
// PerformanceConfig-Latency, Service-Tier, ...), so new ones pass too.
func forwardable(k string) bool {
	switch k {
	case "Content-Type", "Accept", "X-Amzn-Trace-Id":
		return true
	}
	return strings.HasPrefix(k, "X-Amzn-Bedrock-")
}

// hopHeaders are connection-level headers (RFC 9110 section 7.6.1) that a
// proxy must not copy from one connection to the next.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// copyResponseHeaders copies Bedrock's response headers (token counts,
// latency, x-amzn-RequestId, content types) minus hop-by-hop ones.
func copyResponseHeaders(dst, src http.Header) {
	for k, vv := range src {
		dst[k] = append(dst[k], vv...)
	}
	if c := src.Get("Connection"); c != "" {
		for _, f := range strings.Split(c, ",") {
			dst.Del(strings.TrimSpace(f))
		}
	}
	for _, h := range hopHeaders {
		dst.Del(h)
	}
}

// acceptedContentType reports whether a request Content-Type can carry a
// Bedrock body. An absent header counts as JSON (Bedrock's default
// contentType), and so does application/octet-stream: the AWS SDKs send it
// for InvokeModel when the caller leaves contentType unset, and Bedrock
// accepts it.
func acceptedContentType(v string) bool {
	if v == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(v)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "application/octet-stream" ||
		(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// upstreamErrorType reads Bedrock's exception name from a response. The
// header may carry a suffix after ':' (a namespace URL), which the SDKs drop.
func upstreamErrorType(h http.Header) string {
	t := h.Get("X-Amzn-Errortype")
	if i := strings.IndexByte(t, ':'); i >= 0 {
		t = t[:i]
	}
	return t
}
