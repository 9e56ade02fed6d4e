package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/tokens"
)

// Failure classes. Code anywhere in the package wraps one of these with %w
// and a message for the caller; bedrockError is the one place that turns a
// class into a status and a Bedrock exception name.
var (
	errUnknownOperation  = errors.New("unknown operation")
	errBodyTooLarge      = errors.New("request body too large")
	errUnsupportedMedia  = errors.New("unsupported content type")
	errCredentials       = errors.New("upstream credentials unavailable")
	errUpstreamTimeout   = errors.New("upstream timed out")
	errUpstreamFailed    = errors.New("upstream unreachable")
	errUpstreamBadStream = errors.New("upstream stream broken")
	errInternal          = errors.New("internal error")
	errThrottled         = errors.New("budget exhausted")
	errOverCap           = errors.New("over a per-request limit")
	errBudgetStore       = errors.New("budget store unavailable")
	errClientBody        = errors.New("unreadable request body")

	// Authentication (auth.go). Their messages are AWS's wording, kept
	// on the *authError that wraps them.
	errMissingToken        = errors.New("missing authentication token")
	errIncompleteSignature = errors.New("malformed authorization")
	errUnrecognizedClient  = errors.New("unknown key")
	errInvalidSignature    = errors.New("invalid signature")
	errModelDenied         = errors.New("model not allowed for the tenant")
	errAuthThrottled       = errors.New("too many failed authentications")
	errTenantsUnavailable  = errors.New("tenant directory unavailable")
	// A key the directory does not know before it has loaded the admin
	// API's keys: it may be one of them.
	errCredentialsUnverifiable = errors.New("credentials not verifiable yet")
)

// bedrockError maps any error the gateway produces to what the caller sees.
// Caddy's reverse proxy draws the same lines: 502 for an upstream that could
// not be reached, 504 for one that took too long. The exception names are
// ones the AWS SDKs know, so callers still get a typed, retryable error.
func bedrockError(err error) *bedrock.Error {
	var be *bedrock.Error
	if errors.As(err, &be) {
		return be
	}
	msg := err.Error()
	if te, ok := isThrottle(err); ok {
		// A budget's no looks like Bedrock's own throttle, so SDK retry
		// logic (and the caller's backoff) treats both the same.
		return &bedrock.Error{Type: bedrock.Throttling, Message: msg, RetryAfter: te.retryAfterSeconds()}
	}
	switch {
	case errors.Is(err, errAuthThrottled):
		// Bedrock's own throttle, so the SDKs back off; sent before the
		// credentials are looked at (auth.go).
		ae := authErrorOf(err)
		return &bedrock.Error{Type: bedrock.Throttling, Message: ae.msg, RetryAfter: ae.retryAfterSeconds()}
	case errors.Is(err, errMissingToken):
		// What AWS answers a request without credentials (403, "Missing
		// Authentication Token"); bedrockruntime has no type for it, so
		// SDKs raise a generic API error with this code.
		return &bedrock.Error{Type: bedrock.MissingAuthenticationToken, Message: authErrorOf(err).msg}
	case errors.Is(err, errIncompleteSignature):
		return &bedrock.Error{Type: bedrock.IncompleteSignature, Message: authErrorOf(err).msg}
	case errors.Is(err, errUnrecognizedClient):
		return &bedrock.Error{Type: bedrock.UnrecognizedClient, Message: authErrorOf(err).msg}
	case errors.Is(err, errInvalidSignature):
		return &bedrock.Error{Type: bedrock.InvalidSignature, Message: authErrorOf(err).msg}
	case errors.Is(err, errModelDenied):
		// The SDKs' typed AccessDeniedException, as Bedrock answers a
		// model the caller has no access to.
		return &bedrock.Error{Type: bedrock.AccessDenied, Message: authErrorOf(err).msg}
	case errors.Is(err, errTenantsUnavailable):
		return &bedrock.Error{Type: bedrock.ServiceUnavailable, Message: "The gateway cannot resolve its tenants right now. Try again later."}
	case errors.Is(err, errCredentialsUnverifiable):
		// 503, which the SDKs retry with backoff, where a 403 would
		// be final for a key that may well be good.
		ae := authErrorOf(err)
		return &bedrock.Error{Type: bedrock.ServiceUnavailable, Message: ae.msg, RetryAfter: ae.retryAfterSeconds()}
	case errors.Is(err, errOverCap):
		return &bedrock.Error{Type: bedrock.Validation, Message: msg}
	case errors.Is(err, quota.ErrInvalid):
		// The caller's own mistakes (a reservation over a budget) are
		// caught before the store as errOverCap; what the store refuses
		// is the gateway's: a script error, a key of the wrong type. Its
		// detail is for the access log, not for the caller.
		return &bedrock.Error{Type: bedrock.InternalServer, Message: "Internal error in the gateway."}
	case errors.Is(err, errNoTarget):
		// What the target models would have answered: this request is
		// not one they can take (tools, images, stop sequences...).
		return &bedrock.Error{Type: bedrock.Validation, Message: msg}
	case errors.Is(err, errClientBody):
		return &bedrock.Error{Type: bedrock.Validation, Message: msg}
	case errors.Is(err, errBudgetStore):
		return &bedrock.Error{Type: bedrock.ServiceUnavailable, Message: "The gateway cannot reach its budget store right now. Try again later."}
	case errors.Is(err, errUnknownOperation):
		// What AWS's front end answers for a path no operation is bound to.
		return &bedrock.Error{Type: bedrock.UnknownOperation, Message: msg}
	case errors.Is(err, tokens.ErrMalformed):
		return &bedrock.Error{Type: bedrock.Validation, Message: "Malformed input request: " + msg}
	case errors.Is(err, errBodyTooLarge), errors.Is(err, errUnsupportedMedia):
		return &bedrock.Error{Type: bedrock.Validation, Message: msg}
	case errors.Is(err, errCredentials):
		return &bedrock.Error{Type: bedrock.ServiceUnavailable, Message: "The gateway cannot sign requests to Bedrock right now. Try again later."}
	case errors.Is(err, errUpstreamTimeout):
		return &bedrock.Error{Type: bedrock.ModelTimeout, Message: msg, StatusCode: http.StatusGatewayTimeout}
	case errors.Is(err, errUpstreamFailed):
		return &bedrock.Error{Type: bedrock.ServiceUnavailable, Message: msg, StatusCode: http.StatusBadGateway}
	case errors.Is(err, errUpstreamBadStream):
		return &bedrock.Error{Type: bedrock.InternalServer, Message: msg}
	default:
		return &bedrock.Error{Type: bedrock.InternalServer, Message: "Internal error in the gateway."}
	}
}

// classifyTransport wraps an error from the upstream round trip in its class.
func classifyTransport(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, errCredentials):
		return err
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w: Bedrock did not answer in time: %w", errUpstreamTimeout, err)
	default:
		return fmt.Errorf("%w: Bedrock could not be reached: %w", errUpstreamFailed, err)
	}
}
