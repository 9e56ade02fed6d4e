package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/tokens"
)

// NewCountTokens returns a Gateway.CountTokens that asks Bedrock's
// CountTokens operation for the exact input tokens of a request, so that
// reservations need no estimate. It costs one upstream round trip before
// every admission, so it is off by default. Bedrock supports CountTokens
// for some models only; a model that answers with an error is not asked
// again, and the calibrated estimate is used for it.
func NewCountTokens(upstream *url.URL, transport http.RoundTripper) func(context.Context, bedrock.Route, []byte) (int, error) {
	var unsupported sync.Map // model id -> time.Time when to ask again
	return func(ctx context.Context, route bedrock.Route, body []byte) (int, error) {
		if route.Operation == bedrock.CountTokens {
			return 0, fmt.Errorf("%w: already a CountTokens call", errInternal)
		}
		if until, ok := unsupported.Load(route.ModelID); ok && time.Now().Before(until.(time.Time)) {
			return 0, fmt.Errorf("%w: CountTokens unsupported for %s", errInternal, route.ModelID)
		}
		// It runs before every admission: a slow answer must cost little.
		ctx, cancel := context.WithTimeout(ctx, countTokensTimeout)
		defer cancel()
		in, err := countTokensBody(route, body)
		if err != nil {
			return 0, err
		}
		u := *upstream
		u.RawPath = strings.TrimSuffix(upstream.EscapedPath(), "/") + bedrock.Path(bedrock.CountTokens, route.RawModelID)
		u.Path, _ = url.PathUnescape(u.RawPath)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(in))
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errInternal, err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := transport.RoundTrip(req)
		if err != nil {
			return 0, classifyTransport(err)
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errUpstreamFailed, err)
		}
		if resp.StatusCode != http.StatusOK {
			// A refusal (an unsupported model, most likely) is remembered
			// for a while, not for ever: it may have been this body's fault.
			if resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
				unsupported.Store(route.ModelID, time.Now().Add(unsupportedFor))
			}
			return 0, fmt.Errorf("%w: CountTokens answered %d %s", errUpstreamFailed, resp.StatusCode, upstreamErrorType(resp.Header))
		}
		u2 := tokens.UsageFromCountTokens(out)
		if !u2.Known {
			return 0, fmt.Errorf("%w: CountTokens answer without inputTokens", errUpstreamFailed)
		}
		return u2.InputTokens, nil
	}
}

// countTokensTimeout bounds the CountTokens call; unsupportedFor is how long
// a model that refused it is not asked again.
const (
	countTokensTimeout = 5 * time.Second
	unsupportedFor     = 10 * time.Minute
)

// countTokensBody wraps a request body the way CountTokens takes it: a
// native body as a base64 blob, or the Converse fields that carry input.
func countTokensBody(route bedrock.Route, body []byte) ([]byte, error) {
	if route.Operation.Native() {
		return json.Marshal(map[string]any{"input": map[string]any{"invokeModel": map[string]string{"body": base64.StdEncoding.EncodeToString(body)}}})
	}
	var conv map[string]json.RawMessage
	if err := json.Unmarshal(body, &conv); err != nil {
		return nil, fmt.Errorf("%w: %w", tokens.ErrMalformed, err)
	}
	in := map[string]json.RawMessage{}
	for _, k := range []string{"messages", "system", "toolConfig", "additionalModelRequestFields"} {
		if v, ok := conv[k]; ok {
			in[k] = v
		}
	}
	return json.Marshal(map[string]any{"input": map[string]any{"converse": in}})
}
