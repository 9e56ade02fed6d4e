package bedrocksim

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/sigv4"
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

// msgBadAPIKey is Bedrock's answer to an unknown or expired API key.
const msgBadAPIKey = "Authentication failed: Please make sure your API Key is valid."

// authenticate checks a request's credentials the way the AWS front end of
// Bedrock does: a Bedrock API key as a bearer token, or a SigV4 signature
// recomputed from the request as received (package sigv4, which the gateway
// uses to verify its own callers too).
func (s *Server) authenticate(r *http.Request, body []byte) *bedrock.Error {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		// Without credentials AWS does not reveal whether the operation
		// exists.
		return bedrock.Errorf(bedrock.MissingAuthenticationToken, sigv4.MsgMissingToken)
	}
	if scheme, token, ok := strings.Cut(authz, " "); ok && strings.EqualFold(scheme, "Bearer") {
		if s.validAPIKey(strings.TrimSpace(token)) {
			return nil
		}
		// Bedrock answers an unknown or expired API key with 403
		// AccessDeniedException and this message.
		return bedrock.Errorf(bedrock.AccessDenied, msgBadAPIKey)
	}
	v := sigv4.Verifier{
		Service: signingService,
		// A regional Bedrock endpoint only accepts its own region.
		Region: s.region,
		Secret: func(id string) (string, bool) {
			secret, ok := s.creds[id]
			return secret, ok
		},
	}
	if _, err := v.Verify(r, body); err != nil {
		var be *bedrock.Error
		if errors.As(err, &be) {
			return be
		}
		return bedrock.Errorf(bedrock.InternalFailure, "%v", err)
	}
	return nil
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
