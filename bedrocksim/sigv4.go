package bedrocksim

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/quotagate/quotagate/bedrock"
)

// AccessKeyID and SecretAccessKey are the simulator's default static
// credentials: AWS's documented example key pair, which no real account
// has.
const (
	AccessKeyID     = "AKIAIOSFODNN7EXAMPLE"
	SecretAccessKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

// DefaultCredentials are the static test credentials the simulator accepts
// when Config.Credentials is nil: AccessKeyID with SecretAccessKey. New
// copies it; do not modify it.
var DefaultCredentials = map[string]string{AccessKeyID: SecretAccessKey}

// signingService is the SigV4 service name of Bedrock Runtime (the SDK's
// endpoint resolver signs bedrock-runtime requests as "bedrock").
const signingService = "bedrock"

// maxSkew is how far X-Amz-Date may be from the server's clock: AWS rejects
// signatures more than five minutes old or in the future.
const maxSkew = 5 * time.Minute

// amzDateFormat is the ISO 8601 basic format of X-Amz-Date.
const amzDateFormat = "20060102T150405Z"

// The messages AWS front ends answer authentication failures with.
const (
	msgMissingToken     = "Missing Authentication Token"
	msgUnrecognizedKey  = "The security token included in the request is invalid."
	msgSignatureInvalid = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	msgBadAPIKey        = "Authentication failed: Please make sure your API Key is valid."
)

var signer = v4.NewSigner()

// authenticate checks a request's credentials the way the AWS front end of
// Bedrock does: a Bedrock API key as a bearer token, or a SigV4 signature
// recomputed from the request as received.
func (s *Server) authenticate(r *http.Request, body []byte) *bedrock.Error {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		// Without credentials AWS does not reveal whether the operation
		// exists.
		return bedrock.Errorf(bedrock.MissingAuthenticationToken, msgMissingToken)
	}
	if scheme, token, ok := strings.Cut(authz, " "); ok && strings.EqualFold(scheme, "Bearer") {
		if s.validAPIKey(strings.TrimSpace(token)) {
			return nil
		}
		// Bedrock answers an unknown or expired API key with 403
		// AccessDeniedException and this message.
		return bedrock.Errorf(bedrock.AccessDenied, msgBadAPIKey)
	}
	return s.verifySigV4(r, authz, body)
}

// validAPIKey compares a bearer token with every accepted key in constant
// time.
func (s *Server) validAPIKey(token string) bool {
	h := hashKey(token)
	ok := 0
	for _, k := range s.apiKeys {
		ok |= subtle.ConstantTimeCompare(h[:], k[:])
	}
	return ok == 1
}

func hashKey(k string) [32]byte { return sha256.Sum256([]byte(k)) }

// sigV4Auth is a parsed "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
// Signature=..." header.
type sigV4Auth struct {
	accessKeyID   string
	date          string // the YYYYMMDD of the credential scope
	region        string
	service       string
	terminator    string
	signedHeaders []string
	signature     string
}

// parseSigV4 parses an Authorization header, answering
// IncompleteSignatureException with AWS's wording for what is missing.
func parseSigV4(authz string) (sigV4Auth, *bedrock.Error) {
	var a sigV4Auth
	alg, rest, _ := strings.Cut(authz, " ")
	if alg != "AWS4-HMAC-SHA256" {
		return a, bedrock.Errorf(bedrock.IncompleteSignature, "Unsupported AWS 'algorithm': '%s'. Authorization=%s", alg, authz)
	}
	var credential, signed string
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			credential = v
		case "SignedHeaders":
			signed = v
		case "Signature":
			a.signature = v
		}
	}
	var missing []string
	if credential == "" {
		missing = append(missing, "Authorization header requires 'Credential' parameter.")
	}
	if a.signature == "" {
		missing = append(missing, "Authorization header requires 'Signature' parameter.")
	}
	if signed == "" {
		missing = append(missing, "Authorization header requires 'SignedHeaders' parameter.")
	}
	if len(missing) > 0 {
		return a, bedrock.Errorf(bedrock.IncompleteSignature, "%s Authorization=%s", strings.Join(missing, " "), authz)
	}
	scope := strings.Split(credential, "/")
	if len(scope) != 5 {
		return a, bedrock.Errorf(bedrock.IncompleteSignature, "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '%s'", credential)
	}
	a.accessKeyID, a.date, a.region, a.service, a.terminator = scope[0], scope[1], scope[2], scope[3], scope[4]
	a.signedHeaders = strings.Split(strings.ToLower(signed), ";")
	return a, nil
}

// verifySigV4 recomputes the request's signature with the SDK's own signer
// and compares it with the one sent.
func (s *Server) verifySigV4(r *http.Request, authz string, body []byte) *bedrock.Error {
	a, err := parseSigV4(authz)
	if err != nil {
		return err
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if amzDate == "" {
		return bedrock.Errorf(bedrock.IncompleteSignature, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=%s", authz)
	}
	signedAt, perr := time.Parse(amzDateFormat, amzDate)
	if perr != nil {
		return bedrock.Errorf(bedrock.IncompleteSignature, "Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601", amzDate)
	}
	now := time.Now().UTC()
	switch {
	case signedAt.Before(now.Add(-maxSkew)):
		return bedrock.Errorf(bedrock.InvalidSignature, "Signature expired: %s is now earlier than %s (%s - 5 min.)",
			amzDate, now.Add(-maxSkew).Format(amzDateFormat), now.Format(amzDateFormat))
	case signedAt.After(now.Add(maxSkew)):
		return bedrock.Errorf(bedrock.InvalidSignature, "Signature not yet current: %s is still later than %s (%s + 5 min.)",
			amzDate, now.Add(maxSkew).Format(amzDateFormat), now.Format(amzDateFormat))
	}
	switch {
	case a.date != signedAt.Format("20060102"):
		return bedrock.Errorf(bedrock.InvalidSignature, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.",
			a.date, signedAt.Format("20060102"), amzDate)
	case a.region != s.region:
		return bedrock.Errorf(bedrock.InvalidSignature, "Credential should be scoped to a valid region. ")
	case a.service != signingService:
		return bedrock.Errorf(bedrock.InvalidSignature, "Credential should be scoped to correct service: '%s'. ", signingService)
	case a.terminator != "aws4_request":
		return bedrock.Errorf(bedrock.InvalidSignature, "Credential should be scoped with a valid terminator: 'aws4_request', not '%s'. ", a.terminator)
	}
	secret, ok := s.creds[a.accessKeyID]
	if !ok {
		return bedrock.Errorf(bedrock.UnrecognizedClient, msgUnrecognizedKey)
	}

	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if sent := r.Header.Get("X-Amz-Content-Sha256"); sent != "" && sent != payloadHash {
		return bedrock.Errorf(bedrock.InvalidSignature, "The provided 'x-amz-content-sha256' header does not match what was computed.")
	}

	want, ok := resign(r, a, payloadHash, aws.Credentials{AccessKeyID: a.accessKeyID, SecretAccessKey: secret}, signedAt)
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(a.signature)) != 1 {
		return bedrock.Errorf(bedrock.InvalidSignature, msgSignatureInvalid)
	}
	return nil
}

// resign signs a copy of the request that holds only what the client said
// it signed, and returns the signature. The path is the escaped path exactly
// as received: the SDK escapes it once more for the canonical URI (a model
// id's %3A becomes %253A), and so does the signer here.
func resign(r *http.Request, a sigV4Auth, payloadHash string, creds aws.Credentials, signedAt time.Time) (string, bool) {
	u, err := url.Parse("http://" + r.Host + r.URL.EscapedPath())
	if err != nil {
		return "", false
	}
	u.RawQuery = r.URL.RawQuery
	req := &http.Request{Method: r.Method, URL: u, Host: r.Host, Header: make(http.Header)}
	for _, name := range a.signedHeaders {
		switch name {
		case "host":
			// Always signed; taken from req.Host.
		case "content-length":
			// The signer signs the length of the request, not a header.
			req.ContentLength = r.ContentLength
		default:
			if vs := r.Header.Values(name); len(vs) > 0 {
				req.Header[http.CanonicalHeaderKey(name)] = vs
			}
		}
	}
	if err := signer.SignHTTP(context.Background(), creds, req, payloadHash, a.service, a.region, signedAt); err != nil {
		return "", false
	}
	got, perr := parseSigV4(req.Header.Get("Authorization"))
	if perr != nil {
		return "", false
	}
	// Headers the client claims but the signer would not sign (for example
	// User-Agent) make the lists differ, and so the signatures.
	if strings.Join(got.signedHeaders, ";") != strings.Join(a.signedHeaders, ";") {
		return "", false
	}
	return got.signature, true
}
