package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/tokens"
	"github.com/quotagate/quotagate/translate"
)

// relayStream forwards an eventstream one complete event at a time and
// flushes after each, so the caller sees every event the moment Bedrock sent
// it. Usage is read from the events as they pass. If Bedrock's stream breaks
// mid-way the caller receives a typed exception event rather than a silent
// cut, so its SDK reports an error instead of a short answer.
//
// first, when set, is the stream's first frame, already read from resp.Body
// (a routed request reads it before deciding to answer). When the request
// was translated, each chunk is translated back into the caller's family on
// its way: usage is read from Bedrock's own chunks first.
func (g *Gateway) relayStream(w http.ResponseWriter, r *http.Request, ex *exchange, resp *http.Response, first []byte) {
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

	var back *translate.Stream
	if ex.invoke != nil {
		back = ex.invoke.Stream()
	}
	frames := bedrock.NewFrameReader(resp.Body)
	for {
		frame, err := first, error(nil)
		if first != nil {
			first = nil
		} else {
			frame, err = frames.Next()
		}
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
		if back != nil && ev.MessageType == bedrock.MessageTypeEvent && ev.EventType == "chunk" {
			if frame, err = translateChunk(back, ev.Payload); err != nil {
				g.breakStream(w, rc, ex, fmt.Errorf("%w: %w", errUpstreamBadStream, err))
				return
			}
			if len(frame) == 0 {
				continue // the caller's family has nothing to say yet
			}
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

// translateChunk turns one chunk event of the served model's family into
// the frames of the caller's family (none, one or several).
func translateChunk(back *translate.Stream, payload []byte) ([]byte, error) {
	var p struct {
		Bytes []byte `json:"bytes"` // base64 in JSON, decoded by encoding/json
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("chunk payload: %w", err)
	}
	chunks, err := back.Chunk(p.Bytes)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, c := range chunks {
		enc, err := json.Marshal(struct {
			Bytes []byte `json:"bytes"`
		}{c})
		if err != nil {
			return nil, err
		}
		if err := bedrock.WriteEvent(&out, "chunk", enc); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
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
