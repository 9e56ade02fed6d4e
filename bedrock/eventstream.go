package bedrock

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// EventStreamContentType is the media type of Bedrock's streamed responses.
const EventStreamContentType = "application/vnd.amazon.eventstream"

// Eventstream header names and message types (AWS event stream encoding).
const (
	HeaderMessageType   = ":message-type"
	HeaderEventType     = ":event-type"
	HeaderExceptionType = ":exception-type"
	HeaderContentType   = ":content-type"
	HeaderErrorCode     = ":error-code"
	HeaderErrorMessage  = ":error-message"

	MessageTypeEvent     = "event"
	MessageTypeException = "exception"
	MessageTypeError     = "error"
)

// MaxFrameLen bounds one eventstream message. The encoding caps a payload at
// 16 MiB and headers at 128 KiB; anything longer is a corrupt stream.
const MaxFrameLen = 16*1024*1024 + 128*1024 + 16

// preludeLen is total length (4) + headers length (4) + prelude CRC (4).
const preludeLen = 12

// ErrFrameTooLarge is returned for a frame whose prelude announces more than
// MaxFrameLen bytes.
var ErrFrameTooLarge = errors.New("eventstream frame too large")

// FrameReader reads whole eventstream frames without interpreting them, so
// that a proxy can forward each event the moment it is complete.
type FrameReader struct {
	r   io.Reader
	buf []byte
}

// NewFrameReader returns a FrameReader over r.
func NewFrameReader(r io.Reader) *FrameReader { return &FrameReader{r: r} }

// Next returns the next complete frame. The slice is valid until the next
// call. It returns io.EOF at a clean end between frames and
// io.ErrUnexpectedEOF for a frame cut short.
func (f *FrameReader) Next() ([]byte, error) {
	if cap(f.buf) < preludeLen {
		f.buf = make([]byte, preludeLen, 4096)
	}
	f.buf = f.buf[:preludeLen]
	if _, err := io.ReadFull(f.r, f.buf); err != nil {
		return nil, err
	}
	total := binary.BigEndian.Uint32(f.buf[0:4])
	if total < preludeLen+4 {
		return nil, fmt.Errorf("eventstream frame length %d too short", total)
	}
	if total > MaxFrameLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, total)
	}
	if cap(f.buf) < int(total) {
		nb := make([]byte, total)
		copy(nb, f.buf)
		f.buf = nb
	}
	f.buf = f.buf[:total]
	if _, err := io.ReadFull(f.r, f.buf[preludeLen:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return f.buf, nil
}

// Event is the part of a decoded eventstream message that callers look at.
type Event struct {
	MessageType   string
	EventType     string
	ExceptionType string
	Payload       []byte
}

var decoder = eventstream.NewDecoder()

// DecodeFrame decodes one complete frame, checking both CRCs.
func DecodeFrame(frame []byte) (Event, error) {
	msg, err := decoder.Decode(bytes.NewReader(frame), nil)
	if err != nil {
		return Event{}, err
	}
	return Event{
		MessageType:   headerString(msg.Headers, HeaderMessageType),
		EventType:     headerString(msg.Headers, HeaderEventType),
		ExceptionType: headerString(msg.Headers, HeaderExceptionType),
		Payload:       msg.Payload,
	}, nil
}

func headerString(h eventstream.Headers, name string) string {
	if v := h.Get(name); v != nil {
		return v.String()
	}
	return ""
}

// encoders are pooled: an eventstream.Encoder keeps scratch buffers and is
// not safe for concurrent use, while streams are written from many handlers.
var encoders = sync.Pool{New: func() any { return eventstream.NewEncoder() }}

func encode(w io.Writer, msg eventstream.Message) error {
	enc := encoders.Get().(*eventstream.Encoder)
	defer encoders.Put(enc)
	return enc.Encode(w, msg)
}

// WriteEvent writes one event message with a JSON payload, as Bedrock frames
// chunk events (InvokeModelWithResponseStream) and ConverseStream events.
func WriteEvent(w io.Writer, eventType string, payload []byte) error {
	return encode(w, eventstream.Message{
		Headers: eventstream.Headers{
			{Name: HeaderEventType, Value: eventstream.StringValue(eventType)},
			{Name: HeaderContentType, Value: eventstream.StringValue("application/json")},
			{Name: HeaderMessageType, Value: eventstream.StringValue(MessageTypeEvent)},
		},
		Payload: payload,
	})
}

// WriteException writes a modelled exception message. On a stream that has
// already started this is how Bedrock reports a failure, and the SDKs raise it
// as the typed exception (for example *types.ThrottlingException) from the
// event reader.
func WriteException(w io.Writer, e *Error) error {
	return encode(w, eventstream.Message{
		Headers: eventstream.Headers{
			{Name: HeaderExceptionType, Value: eventstream.StringValue(StreamExceptionName(e.Type))},
			{Name: HeaderContentType, Value: eventstream.StringValue("application/json")},
			{Name: HeaderMessageType, Value: eventstream.StringValue(MessageTypeException)},
		},
		Payload: e.Body(),
	})
}

// StreamExceptionName is the union member name that names an exception inside
// a stream: the type with a lower-case first letter (throttlingException).
func StreamExceptionName(t ErrorType) string {
	s := string(t)
	if s == "" {
		return s
	}
	return string(unicode.ToLower(rune(s[0]))) + s[1:]
}

// ErrorTypeFromStream is the inverse of StreamExceptionName.
func ErrorTypeFromStream(name string) ErrorType {
	if name == "" {
		return ""
	}
	return ErrorType(strings.ToUpper(name[:1]) + name[1:])
}
