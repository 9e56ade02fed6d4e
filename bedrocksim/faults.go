package bedrocksim

import (
	"net/http"
	"slices"
	"time"

	"github.com/quotagate/quotagate/bedrock"
)

// FaultKind is a failure the simulator can be told to produce, each as
// Bedrock Runtime reports it (API reference, Errors sections of the five
// operations).
type FaultKind int

// The kinds of fault.
const (
	// FaultThrottle answers 429 ThrottlingException before any work, as if
	// the account's quota (not the simulator's) said no.
	FaultThrottle FaultKind = iota + 1
	// FaultServiceUnavailable answers 503 ServiceUnavailableException.
	FaultServiceUnavailable
	// FaultModelNotReady answers 429 ModelNotReadyException, which Bedrock
	// returns while a model is being loaded.
	FaultModelNotReady
	// FaultInternal answers 500 InternalServerException.
	FaultInternal
	// FaultModelTimeout answers 408 ModelTimeoutException.
	FaultModelTimeout
	// FaultThrottleMidStream starts a stream and, after AfterEvents events,
	// sends a throttlingException exception message: how Bedrock reports a
	// throttle once the response has started. It applies only to streaming
	// operations.
	FaultThrottleMidStream
	// FaultStreamError starts a stream and, after AfterEvents events, sends a
	// modelStreamErrorException. It applies only to streaming operations.
	FaultStreamError
	// FaultReset closes the connection before any response: what a client
	// sees when a network path fails.
	FaultReset
)

// String names the kind.
func (k FaultKind) String() string {
	switch k {
	case FaultThrottle:
		return "throttle"
	case FaultServiceUnavailable:
		return "service-unavailable"
	case FaultModelNotReady:
		return "model-not-ready"
	case FaultInternal:
		return "internal"
	case FaultModelTimeout:
		return "model-timeout"
	case FaultThrottleMidStream:
		return "throttle-mid-stream"
	case FaultStreamError:
		return "stream-error"
	case FaultReset:
		return "reset"
	}
	return "unknown"
}

// midStream reports whether the fault happens inside a started stream.
func (k FaultKind) midStream() bool {
	return k == FaultThrottleMidStream || k == FaultStreamError
}

// Fault describes an injected failure.
type Fault struct {
	// Model restricts the fault to one model id (keyed as in Config.Models);
	// "" matches any model.
	Model string
	// Operation restricts the fault to one operation; "" matches any.
	Operation bedrock.Operation
	// Kind is what goes wrong.
	Kind FaultKind
	// Times is how many requests the fault applies to. Zero means 1.
	Times int
	// AfterEvents is, for the mid-stream kinds, how many events are sent
	// before the exception. A stream with fewer events sends the exception
	// after its last one.
	AfterEvents int
	// RetryAfter, when positive, is sent as a Retry-After header (whole
	// seconds, rounded up) with the error responses.
	RetryAfter time.Duration
}

// pendingFault is a queued fault with its remaining uses.
type pendingFault struct {
	Fault
	left int
}

// InjectFault queues a fault. Faults apply to matching requests in the
// order they were injected, each until its Times is used up.
func (s *Server) InjectFault(f Fault) {
	times := f.Times
	if times <= 0 {
		times = 1
	}
	s.mu.Lock()
	s.faults = append(s.faults, &pendingFault{Fault: f, left: times})
	s.mu.Unlock()
}

// matchFault returns the first queued fault that matches the request,
// without using it.
func (s *Server) matchFault(model string, op bedrock.Operation) *pendingFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Model != "" && f.Model != model {
			continue
		}
		if f.Operation != "" && f.Operation != op {
			continue
		}
		if f.Kind.midStream() && !op.Streaming() {
			continue
		}
		return f
	}
	return nil
}

// useFault uses a matched fault once. It reports false if concurrent
// requests used it up in the meantime. A mid-stream fault is used only when
// its stream starts, so that a stream refused earlier (a bad body, a quota)
// leaves it for the next.
func (s *Server) useFault(f *pendingFault) (*Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.left == 0 {
		return nil, false
	}
	f.left--
	if f.left == 0 {
		s.faults = slices.DeleteFunc(s.faults, func(p *pendingFault) bool { return p == f })
	}
	fault := f.Fault
	return &fault, true
}

// faultError is the exception a fault answers with.
func faultError(f *Fault) *bedrock.Error {
	var e *bedrock.Error
	switch f.Kind {
	case FaultThrottle, FaultThrottleMidStream:
		e = bedrock.Errorf(bedrock.Throttling, msgTooManyRequests)
	case FaultServiceUnavailable:
		e = bedrock.Errorf(bedrock.ServiceUnavailable, "Bedrock is unable to process your request.")
	case FaultModelNotReady:
		e = bedrock.Errorf(bedrock.ModelNotReady, "Model is not ready to serve inference requests. The AWS SDK will automatically retry the operation up to 5 times. For information about configuring automatic retries, see Retry behavior in the AWS SDKs and Tools reference guide.")
	case FaultModelTimeout:
		e = bedrock.Errorf(bedrock.ModelTimeout, "Model has timed out in processing the request. Try your request again.")
	case FaultStreamError:
		e = bedrock.Errorf(bedrock.ModelStreamError, "The model stream encountered an error. Try your request again.")
	default:
		e = bedrock.Errorf(bedrock.InternalServer, "The server encountered an internal error while processing the request.")
	}
	if f.RetryAfter > 0 {
		e.RetryAfter = int((f.RetryAfter + time.Second - 1) / time.Second)
	}
	return e
}

// serveFault answers a request with a fault that happens before any
// response.
func (s *Server) serveFault(w http.ResponseWriter, f *Fault) {
	if f.Kind != FaultReset {
		faultError(f).Write(w)
		return
	}
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
		return
	}
	// HTTP/2 cannot hand over its connection; aborting the handler resets
	// the stream instead, which is net/http's documented way to do it.
	panic(http.ErrAbortHandler)
}
