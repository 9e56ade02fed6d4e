package proxy

import (
	"net"
	"net/http"
	"time"
)

// TransportOptions tunes NewTransport. Zero fields take the defaults shown.
type TransportOptions struct {
	// ResponseHeaderTimeout bounds the wait for Bedrock's response headers
	// (default 10m). A non-streamed InvokeModel answers only when the whole
	// completion is generated, so this must exceed the longest generation.
	ResponseHeaderTimeout time.Duration
	// MaxConnsPerHost caps connections to one upstream (default 0: no cap).
	MaxConnsPerHost int
}

// NewTransport returns the one http.Transport the gateway uses upstream:
// keep-alives with a deep idle pool (every request goes to the same few
// hosts), HTTP/2 when the upstream offers it over TLS, bounded dial and TLS
// handshakes, and no transparent decompression, so that bodies pass through
// byte for byte.
func NewTransport(o TransportOptions) *http.Transport {
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = 10 * time.Minute
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		MaxConnsPerHost:       o.MaxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		DisableCompression:    true,
	}
}
