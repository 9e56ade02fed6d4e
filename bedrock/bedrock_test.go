package bedrock

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestParsePath(t *testing.T) {
	cases := []struct {
		path   string
		ok     bool
		op     Operation
		id     string
		rawID  string
		isPath bool
	}{
		{"/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke", true, InvokeModel, "anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1%3A0", true},
		{"/model/amazon.nova-lite-v1:0/converse-stream", true, ConverseStream, "amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0", true},
		{"/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fmeta.llama3-8b-instruct-v1%3A0/invoke-with-response-stream", true, InvokeModelWithResponseStream,
			"arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-8b-instruct-v1:0", "arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fmeta.llama3-8b-instruct-v1%3A0", true},
		{"/model/x/count-tokens", true, CountTokens, "x", "x", true},
		{"/model/x/converse", true, Converse, "x", "x", true},
		{"/model//converse", false, "", "", "", false},
		{"/model/%20/converse", false, "", "", "", false},
		{"/model/x/summon", false, "", "", "", false},
		{"/model/arn:aws:bedrock:us-east-1::foundation-model/x/invoke", false, "", "", "", false}, // unescaped '/' in an ARN
		{"/model/bad%zz/invoke", false, "", "", "", false},
		{"/models/x/invoke", false, "", "", "", false},
		{"/", false, "", "", "", false},
	}
	for _, c := range cases {
		r, ok := ParsePath(c.path)
		if ok != c.ok || r.Operation != c.op || r.ModelID != c.id || r.RawModelID != c.rawID {
			t.Errorf("ParsePath(%q) = %+v, %v; want {%s %s %s}, %v", c.path, r, ok, c.op, c.id, c.rawID, c.ok)
			continue
		}
		if ok {
			if got := Path(r.Operation, r.RawModelID); got != c.path {
				t.Errorf("Path(%s, %s) = %q, want %q", r.Operation, r.RawModelID, got, c.path)
			}
		}
	}
}

func TestEscapeModelID(t *testing.T) {
	got := EscapeModelID("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0")
	want := "arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fanthropic.claude-3-haiku-20240307-v1%3A0"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestStreamExceptionNames(t *testing.T) {
	for _, typ := range []ErrorType{Throttling, ModelStreamError, InternalServer, Validation} {
		name := StreamExceptionName(typ)
		if name[0] < 'a' || name[0] > 'z' {
			t.Errorf("StreamExceptionName(%s) = %q, want a lower-case first letter", typ, name)
		}
		if back := ErrorTypeFromStream(name); back != typ {
			t.Errorf("round trip of %s gave %s", typ, back)
		}
	}
}

// TestFrames writes events and an exception, then reads them back whole,
// including when the reader hands out one byte at a time, and reports a
// frame cut short as io.ErrUnexpectedEOF rather than a clean end.
func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteEvent(&buf, "chunk", []byte(`{"bytes":"e30="}`)); err != nil {
		t.Fatal(err)
	}
	if err := WriteException(&buf, Errorf(Throttling, "slow down")); err != nil {
		t.Fatal(err)
	}
	stream := buf.Bytes()
	for _, r := range []io.Reader{bytes.NewReader(stream), &oneByte{stream}} {
		fr := NewFrameReader(r)
		f1, err := fr.Next()
		if err != nil {
			t.Fatal(err)
		}
		ev, err := DecodeFrame(f1)
		if err != nil || ev.MessageType != MessageTypeEvent || ev.EventType != "chunk" || string(ev.Payload) != `{"bytes":"e30="}` {
			t.Fatalf("first frame = %+v, %v; want the chunk event", ev, err)
		}
		f2, err := fr.Next()
		if err != nil {
			t.Fatal(err)
		}
		ex, err := DecodeFrame(f2)
		if err != nil || ex.MessageType != MessageTypeException || ex.ExceptionType != "throttlingException" {
			t.Fatalf("second frame = %+v, %v; want a throttlingException", ex, err)
		}
		if _, err := fr.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last frame got %v, want io.EOF", err)
		}
	}
	fr := NewFrameReader(bytes.NewReader(stream[:len(stream)-3]))
	_, _ = fr.Next()
	if _, err := fr.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut frame: got %v, want io.ErrUnexpectedEOF", err)
	}
}

type oneByte struct{ b []byte }

func (o *oneByte) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = o.b[0]
	o.b = o.b[1:]
	return 1, nil
}

func TestErrorStatus(t *testing.T) {
	if got := (&Error{Type: ServiceUnavailable, StatusCode: 502}).Status(); got != 502 {
		t.Errorf("override: got %d, want 502", got)
	}
	for typ, want := range map[ErrorType]int{Throttling: 429, Validation: 400, AccessDenied: 403, ServiceUnavailable: 503, ModelTimeout: 408, UnknownOperation: 404, InternalServer: 500} {
		if got := typ.Status(); got != want {
			t.Errorf("%s.Status() = %d, want %d", typ, got, want)
		}
	}
}
