// Package sigv4 verifies AWS Signature Version 4 on requests as received,
// the way an AWS front end does, so that a server can accept callers that
// sign with an unmodified AWS SDK or CLI and static credentials.
//
// The signature is recomputed over what the caller said it signed (the
// method, the escaped path and query, the headers named in SignedHeaders, and
// the SHA-256 of the body), building the canonical request as the AWS SDKs'
// signers do, then compared in constant time. A signed ":authority" header
// (HTTP/2's Host, which the AWS SDK for JavaScript v3 signs instead of host
// when it speaks HTTP/2) stands for the request's Host. Failures are
// *bedrock.Error values worded as AWS words them, so SDKs raise the
// exceptions their users already handle; no message quotes a header, since
// messages reach the caller and the access log and headers carry keys.
package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

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
	// MsgUnsupportedAlgorithm answers an Authorization header that is not
	// a SigV4 one. AWS quotes the scheme it found; this does not, because
	// a header with no scheme, or with a tab after it, starts with the
	// caller's key.
	MsgUnsupportedAlgorithm = "Unsupported AWS 'algorithm': the Authorization header must start with 'AWS4-HMAC-SHA256 '."
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

// Verify checks r's SigV4 signature, with body as the request's complete
// body (the caller has read it), and returns the access key id that signed
// it. On failure err is a *bedrock.Error:
//
//   - MissingAuthenticationTokenException without an Authorization header;
//   - IncompleteSignatureException for a malformed one (one that does not
//     sign host or :authority included) or a missing or malformed
//     X-Amz-Date;
//   - InvalidSignatureException for a signature outside the allowed skew,
//     a credential scoped to another service (or region, when Region is
//     set), a body that does not match x-amz-content-sha256, or a signature
//     that does not match the request;
//   - UnrecognizedClientException for an unknown access key id.
//
// Messages never contain the signature, a secret or any other part of a
// header.
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
		// AWS quotes the value; a header is never quoted here.
		return "", bedrock.Errorf(bedrock.IncompleteSignature, "Date must be in ISO-8601 'basic format'. See http://en.wikipedia.org/wiki/ISO_8601")
	}
	if err := v.checkTime(signedAt); err != nil {
		return "", err
	}
	if err := v.checkScope(a, signedAt); err != nil {
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
	want, ok := signature(r, a, amzDate, payloadHash, secret)
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(a.signature)) != 1 {
		return "", bedrock.Errorf(bedrock.InvalidSignature, MsgSignatureMismatch)
	}
	return a.accessKeyID, nil
}

// checkTime applies the skew window, with AWS's wording for each side. The
// dates quoted are formatted from the parsed time, not copied from the
// header.
func (v *Verifier) checkTime(signedAt time.Time) error {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	skew := v.MaxSkew
	if skew <= 0 {
		skew = DefaultMaxSkew
	}
	t := now().UTC()
	amzDate := signedAt.Format(amzDateFormat)
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
// verifier's service and region. Unlike AWS, the messages do not quote the
// scope: it is the caller's text, and only what the verifier expects is
// quoted.
func (v *Verifier) checkScope(a authorization, signedAt time.Time) error {
	switch {
	case a.date != signedAt.Format("20060102"):
		return bedrock.Errorf(bedrock.InvalidSignature, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: the scope's date must be '%s', from '%s'.",
			signedAt.Format("20060102"), signedAt.Format(amzDateFormat))
	case a.region == "" || (v.Region != "" && a.region != v.Region):
		return bedrock.Errorf(bedrock.InvalidSignature, "Credential should be scoped to a valid region. ")
	case a.service != v.Service:
		return bedrock.Errorf(bedrock.InvalidSignature, "Credential should be scoped to correct service: '%s'. ", v.Service)
	case a.terminator != "aws4_request":
		return bedrock.Errorf(bedrock.InvalidSignature, "Credential should be scoped with a valid terminator: 'aws4_request'. ")
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
// echoes the whole header back; these messages quote none of it, because
// they end up in logs and the header holds the signature, or, when it is
// not a SigV4 header at all, the caller's key.
func parseAuthorization(authz string) (authorization, *bedrock.Error) {
	var a authorization
	alg, rest, _ := strings.Cut(authz, " ")
	if alg != Algorithm {
		return a, bedrock.Errorf(bedrock.IncompleteSignature, MsgUnsupportedAlgorithm)
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
	if !slices.Contains(a.signedHeaders, "host") && !slices.Contains(a.signedHeaders, authority) {
		// AWS's own answer: the host must be signed, so that a signature
		// cannot be replayed against another endpoint.
		return a, bedrock.Errorf(bedrock.IncompleteSignature, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}
	return a, nil
}

// authority is the HTTP/2 pseudo-header that carries the host (RFC 9113,
// section 8.3.1). The AWS SDK for JavaScript v3 sends requests over HTTP/2
// (its default for Bedrock Runtime), and its host-header middleware then
// replaces the host header with ":authority" = hostname[:port] before
// signing, so SignedHeaders starts with ":authority". Go's server takes the
// pseudo-header out of the header map and into Request.Host.
const authority = ":authority"

// signature computes the signature of r from the headers a names, with the
// derived signing key of the SigV4 specification: the canonical request,
// its hash in the string to sign, and HMAC-SHA256 down the credential
// scope. amzDate is X-Amz-Date as received, which is what the client put
// in its string to sign. It is false when r lacks a header the client says
// it signed, or the list of signed headers is not sorted and free of
// duplicates as every signer writes it.
func signature(r *http.Request, a authorization, amzDate, payloadHash, secret string) (string, bool) {
	var creq strings.Builder
	if !canonicalRequest(&creq, r, a.signedHeaders, payloadHash) {
		return "", false
	}
	sum := sha256.Sum256([]byte(creq.String()))
	var sts strings.Builder
	sts.Grow(len(Algorithm) + len(amzDate) + len(a.date) + len(a.region) + len(a.service) + 2*sha256.Size + 32)
	sts.WriteString(Algorithm)
	sts.WriteByte('\n')
	sts.WriteString(amzDate)
	sts.WriteByte('\n')
	sts.WriteString(a.date + "/" + a.region + "/" + a.service + "/" + a.terminator)
	sts.WriteByte('\n')
	sts.WriteString(hex.EncodeToString(sum[:]))

	key := hmacSHA256([]byte("AWS4"+secret), a.date)
	key = hmacSHA256(key, a.region)
	key = hmacSHA256(key, a.service)
	key = hmacSHA256(key, a.terminator)
	return hex.EncodeToString(hmacSHA256(key, sts.String())), true
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// canonicalRequest writes r's canonical request: method, canonical URI,
// canonical query, the signed headers' lines, the list, and the payload
// hash. It follows aws-sdk-go-v2's signer, so that what the Go SDK signs
// verifies byte for byte:
//
//   - the URI is the escaped path exactly as received, escaped once more
//     (a model id's %3A becomes %253A), as every SDK does for services
//     other than S3;
//   - the query is sorted by name, then value, each escaped;
//   - a header's values are joined with commas, each trimmed and its runs
//     of spaces reduced to one;
//   - host and :authority are r.Host, content-length is the request's
//     length.
func canonicalRequest(b *strings.Builder, r *http.Request, signed []string, payloadHash string) bool {
	b.Grow(512)
	b.WriteString(r.Method)
	b.WriteByte('\n')
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	writeEscapedPath(b, path)
	b.WriteByte('\n')
	if r.URL.RawQuery != "" {
		q := r.URL.Query()
		for _, vs := range q {
			slices.Sort(vs)
		}
		// Encode sorts by name and escapes as SigV4 does, except for a
		// space, which SigV4 writes %20.
		b.WriteString(strings.ReplaceAll(q.Encode(), "+", "%20"))
	}
	b.WriteByte('\n')
	host := r.Host
	if host == "" && r.URL != nil {
		host = r.URL.Host
	}
	for i, name := range signed {
		if name == "" || (i > 0 && name <= signed[i-1]) {
			return false
		}
		b.WriteString(name)
		b.WriteByte(':')
		switch name {
		case "host", authority:
			b.WriteString(canonicalValue(host))
		case "content-length":
			switch {
			case r.ContentLength >= 0:
				b.WriteString(strconv.FormatInt(r.ContentLength, 10))
			case r.Header.Get("Content-Length") != "":
				b.WriteString(canonicalValue(r.Header.Get("Content-Length")))
			default:
				return false
			}
		default:
			vs := r.Header.Values(name)
			if len(vs) == 0 {
				return false
			}
			for j, v := range vs {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(canonicalValue(v))
			}
		}
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	for i, name := range signed {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(name)
	}
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return true
}

// canonicalValue trims a header value and reduces its runs of spaces to
// one, as the SigV4 specification's Trimall does.
func canonicalValue(v string) string {
	v = strings.TrimSpace(v)
	if !strings.Contains(v, "  ") {
		return v
	}
	var b strings.Builder
	b.Grow(len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == ' ' && i > 0 && v[i-1] == ' ' {
			continue
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// writeEscapedPath percent-encodes a path as SigV4 does: every byte but '/'
// and the unreserved characters of RFC 3986 as %XX in upper case.
func writeEscapedPath(b *strings.Builder, s string) {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == '/':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		}
	}
}

// Check parses a SigV4 Authorization header without verifying anything
// that needs the body, and returns its access key id: a gateway can refuse
// an unknown key, or a malformed header, before it reads a body of up to
// tens of megabytes. The error is the one Verify would answer.
func Check(authz string) (accessKeyID string, err error) {
	if authz == "" {
		return "", bedrock.Errorf(bedrock.MissingAuthenticationToken, MsgMissingToken)
	}
	a, berr := parseAuthorization(authz)
	if berr != nil {
		return "", berr
	}
	return a.accessKeyID, nil
}
