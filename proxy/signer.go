package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// SigningService is the SigV4 service name of Bedrock Runtime.
const SigningService = "bedrock"

// Signer is an http.RoundTripper that authenticates each request to Bedrock
// afresh: with a Bedrock API key when BearerToken is set, else with SigV4 for
// service "bedrock" using Credentials. Whatever authentication the request
// carried before is removed first, so a caller's credentials never reach
// Bedrock.
type Signer struct {
	// Transport sends the signed request; nil means http.DefaultTransport.
	Transport http.RoundTripper
	// Credentials provides SigV4 credentials. It should cache and refresh
	// them (aws.Config.Credentials from config.LoadDefaultConfig does).
	Credentials aws.CredentialsProvider
	// Region is the signing region.
	Region string
	// BearerToken, when set, is sent as "Authorization: Bearer" instead of a
	// SigV4 signature (AWS_BEARER_TOKEN_BEDROCK).
	BearerToken string
	// Now is the signing clock; nil means time.Now.
	Now func() time.Time

	v4 *v4.Signer
}

var _ http.RoundTripper = (*Signer)(nil)

// emptyPayloadHash is the SHA-256 of no bytes, precomputed by SigV4 clients.
const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// signingHeaders are set by a signer. A request may arrive with them from
// the caller's own signature; they must not leak into ours.
var signingHeaders = []string{"Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-Sha256"}

// RoundTrip signs a clone of req and sends it. The body must be replayable
// (GetBody set, as http.NewRequest does for in-memory bodies) because SigV4
// signs a hash of the payload before sending it.
func (s *Signer) RoundTrip(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	for _, h := range signingHeaders {
		out.Header.Del(h)
	}
	rt := s.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	if s.BearerToken != "" {
		out.Header.Set("Authorization", "Bearer "+s.BearerToken)
		return rt.RoundTrip(out)
	}
	if s.Credentials == nil {
		return nil, fmt.Errorf("%w: no credentials provider", errCredentials)
	}
	hash, err := payloadHash(req)
	if err != nil {
		return nil, err
	}
	creds, err := s.Credentials.Retrieve(req.Context())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCredentials, err)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	signer := s.v4
	if signer == nil {
		signer = defaultV4
	}
	if err := signer.SignHTTP(req.Context(), creds, out, hash, SigningService, s.Region, now().UTC()); err != nil {
		return nil, fmt.Errorf("%w: sign: %w", errCredentials, err)
	}
	return rt.RoundTrip(out)
}

var defaultV4 = v4.NewSigner()

func payloadHash(req *http.Request) (string, error) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 {
		return emptyPayloadHash, nil
	}
	if req.GetBody == nil {
		return "", fmt.Errorf("%w: request body is not replayable", errInternal)
	}
	body, err := req.GetBody()
	if err != nil {
		return "", fmt.Errorf("%w: replay body: %w", errInternal, err)
	}
	defer body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, body); err != nil {
		return "", fmt.Errorf("%w: hash body: %w", errInternal, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
