package bedrock

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// ErrorType is the name of a Bedrock (or AWS front-end) exception, as it
// appears in the X-Amzn-ErrorType header and the __type field.
type ErrorType string

// Exception names that Bedrock Runtime and the AWS front end answer with. The
// AWS SDKs switch on these names to build typed errors.
const (
	AccessDenied               ErrorType = "AccessDeniedException"
	InternalServer             ErrorType = "InternalServerException"
	ModelError                 ErrorType = "ModelErrorException"
	ModelNotReady              ErrorType = "ModelNotReadyException"
	ModelStreamError           ErrorType = "ModelStreamErrorException"
	ModelTimeout               ErrorType = "ModelTimeoutException"
	ResourceNotFound           ErrorType = "ResourceNotFoundException"
	ServiceQuotaExceeded       ErrorType = "ServiceQuotaExceededException"
	ServiceUnavailable         ErrorType = "ServiceUnavailableException"
	Throttling                 ErrorType = "ThrottlingException"
	Validation                 ErrorType = "ValidationException"
	UnrecognizedClient         ErrorType = "UnrecognizedClientException"
	InvalidSignature           ErrorType = "InvalidSignatureException"
	UnknownOperation           ErrorType = "UnknownOperationException"
	RequestEntityTooLarge      ErrorType = "RequestEntityTooLargeException"
	UnsupportedMediaType       ErrorType = "UnsupportedMediaTypeException"
	InternalFailure            ErrorType = "InternalFailure"
	IncompleteSignature        ErrorType = "IncompleteSignatureException"
	MissingAuthenticationToken ErrorType = "MissingAuthenticationTokenException"
)

// Status returns the HTTP status Bedrock answers with for the exception, as
// listed in the Bedrock Runtime API reference (Errors sections).
func (t ErrorType) Status() int {
	switch t {
	case AccessDenied, UnrecognizedClient, InvalidSignature, IncompleteSignature, MissingAuthenticationToken:
		return http.StatusForbidden
	case ResourceNotFound, UnknownOperation:
		return http.StatusNotFound
	case ModelTimeout:
		return http.StatusRequestTimeout
	case ModelError:
		return http.StatusFailedDependency
	case ModelNotReady, Throttling:
		return http.StatusTooManyRequests
	case ServiceUnavailable:
		return http.StatusServiceUnavailable
	case RequestEntityTooLarge:
		return http.StatusRequestEntityTooLarge
	case UnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case InternalServer, InternalFailure:
		return http.StatusInternalServerError
	default: // Validation, ServiceQuotaExceeded, ModelStreamError and anything new
		return http.StatusBadRequest
	}
}

// Retryable reports whether Bedrock documents the exception as transient, so
// that the same request may succeed later or elsewhere.
func (t ErrorType) Retryable() bool {
	switch t {
	case Throttling, ModelNotReady, ServiceUnavailable, InternalServer, InternalFailure, ModelTimeout:
		return true
	}
	return false
}

// Error is a Bedrock-shaped error: what a caller's SDK will see.
type Error struct {
	Type    ErrorType
	Message string
	// RetryAfter, when positive, is sent as a Retry-After header in seconds.
	RetryAfter int
	// StatusCode overrides the type's usual status. The gateway uses it for
	// conditions Bedrock itself never reports, such as 502 and 504 from an
	// unreachable upstream, keeping a type the SDKs already know.
	StatusCode int
}

// Errorf returns an *Error of the given type with a formatted message.
func Errorf(t ErrorType, format string, args ...any) *Error {
	return &Error{Type: t, Message: fmt.Sprintf(format, args...)}
}

// Error implements error.
func (e *Error) Error() string { return string(e.Type) + ": " + e.Message }

// Status is the HTTP status of the error.
func (e *Error) Status() int {
	if e.StatusCode != 0 {
		return e.StatusCode
	}
	return e.Type.Status()
}

// errorBody is the rest-json error document. The SDKs read the type from the
// X-Amzn-ErrorType header first and from __type (or code) second, so both
// are set.
type errorBody struct {
	Message string    `json:"message"`
	Type    ErrorType `json:"__type"`
}

// Body returns the JSON error document.
func (e *Error) Body() []byte {
	b, _ := json.Marshal(errorBody{Message: e.Message, Type: e.Type}) // cannot fail: two strings
	return b
}

// Write sends the error as a complete rest-json response.
func (e *Error) Write(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-ErrorType", string(e.Type))
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	body := e.Body()
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status())
	_, _ = w.Write(body)
}
