package proxy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/quotagate/quotagate/bedrock"
	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/sigv4"
	"github.com/quotagate/quotagate/telemetry"
	"github.com/quotagate/quotagate/tenant"
	"github.com/quotagate/quotagate/tokens"
)

// signingService is the SigV4 service name callers sign Bedrock Runtime
// requests with: the SDKs' endpoint resolver signs bedrock-runtime as
// "bedrock", and so they do when pointed at the gateway.
const signingService = "bedrock"

// defaultTenant is every caller when no tenant is configured (open mode).
var defaultTenant = &tenant.Tenant{ID: tenant.DefaultID}

// authenticate says which tenant r is from, after its body was read (SigV4
// covers the body's hash) and before admission. With no tenant configured
// (g.Tenants nil, or an Open directory) everyone is the default tenant and
// any Authorization header is ignored. Otherwise a request carries either a
// Bedrock API key (Authorization: Bearer, the scheme the AWS SDKs use when
// AWS_BEARER_TOKEN_BEDROCK is set) or a SigV4 signature for service
// "bedrock" from one of a tenant's access keys, and may only call the
// tenant's allowed models.
//
// A source that keeps failing is refused with ThrottlingException before
// its credentials are looked at (see AuthLimiter). Errors carry AWS's
// wording and never a key, secret, signature or any other part of a
// header: they reach the caller, the access log and the span.
//
// Until the directory has loaded the admin API's overrides
// (tenant.Directory.Loaded), a key it does not know may be one the admin
// API issued: it is answered with 503 ServiceUnavailableException, which
// the SDKs retry, rather than a 403 they would not.
func (g *Gateway) authenticate(ctx context.Context, r *http.Request, body []byte) (*tenant.Tenant, error) {
	t, _, err := g.authenticateIn(ctx, r, body)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// authenticateIn is authenticate that also returns the directory it used,
// so that admission reads the pool's guarantees from the same snapshot. A
// tenant refused a model is returned with the error, for the access log.
func (g *Gateway) authenticateIn(ctx context.Context, r *http.Request, body []byte) (*tenant.Tenant, *tenant.Directory, error) {
	st, err := g.authHeaders(ctx, r)
	if err == nil {
		st, err = g.authBody(ctx, r, st, body)
	}
	return st.tenant, st.dir, err
}

// authState is authentication in progress: what the headers settled, and
// whether the body is still needed (a SigV4 signature covers its hash).
type authState struct {
	dir     *tenant.Directory
	source  string
	tenant  *tenant.Tenant
	pending bool // a SigV4 request whose signature is checked with the body
}

// authHeaders does every check that needs no body, before the gateway
// reads up to MaxBodyBytes of it: a blocked source, a missing or malformed
// Authorization header, an unknown key, and a bearer key entirely. A
// SigV4 request from a known key is left pending for authBody.
func (g *Gateway) authHeaders(ctx context.Context, r *http.Request) (authState, error) {
	if g.Tenants == nil {
		return authState{tenant: defaultTenant}, nil
	}
	dir := g.Tenants.Current(ctx)
	if dir == nil {
		// A source that cannot say who the tenants are must not open the
		// gateway to everyone.
		return authState{}, fmt.Errorf("%w: no tenant directory", errTenantsUnavailable)
	}
	if dir.Open() {
		return authState{tenant: defaultTenant, dir: dir}, nil
	}
	st := authState{dir: dir, source: g.clientSource(r)}
	if g.AuthFailures != nil {
		// Checked before the credentials, so a blocked brute-forcer
		// learns nothing about the keys it tries.
		if d, blocked := g.AuthFailures.Blocked(st.source); blocked {
			return st, authThrottled(d)
		}
	}
	authz := r.Header.Get("Authorization")
	// The scheme is case-insensitive and followed by one space (RFC 9110,
	// section 11.4); "Bearer" and a tab is neither scheme.
	if scheme, token, ok := strings.Cut(authz, " "); ok && strings.EqualFold(scheme, "Bearer") {
		t, _, ok := dir.ByAPIKey(strings.TrimSpace(token))
		if !ok {
			// Bedrock itself answers AccessDeniedException for a bad API
			// key; ours is the answer to any unknown key, as for SigV4.
			return st, g.refuse(ctx, st, &authError{class: errUnrecognizedClient, msg: sigv4.MsgUnrecognizedClient})
		}
		return g.allow(ctx, r, st, t)
	}
	if authz != "" && !strings.HasPrefix(authz, sigv4.Algorithm+" ") {
		return st, g.refuse(ctx, st, &authError{class: errIncompleteSignature, msg: msgBadAuthorization})
	}
	id, err := sigv4.Check(authz)
	if err != nil {
		return st, g.refuse(ctx, st, classifyAuth(err))
	}
	if _, _, ok := dir.ByAccessKey(id); !ok {
		return st, g.refuse(ctx, st, &authError{class: errUnrecognizedClient, msg: sigv4.MsgUnrecognizedClient})
	}
	st.pending = true
	return st, nil
}

// authBody verifies a pending SigV4 signature against the body read.
func (g *Gateway) authBody(ctx context.Context, r *http.Request, st authState, body []byte) (authState, error) {
	if !st.pending {
		return st, nil
	}
	st.pending = false
	var t *tenant.Tenant
	v := sigv4.Verifier{
		Service: signingService,
		Secret: func(id string) (string, bool) {
			found, secret, ok := st.dir.ByAccessKey(id)
			t = found
			return secret, ok
		},
	}
	if _, err := v.Verify(r, body); err != nil {
		return st, g.refuse(ctx, st, classifyAuth(err))
	}
	return g.allow(ctx, r, st, t)
}

// allow admits an identified tenant if it may call the model.
func (g *Gateway) allow(ctx context.Context, r *http.Request, st authState, t *tenant.Tenant) (authState, error) {
	// The tenant is known from here, even if its model is refused; the
	// gateway names it on the server span again once it is admitted.
	trace.SpanFromContext(ctx).SetAttributes(telemetry.Tenant.String(t.ID))
	st.tenant = t
	route, ok := bedrock.ParsePath(r.URL.EscapedPath())
	if !ok || !(t.Allows(route.ModelID) || g.aliasAllowed(t, route.ModelID)) {
		// Bedrock's own wording for a model the caller has no access to,
		// then which tenant and model, so the platform team can tell.
		// The tenant stays on the state: who was refused is what the
		// access log must say.
		return st, &authError{class: errModelDenied, msg: fmt.Sprintf(
			"You don't have access to the model with the specified model ID. Quotagate tenant %q is not allowed to call model %q.", t.ID, route.ModelID)}
	}
	return st, nil
}

// aliasAllowed reports whether name is a route alias (a name that is no
// model's) with a target the tenant may call. A tenant's models list
// models, not the aliases platform teams add in front of them; a route
// keyed by a model id is governed by that id like any other request.
func (g *Gateway) aliasAllowed(t *tenant.Tenant, name string) bool {
	if g.Budgets == nil || tokens.FamilyOf(name) != tokens.Unknown {
		return false
	}
	rt, ok := g.Budgets().Route(quota.PoolID(name))
	if !ok {
		return false
	}
	for _, target := range rt.Targets {
		if t.Allows(target.Model) {
			return true
		}
	}
	return false
}

// refuse answers refused credentials: counted as a failure of the source,
// except an unknown key while the directory has not loaded the admin
// API's keys yet, which is a retryable 503.
func (g *Gateway) refuse(ctx context.Context, st authState, err error) error {
	if errors.Is(err, errUnrecognizedClient) && !st.dir.Loaded() {
		// Not counted as a failure: the caller may hold a good key,
		// and its SDK retries. Guessing keys gains nothing meanwhile.
		return &authError{class: errCredentialsUnverifiable, msg: msgCredentialsUnverifiable, retryAfter: time.Second}
	}
	return g.authFailed(ctx, st.source, err)
}

// msgCredentialsUnverifiable answers an unknown key while the directory
// has not loaded the admin API's keys yet.
const msgCredentialsUnverifiable = "The gateway cannot verify credentials right now. Try again later."

// msgBadAuthorization answers an Authorization header of neither scheme.
// It quotes nothing of the header: with no scheme, or a tab after
// "Bearer", the header starts with the caller's key.
const msgBadAuthorization = "The Authorization header must be 'Bearer <API key>' or an AWS Signature Version 4 ('AWS4-HMAC-SHA256 Credential=...')."

// classifyAuth wraps a verifier's *bedrock.Error in its failure class,
// keeping AWS's wording for the caller.
func classifyAuth(err error) error {
	be := bedrockError(err)
	class := errIncompleteSignature
	switch be.Type {
	case bedrock.MissingAuthenticationToken:
		class = errMissingToken
	case bedrock.UnrecognizedClient:
		class = errUnrecognizedClient
	case bedrock.InvalidSignature:
		class = errInvalidSignature
	}
	return &authError{class: class, msg: be.Message}
}

// authFailed records a failed authentication from source and returns what
// the caller is answered: the failure itself, or ThrottlingException once
// the source is over its limit.
func (g *Gateway) authFailed(ctx context.Context, source string, err error) error {
	if g.AuthFailures == nil {
		return err
	}
	// The count must not depend on the caller waiting for the answer.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), authLimitTimeout)
	defer cancel()
	d, lerr := g.AuthFailures.Failed(ctx, source)
	if lerr != nil {
		// The credentials were still refused. A limiter may still have
		// counted the failure another way (d, from its fallback); the
		// log says the shared count missed it.
		g.logger().WarnContext(ctx, "authentication failure not counted in the shared limiter", "source", source, "error", lerr.Error())
	}
	if d > 0 {
		return authThrottled(d)
	}
	return err
}

// authLimitTimeout bounds the shared limiter's round trip on a failed
// authentication.
const authLimitTimeout = time.Second

// clientSource is who a failure is counted against: the peer's IP address,
// or, when the peer is one of g.TrustedProxies, the client it forwarded
// for. That client is the right-most X-Forwarded-For address that is not a
// trusted proxy: each proxy appends the address of its own peer, so the
// addresses right of the first untrusted one were written by trusted
// proxies, and everything left of it may be the client's own invention.
// Should every address be trusted, the left-most one is the client (it
// calls from inside the trusted ranges); an entry that is not an address
// stops the walk at the trusted proxy right of it.
func (g *Gateway) clientSource(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !g.trusted(peer.Unmap()) {
		return host
	}
	source := peer.Unmap().WithZone("")
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		entries := strings.Split(hops[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			addr, ok := forwardedAddr(entries[j])
			if !ok {
				return source.String()
			}
			source = addr
			if !g.trusted(addr) {
				return addr.String()
			}
		}
	}
	return source.String()
}

// trusted reports whether addr is in one of g.TrustedProxies.
func (g *Gateway) trusted(addr netip.Addr) bool {
	for _, p := range g.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// forwardedAddr parses one X-Forwarded-For entry: an IPv4 or IPv6 address,
// bracketed or not, with or without a port (some balancers add one), as a
// plain address without zone.
func forwardedAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	addr, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}, false
		}
		addr = ap.Addr()
	}
	return addr.Unmap().WithZone(""), true
}

// authError is a refused request: its class (one of the auth classes in
// errors.go) decides the Bedrock exception, msg is what the caller reads.
type authError struct {
	class      error
	msg        string
	retryAfter time.Duration // for errAuthThrottled
}

func (e *authError) Error() string { return e.msg }
func (e *authError) Unwrap() error { return e.class }

// authThrottled is the answer to a source over its failure limit.
func authThrottled(d time.Duration) *authError {
	return &authError{class: errAuthThrottled, retryAfter: d,
		msg: "Too many failed authentication attempts from this address, please wait before trying again."}
}

// authErrorOf returns the *authError in err's chain; one made from err
// itself when there is none, so bedrockError never fails on a class
// wrapped some other way.
func authErrorOf(err error) *authError {
	var ae *authError
	if errors.As(err, &ae) {
		return ae
	}
	return &authError{msg: err.Error()}
}

// retryAfterSeconds rounds up: a client that waits the advertised seconds
// must find itself unblocked.
func (e *authError) retryAfterSeconds() int {
	return max(int(math.Ceil(e.retryAfter.Seconds())), 1)
}

// AuthLimiter throttles sources that keep failing authentication, so that
// guessing keys is slow. It keeps the hot path free: only failures cost a
// call to shared state, and the answer for a blocked source is remembered
// locally until the block ends.
type AuthLimiter interface {
	// Blocked reports whether source is refused without a look at its
	// credentials, and for how long still. It runs on every request of
	// a gateway with tenants, so it answers from local memory.
	Blocked(source string) (retryAfter time.Duration, blocked bool)
	// Failed counts one failed authentication from source. When that puts
	// source over its limit it returns how long source is blocked, and
	// Blocked says so from then on.
	Failed(ctx context.Context, source string) (retryAfter time.Duration, err error)
}
