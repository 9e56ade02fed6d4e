package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/quotagate/quotagate/proxy"
	"github.com/quotagate/quotagate/quota"
)

// upstreamSet turns the budgets file's upstreams into signing transports.
// One is built per definition and kept: its credentials (an assumed role's
// included) are cached and refreshed by the SDK, and a hot reload that
// changes an upstream simply gets a new one.
type upstreamSet struct {
	// base is the gateway's own AWS configuration: its credentials sign
	// for upstreams without a role, and call STS for those with one.
	base aws.Config
	// transport is the shared connection pool.
	transport http.RoundTripper
	// bearer is AWS_BEARER_TOKEN_BEDROCK, used where no role is assumed
	// (a Bedrock API key belongs to the gateway's own account).
	bearer string

	mu    sync.Mutex
	built map[quota.Upstream]builtUpstream
}

type builtUpstream struct {
	url *url.URL
	rt  http.RoundTripper
}

var _ proxy.UpstreamResolver = (*upstreamSet)(nil)

// maxBuiltUpstreams bounds the signers kept across reloads.
const maxBuiltUpstreams = 64

// Resolve implements proxy.UpstreamResolver.
func (s *upstreamSet) Resolve(_ context.Context, u quota.Upstream) (*url.URL, http.RoundTripper, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.built[u]; ok {
		return b.url, b.rt, nil
	}
	endpoint, err := url.Parse(u.URL())
	if err != nil {
		return nil, nil, fmt.Errorf("upstream %s: endpoint: %w", u.Name, err)
	}
	signer := &proxy.Signer{Transport: s.transport, Credentials: s.base.Credentials, Region: u.Region}
	if u.RoleARN != "" {
		// The STS client signs with the gateway's own credentials (and
		// honours AWS_ENDPOINT_URL_STS); the cache refreshes the role's
		// credentials before they expire, so a request never waits on STS
		// except the first after start or expiry.
		client := sts.NewFromConfig(s.base)
		signer.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(client, u.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = "quotagate"
			if u.ExternalID != "" {
				o.ExternalID = aws.String(u.ExternalID)
			}
		}))
	} else if s.bearer != "" {
		// An API key is a bearer secret, not bound to a host as a SigV4
		// signature is: never send it in clear text.
		if endpoint.Scheme != "https" {
			return nil, nil, fmt.Errorf("upstream %s: the Bedrock API key (AWS_BEARER_TOKEN_BEDROCK) is sent only over https, and the endpoint is %s", u.Name, endpoint.Scheme)
		}
		signer.BearerToken = s.bearer
	}
	if s.built == nil || len(s.built) >= maxBuiltUpstreams {
		// Reloads that change upstreams leave old ones behind; start over
		// rather than grow without bound.
		s.built = map[quota.Upstream]builtUpstream{}
	}
	b := builtUpstream{url: endpoint, rt: signer}
	s.built[u] = b
	return b.url, b.rt, nil
}
