package bedrocksim

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/sigv4"
)

// STS is a simulated AWS Security Token Service answering AssumeRole, enough
// for the AWS SDK for Go v2's stscreds.AssumeRoleProvider. The gateway
// reaches Bedrock in another account by assuming a role there; with STS the
// tests take that path through the unmodified SDK: the caller signs with
// SigV4 (service "sts"), STS verifies it with package sigv4, the verifier
// the Bedrock simulator uses, and answers with the role's temporary
// credentials, which a Server configured with TemporaryCredentials accepts.
//
// It speaks the query protocol the SDKs use for STS: a form-encoded POST to
// "/" (Action=AssumeRole&Version=2011-06-15&RoleArn=...&RoleSessionName=...,
// optionally ExternalId and DurationSeconds), or the same parameters in the
// query string of a GET. Answers are STS's XML documents, errors included,
// so the SDK surfaces the error codes its users handle (AccessDenied,
// ValidationError, SignatureDoesNotMatch, InvalidClientTokenId).
//
// STS implements http.Handler; all methods are safe for concurrent use.
type STS struct {
	verifier sigv4.Verifier // service "sts", the configured region and callers
	roles    map[string]Role
	byKey    map[string]string // temporary access key id -> role ARN

	calls atomic.Int64

	mu      sync.Mutex
	expires map[string]time.Time // temporary access key id -> latest expiration handed out
}

// STSConfig configures an STS. The zero value works: it accepts
// DefaultCredentials signed for us-east-1 and knows no role, so every
// AssumeRole is denied.
type STSConfig struct {
	// Region is the signing region requests must be scoped to. Default
	// "us-east-1", where the SDKs sign for the global endpoint
	// sts.amazonaws.com.
	Region string
	// Credentials maps the callers' access key ids to their secret access
	// keys. Nil means DefaultCredentials.
	Credentials map[string]string
	// Roles maps role ARNs (arn:aws:iam::<account>:role/<name>) to what
	// assuming them yields. A role not listed is denied, as AWS denies a
	// role that does not exist or does not trust the caller.
	Roles map[string]Role
}

// Role is one assumable IAM role and the temporary credentials assuming it
// hands out. The credentials are fixed rather than minted per call, so a
// Server can be configured to accept them before the first AssumeRole; give
// each role its own AccessKeyID.
type Role struct {
	// AccessKeyID, SecretAccessKey and SessionToken are the temporary
	// credentials handed out.
	AccessKeyID, SecretAccessKey, SessionToken string
	// ExternalID, when set, is the ExternalId the caller must send: the
	// trust policy condition (sts:ExternalId) that cross-account roles use
	// against the confused-deputy problem.
	ExternalID string
	// Duration caps the credentials' lifetime; zero means one hour, IAM's
	// default maximum session duration. A request's DurationSeconds
	// shortens the lifetime but does not lengthen it. AWS instead refuses a
	// DurationSeconds above the role's maximum; the simulator caps, so that
	// a test can hand out credentials that expire within seconds (below
	// STS's 15-minute minimum) and watch the SDK refresh them.
	Duration time.Duration
}

// defaultRoleDuration is IAM's default MaxSessionDuration, and STS's default
// DurationSeconds when a request has none.
const defaultRoleDuration = time.Hour

// STS's limits on DurationSeconds (AssumeRole API reference): at least 15
// minutes, at most 12 hours.
const (
	minDurationSeconds = 900
	maxDurationSeconds = 43200
)

// stsSigningService is the SigV4 service name of STS.
const stsSigningService = "sts"

// stsVersion is the only API version of STS, sent as Version.
const stsVersion = "2011-06-15"

// maxSTSBody bounds a request body; an AssumeRole with its largest session
// policy and tags is a few kilobytes.
const maxSTSBody = 1 << 20

// roleSessionNamePattern is RoleSessionName's pattern in the STS API
// reference ([\w+=,.@-]*, 2 to 64 characters).
var roleSessionNamePattern = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

// NewSTS returns an STS configured by cfg, with the documented defaults for
// its zero fields. It copies the maps.
func NewSTS(cfg STSConfig) *STS {
	s := &STS{
		roles:   make(map[string]Role, len(cfg.Roles)),
		byKey:   make(map[string]string, len(cfg.Roles)),
		expires: make(map[string]time.Time),
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	src := cfg.Credentials
	if src == nil {
		src = DefaultCredentials
	}
	creds := make(map[string]string, len(src))
	for id, secret := range src {
		creds[id] = secret
	}
	s.verifier = sigv4.Verifier{
		Service: stsSigningService,
		// Like a regional endpoint, STS only accepts its own region.
		Region: region,
		Secret: func(id string) (string, bool) {
			secret, ok := creds[id]
			return secret, ok
		},
	}
	for arn, role := range cfg.Roles {
		if role.Duration <= 0 {
			role.Duration = defaultRoleDuration
		}
		s.roles[arn] = role
		s.byKey[role.AccessKeyID] = arn
	}
	return s
}

var _ http.Handler = (*STS)(nil)

// ServeHTTP answers one STS request: authenticate the caller, parse the
// action, then check the role and its conditions, in the order AWS does, so
// that an unsigned request learns nothing about roles.
func (s *STS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	requestID := newUUID()
	w.Header().Set("x-amzn-RequestId", requestID)

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSTSBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			stsErrorf(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "Request body exceeds the maximum size of %d bytes.", maxSTSBody).write(w, requestID)
		}
		return // otherwise the client went away while sending
	}
	// Every caller STS knows is trusted by every role, so who signed does
	// not matter past this point.
	if _, err := s.verifier.Verify(r, body); err != nil {
		stsAuthError(err).write(w, requestID)
		return
	}

	params, perr := stsParams(r, body)
	if perr != nil {
		perr.write(w, requestID)
		return
	}
	switch action := params.Get("Action"); {
	case action == "":
		stsErrorf(http.StatusBadRequest, "MissingAction", "Missing Action").write(w, requestID)
	case params.Get("Version") != stsVersion:
		// The query protocol names operations by action and version
		// together; another version has no AssumeRole.
		stsErrorf(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version %s", quoted(action), quoted(params.Get("Version"))).write(w, requestID)
	case action != "AssumeRole":
		stsErrorf(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version %s", quoted(action), stsVersion).write(w, requestID)
	default:
		s.assumeRole(w, requestID, params)
	}
}

// assumeRole answers AssumeRole. AWS answers an unknown role, a role whose
// trust policy does not name the caller, and a missing or wrong external id
// with the same AccessDenied, so that a caller cannot probe which roles
// exist or which external id is expected; the simulator does the same.
func (s *STS) assumeRole(w http.ResponseWriter, requestID string, params url.Values) {
	arn, session := params.Get("RoleArn"), params.Get("RoleSessionName")
	var invalid []string
	switch {
	case !params.Has("RoleArn"):
		invalid = append(invalid, "Value null at 'roleArn' failed to satisfy constraint: Member must not be null")
	case len(arn) < 20 || len(arn) > 2048:
		invalid = append(invalid, "Value at 'roleArn' failed to satisfy constraint: Member must have length between 20 and 2048")
	}
	switch {
	case !params.Has("RoleSessionName"):
		invalid = append(invalid, "Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null")
	case !roleSessionNamePattern.MatchString(session):
		invalid = append(invalid, "Value at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64")
	}
	duration := defaultRoleDuration
	if params.Has("DurationSeconds") {
		n, err := strconv.Atoi(params.Get("DurationSeconds"))
		if err != nil || n < minDurationSeconds || n > maxDurationSeconds {
			invalid = append(invalid, "Value at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200")
		}
		duration = time.Duration(n) * time.Second
	}
	if len(invalid) > 0 {
		// AWS's ValidationError wording: "N validation error(s) detected:
		// ...; ...". Unlike AWS, the messages do not quote the values.
		noun := "errors"
		if len(invalid) == 1 {
			noun = "error"
		}
		stsErrorf(http.StatusBadRequest, "ValidationError", "%d validation %s detected: %s", len(invalid), noun, strings.Join(invalid, "; ")).write(w, requestID)
		return
	}

	role, ok := s.roles[arn]
	if ok && role.ExternalID != "" {
		ok = subtle.ConstantTimeCompare([]byte(params.Get("ExternalId")), []byte(role.ExternalID)) == 1
	}
	if !ok {
		// AWS names the caller's ARN here; the simulator knows only its
		// access key id, which it does not quote (it is part of a header).
		stsErrorf(http.StatusForbidden, "AccessDenied", "User is not authorized to perform: sts:AssumeRole on resource: %s", quoted(arn)).write(w, requestID)
		return
	}

	// STS states expirations in whole seconds. Rounding up rather than
	// down keeps a one-second lifetime from ending before the caller can
	// use it.
	expiration := time.Now().UTC().Add(min(duration, role.Duration))
	if whole := expiration.Truncate(time.Second); whole.Before(expiration) {
		expiration = whole.Add(time.Second)
	}
	s.mu.Lock()
	if expiration.After(s.expires[role.AccessKeyID]) {
		s.expires[role.AccessKeyID] = expiration
	}
	s.mu.Unlock()

	var resp assumeRoleResponse
	resp.Result.Credentials = stsCredentials{
		AccessKeyID:     role.AccessKeyID,
		SecretAccessKey: role.SecretAccessKey,
		SessionToken:    role.SessionToken,
		Expiration:      expiration.Format(time.RFC3339),
	}
	account, name := roleParts(arn)
	resp.Result.AssumedRoleUser = assumedRoleUser{
		Arn:           "arn:aws:sts::" + account + ":assumed-role/" + name + "/" + session,
		AssumedRoleID: roleID(arn) + ":" + session,
	}
	resp.RequestID = requestID
	s.calls.Add(1)
	writeXML(w, http.StatusOK, resp)
}

// Calls returns how many AssumeRole requests STS answered with credentials,
// so that a test can check the caller caches them (aws.CredentialsCache)
// rather than assuming the role once per request.
func (s *STS) Calls() int { return int(s.calls.Load()) }

// TemporaryCredentials returns every role's temporary access key id and
// secret access key, for Config.Credentials of the Server that stands for
// Bedrock in the role's account.
func (s *STS) TemporaryCredentials() map[string]string {
	m := make(map[string]string, len(s.roles))
	for _, role := range s.roles {
		m[role.AccessKeyID] = role.SecretAccessKey
	}
	return m
}

// RequireSessionToken wraps next, typically a Server, so that requests
// signed with a role's temporary access key id must carry the role's
// session token (X-Amz-Security-Token) and may only be made after STS
// handed the credentials out and before they expire. A Server verifies the
// signature, which covers the token header, but does not know session
// tokens: without this wrapper it accepts a temporary key with any token or
// none, and after its expiration. Other requests pass through unchanged.
//
// Failures are Bedrock's: 403 UnrecognizedClientException ("The security
// token included in the request is invalid.") for a missing or wrong token
// or credentials never handed out, and 403 ExpiredTokenException for
// expired ones.
func (s *STS) RequireSessionToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.checkSessionToken(r); err != nil {
			w.Header().Set("x-amzn-RequestId", newUUID())
			err.Write(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// expiredToken is the exception AWS front ends answer expired temporary
// credentials with (403, IAM "Common Error Types"). package bedrock has no
// constant for it, since Bedrock only sees it behind STS.
const expiredToken bedrock.ErrorType = "ExpiredTokenException"

// checkSessionToken is RequireSessionToken's decision. It reads only the
// Authorization header (sigv4.Check), so a request it refuses is refused
// before its body is read, and anything malformed is left to next.
func (s *STS) checkSessionToken(r *http.Request) *bedrock.Error {
	id, err := sigv4.Check(r.Header.Get("Authorization"))
	if err != nil {
		return nil
	}
	arn, ok := s.byKey[id]
	if !ok {
		return nil
	}
	role := s.roles[arn]
	token := r.Header.Get("X-Amz-Security-Token")
	if subtle.ConstantTimeCompare([]byte(token), []byte(role.SessionToken)) != 1 {
		return bedrock.Errorf(bedrock.UnrecognizedClient, sigv4.MsgUnrecognizedClient)
	}
	s.mu.Lock()
	expires, issued := s.expires[id]
	s.mu.Unlock()
	switch {
	case !issued:
		// Temporary credentials do not exist before STS issues them.
		return bedrock.Errorf(bedrock.UnrecognizedClient, sigv4.MsgUnrecognizedClient)
	case !time.Now().Before(expires):
		return &bedrock.Error{Type: expiredToken, Message: "The security token included in the request is expired", StatusCode: http.StatusForbidden}
	}
	return nil
}

// stsParams returns the request's parameters: the query string, and for a
// POST the form-encoded body, as the query protocol allows both.
func stsParams(r *http.Request, body []byte) (url.Values, *stsError) {
	params := r.URL.Query()
	if r.Method == http.MethodPost && len(body) > 0 {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, stsErrorf(http.StatusBadRequest, "MalformedQueryString", "The request body is not a valid form-encoded query.")
		}
		for k, vs := range form {
			params[k] = append(params[k], vs...)
		}
	}
	return params, nil
}

// roleParts returns the account id and role name of arn:aws:iam::<account>:
// role/<path/><name>, with stand-ins for anything else.
func roleParts(arn string) (account, name string) {
	fields := strings.SplitN(arn, ":", 6)
	if len(fields) != 6 {
		return "000000000000", "role"
	}
	account, name = fields[4], fields[5]
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return account, name
}

// roleID is a stable stand-in for the unique id IAM gives a role when it is
// created: "AROA" and 17 upper-case characters, derived from the ARN.
func roleID(arn string) string {
	sum := sha256.Sum256([]byte(arn))
	return "AROA" + base32.StdEncoding.EncodeToString(sum[:])[:17]
}

// stsError is an error in STS's query-protocol shape.
type stsError struct {
	status  int
	code    string
	message string
}

func stsErrorf(status int, code, format string, args ...any) *stsError {
	return &stsError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// stsAuthError turns a sigv4 failure into the error STS answers with: the
// query protocol's common error codes (SignatureDoesNotMatch where Bedrock
// says InvalidSignatureException, InvalidClientTokenId where it says
// UnrecognizedClientException) with the status the AWS common errors list
// gives each.
func stsAuthError(err error) *stsError {
	var be *bedrock.Error
	if !errors.As(err, &be) {
		return stsErrorf(http.StatusInternalServerError, "InternalFailure", "The request processing has failed because of an unknown error, exception or failure.")
	}
	switch be.Type {
	case bedrock.MissingAuthenticationToken:
		return &stsError{http.StatusForbidden, "MissingAuthenticationToken", be.Message}
	case bedrock.IncompleteSignature:
		return &stsError{http.StatusBadRequest, "IncompleteSignature", be.Message}
	case bedrock.UnrecognizedClient:
		return &stsError{http.StatusForbidden, "InvalidClientTokenId", be.Message}
	default: // bedrock.InvalidSignature: mismatch, skew, scope
		return &stsError{http.StatusForbidden, "SignatureDoesNotMatch", be.Message}
	}
}

// write sends the error as STS does: an ErrorResponse document whose Type
// is Sender for the caller's mistakes and Receiver for STS's own.
func (e *stsError) write(w http.ResponseWriter, requestID string) {
	doc := errorResponse{RequestID: requestID}
	doc.Error.Type = "Sender"
	if e.status >= 500 {
		doc.Error.Type = "Receiver"
	}
	doc.Error.Code = e.code
	doc.Error.Message = e.message
	writeXML(w, e.status, doc)
}

// errorResponse is STS's error document.
type errorResponse struct {
	XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ ErrorResponse"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

// assumeRoleResponse is AssumeRole's answer (AssumeRole API reference,
// "Response Elements"); the SDK reads the AssumeRoleResult element.
type assumeRoleResponse struct {
	XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ AssumeRoleResponse"`
	Result  struct {
		AssumedRoleUser assumedRoleUser `xml:"AssumedRoleUser"`
		Credentials     stsCredentials  `xml:"Credentials"`
	} `xml:"AssumeRoleResult"`
	RequestID string `xml:"ResponseMetadata>RequestId"`
}

type assumedRoleUser struct {
	Arn           string `xml:"Arn"`
	AssumedRoleID string `xml:"AssumedRoleId"`
}

type stsCredentials struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	SessionToken    string `xml:"SessionToken"`
	Expiration      string `xml:"Expiration"` // ISO 8601, as the SDK's timestamp parser expects
}

// writeXML sends v as a complete text/xml response, as STS does.
func writeXML(w http.ResponseWriter, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil { // only structs of strings: cannot happen
		status, b = http.StatusInternalServerError, []byte(xml.Header)
	}
	h := w.Header()
	h.Set("Content-Type", "text/xml")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b) // a client that went away has nothing to be told
}

// quoted bounds a caller's text quoted in a message (encoding/xml escapes
// it), so that a message stays short whatever the caller sent.
func quoted(s string) string {
	const limit = 256
	if len(s) > limit {
		return s[:limit] + "..."
	}
	return s
}
