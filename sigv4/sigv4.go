// Package sigv4 verifies AWS Signature Version 4 on requests as received,
// the way an AWS front end does, so that a server can accept callers that
// sign with an unmodified AWS SDK or CLI and static credentials.
//
// The signature is recomputed with aws-sdk-go-v2's own signer over what the
// caller said it signed (the method, the escaped path and query, the headers
// named in SignedHeaders, and the SHA-256 of the body), then compared in
// constant time. Failures are *bedrock.Error values worded as AWS words them,
// so SDKs raise the exceptions their users already handle.
package sigv4

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/quotagate/quotagate/bedrock"
)

// Algorithm is the only signing algorithm SigV4 verification accepts, and
// the scheme of its Authorization header.
const Algorithm = "AWS4-HMAC-SHA256"

// DefaultMaxSkew is how far X-Amz-Date may be from the verifier's clock: AWS
// rejects signatures more than five minutes old or in the future.
const DefaultMaxSkew = 5 * time.Minute

// amzDateFormat is the ISO 8601 basic format of X-Amz-Date.
const amzDateFormat = "20060102T150405Z"

// The messages AWS front ends answer authentication failures with.
const (
	// MsgMissingToken is AWS's answer to a request without credentials.
	MsgMissingToken = "Missing Authentication Token"
	// MsgUnrecognizedClient is AWS's answer to an unknown access key id.
	MsgUnrecognizedClient = "The security token included in the request is invalid."
	// MsgSignatureMismatch is AWS's answer to a signature that does not
	// match the request.
	MsgSignatureMismatch = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)

// Verifier checks SigV4 signatures for one service. Set its fields before the
// first Verify and do not change them afterwards; Verify is then safe for
// concurrent use.
type Verifier struct {
	// Service is the credential scope's service, for example "bedrock"
	// (the SDKs sign bedrock-runtime requests as "bedrock"). Required.
	Service string
	// Region, when set, is the only credential-scope region accepted, as a
	// regional AWS endpoint only accepts its own. Empty accepts any region:
	// a gateway in front of several regions cannot know which one a caller
	// configured, and the region is still part of what was signed.
	Region string
	// MaxSkew bounds the distance between X-Amz-Date and Now; zero means
	// DefaultMaxSkew.
	MaxSkew time.Duration
	// Now is the clock signatures are checked against; nil means
	// time.Now. The SDKs sign with the caller's wall clock.
	Now func() time.Time
	// Secret returns the secret access key of an access key id, and false
	// for an unknown id. nil knows no key.
	Secret func(accessKeyID string) (secret string, ok bool)
}

// signer recomputes signatures. It holds no state between calls.
var signer = v4.NewSigner()

// Verify checks r's SigV4 signature, with body as the request's complete
// body (the caller has read it), and returns the access key id that signed
// it. On failure err is a *bedrock.Error:
//
//   - MissingAuthenticationTokenException without an Authorization header;
//   - IncompleteSignatureException for a malformed one or a missing or
//     malformed X-Amz-Date;
//   - InvalidSignatureException for a signature outside the allowed skew,
//     a credential scoped to another service (or region, when Region is
//     set), a body that does not match x-amz-content-sha256, or a signature
//     that does not match the request;
//   - UnrecognizedClientException for an unknown access key id.
//
// Messages never contain the signature or a secret.
func (v *Verifier) Verify(r *http.Request, body []byte) (accessKeyID string, err error) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return "", bedrock.Errorf(bedrock.MissingAuthenticationToken, MsgMissingToken)
	}
	a, perr := parseAuthorization(authz)
	if perr != nil {
		return "", perr
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if amzDate == "" {
		return "", bedrock.Errorf(bedrock.IncompleteSignature, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
	}
	signedAt, terr := time.Parse(amzDateFormat, amzDate)
	if terr != nil {
		return "", bedrock.Errorf(bedrock.IncompleteSignature, "Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601", amzDate)
	}
	if err := v.checkTime(signedAt, amzDate); err != nil {
		return "", err
	}
	if err := v.checkScope(a, signedAt, amzDate); err != nil {
		return "", err
	}
	var secret string
	ok := false
	if v.Secret != nil {
		secret, ok = v.Secret(a.accessKeyID)
	}
	if !ok {
		return "", bedrock.Errorf(bedrock.UnrecognizedClient, MsgUnrecognizedClient)
	}

	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	// The SDKs send the payload hash they signed; a body changed on the way
	// no longer matches it. Without the header the hash is still part of
	// the canonical request, so the signature comparison catches it.
	if sent := r.Header.Get("X-Amz-Content-Sha256"); sent != "" && sent != payloadHash {
		return "", bedrock.Errorf(bedrock.InvalidSignature, "The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	want, ok := resign(r, a, payloadHash, aws.Credentials{AccessKeyID: a.accessKeyID, SecretAccessKey: secret}, signedAt)
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(a.signature)) != 1 {
		return "", bedrock.Errorf(bedrock.InvalidSignature, MsgSignatureMismatch)
	}
	return a.accessKeyID, nil
}

// checkTime applies the skew window, with AWS's wording for each side.
func (v *Verifier) checkTime(signedAt time.Time, amzDate string) error {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	skew := v.MaxSkew
	if skew <= 0 {
		skew = DefaultMaxSkew
	}
	t := now().UTC()
	switch {
	case signedAt.Before(t.Add(-skew)):
		return bedrock.Errorf(bedrock.InvalidSignature, "Signature expired: %s is now earlier than %s (%s - %s.)",
			amzDate, t.Add(-skew).Format(amzDateFormat), t.Format(amzDateFormat), skewText(skew))
	case signedAt.After(t.Add(skew)):
		return bedrock.Errorf(bedrock.InvalidSignature, "Signature not yet current: %s is still later than %s (%s + %s.)",
			amzDate, t.Add(skew).Format(amzDateFormat), t.Format(amzDateFormat), skewText(skew))
	}
	return nil
}

// skewText spells the skew as AWS does ("5 min").
func skewText(d time.Duration) string {
	if d%time.Minute == 0 {
		return strconv.FormatInt(int64(d/time.Minute), 10) + " min"
	}
	return d.String()
}

// checkScope checks the credential scope against the request date and the
// verifier's service and region.
func (v *Verifier) checkScope(a authorization, signedAt time.Time, amzDate string) error {
	switch {
	case a.date != signedAt.Format("20060102"):
		return bedrock.Errorf(bedrock.InvalidSignature, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.",
			a.date, signedAt.Format("20060102"), amzDate)
	case a.region == "" || (v.Region != "" && a.region != v.Region):
		return bedrock.Errorf(bedrock.InvalidSignature, "Credential should be scoped to a valid region. ")
	case a.service != v.Service:
		return bedrock.Errorf(bedrock.InvalidSignature, "Credential should be scoped to correct service: '%s'. ", v.Service)
	case a.terminator != "aws4_request":
		return bedrock.Errorf(bedrock.InvalidSignature, "Credential should be scoped with a valid terminator: 'aws4_request', not '%s'. ", a.terminator)
	}
	return nil
}

// authorization is a parsed "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
// Signature=..." header.
type authorization struct {
	accessKeyID   string
	date          string // the YYYYMMDD of the credential scope
	region        string
	service       string
	terminator    string
	signedHeaders []string
	signature     string
}

// parseAuthorization parses an Authorization header, answering
// IncompleteSignatureException with AWS's wording for what is missing. AWS
// echoes the whole header back; these messages do not, because they end up
// in logs and the header holds the signature.
func parseAuthorization(authz string) (authorization, *bedrock.Error) {
	var a authorization
	alg, rest, _ := strings.Cut(authz, " ")
	if alg != Algorithm {
		return a, bedrock.Errorf(bedrock.IncompleteSignature, "Unsupported AWS 'algorithm': '%s'.", truncate(alg, 32))
	}
	var credential, signed string
	for _, part := range strings.Split(rest, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			credential = val
		case "SignedHeaders":
			signed = val
		case "Signature":
			a.signature = val
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
		return a, bedrock.Errorf(bedrock.IncompleteSignature, "%s", strings.Join(missing, " "))
	}
	scope := strings.Split(credential, "/")
	if len(scope) != 5 || scope[0] == "" {
		return a, bedrock.Errorf(bedrock.IncompleteSignature, "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term.")
	}
	a.accessKeyID, a.date, a.region, a.service, a.terminator = scope[0], scope[1], scope[2], scope[3], scope[4]
	a.signedHeaders = strings.Split(strings.ToLower(signed), ";")
	return a, nil
}

// truncate bounds a caller-supplied string quoted in a message.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// resign signs a copy of the request that holds only what the client said
// it signed, and returns the signature. The path is the escaped path exactly
// as received: the SDK escapes it once more for the canonical URI (a model
// id's %3A becomes %253A), and so does the signer here.
func resign(r *http.Request, a authorization, payloadHash string, creds aws.Credentials, signedAt time.Time) (string, bool) {
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
	got, perr := parseAuthorization(req.Header.Get("Authorization"))
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
