package bedrocksim

import (
	"bytes"
	"io"
	"net/http"
)

// BufferedBodyClient is an HTTP client for the AWS SDK (its Options.HTTPClient)
// that works around a race between smithy-go (v1.28.9) and net/http which a
// server as fast as the simulator on loopback exposes.
//
// After sending Content-Length bytes, net/http's writeLoop reads the request
// body once more to detect extra bytes. If the response headers arrived
// first, the SDK has already closed the body, and smithy-go's
// safeWriteToReadCloser.WriteTo answers io.EOF instead of (0, nil); io.Copy
// reports that as a body read error and net/http closes the connection,
// killing a response stream in flight ("use of closed network connection").
// Handing net/http a plain in-memory body avoids the wrapper. Tests that
// drive many streams through the SDK use it so that they test the gateway,
// not this client-side race.
type BufferedBodyClient struct {
	// Client sends the request; nil means http.DefaultClient.
	Client *http.Client
}

// Do reads the request body into memory and sends the request.
func (b BufferedBodyClient) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		data, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(data))
	}
	c := b.Client
	if c == nil {
		c = http.DefaultClient
	}
	return c.Do(r)
}
