package proxy

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/tokens"
)

// relayStream forwards an eventstream one complete event at a time and
// flushes after each, so the caller sees every event the moment Bedrock sent
// it. Usage is read from the events as they pass. If Bedrock's stream breaks
// mid-way the caller receives a typed exception event rather than a silent
// cut, so its SDK reports an error instead of a short answer.
func (g *Gateway) relayStream(w http.ResponseWriter, r *http.Request, ex *exchange, resp *http.Response) {
	rc := http.NewResponseController(w)
	ex.status = resp.StatusCode
	ex.wroteHeader = true
	w.WriteHeader(resp.StatusCode)
	// Headers go out now: the SDK returns from the call (and starts reading
	// events) only once it has them.
	_ = rc.Flush()

	family := ex.req.Family
	if !ex.route.Operation.Native() {
		family = tokens.Converse
	}
	usage := tokens.NewStreamUsage(family)
	defer func() { ex.usage = usage.Usage().Merge(tokens.UsageFromHeaders(resp.Header)) }()

	frames := bedrock.NewFrameReader(resp.Body)
	for {
		frame, err := frames.Next()
		if errors.Is(err, io.EOF) {
			// Complete only without an exception: a stream Bedrock ended
			// with one may have generated more than its usage events told,
			// so it is charged as if cut short.
			ex.upstreamEnded = true
			ex.completed = ex.errType == ""
			return
		}
		if err != nil {
			if r.Context().Err() != nil {
				ex.status, ex.err = statusClientClosed, r.Context().Err()
				return
			}
			g.breakStream(w, rc, ex, fmt.Errorf("%w: %w", errUpstreamBadStream, err))
			return
		}
		ev, err := bedrock.DecodeFrame(frame)
		if err != nil {
			// A frame that fails its CRC would also fail in the caller's
			// decoder; say so in a frame it can read instead.
			g.breakStream(w, rc, ex, fmt.Errorf("%w: %w", errUpstreamBadStream, err))
			return
		}
		switch ev.MessageType {
		case bedrock.MessageTypeEvent:
			usage.Observe(ev.EventType, ev.Payload)
		case bedrock.MessageTypeException, bedrock.MessageTypeError:
			ex.errType = string(bedrock.ErrorTypeFromStream(ev.ExceptionType))
		}
		n, err := w.Write(frame)
		ex.bytesOut += int64(n)
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			// The caller is gone. Returning closes Bedrock's body, and the
			// request context is cancelled, which stops generation upstream.
			ex.status, ex.err = statusClientClosed, err
			return
		}
		if ex.events == 0 {
			ex.firstByte = time.Since(ex.start)
		}
		ex.events++
	}
}

// breakStream ends a started stream with an exception event.
func (g *Gateway) breakStream(w io.Writer, rc *http.ResponseController, ex *exchange, err error) {
	be := bedrockError(err)
	ex.err, ex.errType = err, string(be.Type)
	if werr := bedrock.WriteException(w, be); werr == nil {
		_ = rc.Flush()
	}
}

func isEventStream(h http.Header) bool {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && mt == bedrock.EventStreamContentType
}
