package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/caarlos0/env/v11"

	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/telemetry"
	"github.com/quotagate/quotagate/tenant"
)

// Config is the gateway's whole configuration, read from the environment
// once at start-up (ARCHITECTURE.md section 3).
type Config struct {
	Addr         string        `env:"QUOTAGATE_ADDR" envDefault:":8080"`
	TLSCertFile  string        `env:"QUOTAGATE_TLS_CERT_FILE"`
	TLSKeyFile   string        `env:"QUOTAGATE_TLS_KEY_FILE"`
	MaxBodyBytes int64         `env:"QUOTAGATE_MAX_BODY_BYTES" envDefault:"25000000"`
	DrainTimeout time.Duration `env:"QUOTAGATE_DRAIN_TIMEOUT" envDefault:"30s"`
	// DrainDelay keeps serving, while /readyz reports not ready, before the
	// listener closes: load balancers see the replica leave before its
	// connections are refused.
	DrainDelay time.Duration `env:"QUOTAGATE_DRAIN_DELAY" envDefault:"0s"`
	// UpstreamHeaderTimeout bounds the wait for Bedrock's response headers.
	UpstreamHeaderTimeout time.Duration `env:"QUOTAGATE_UPSTREAM_HEADER_TIMEOUT" envDefault:"10m"`
	LogLevel              string        `env:"QUOTAGATE_LOG_LEVEL" envDefault:"info"`

	// Budgets (see README, "Budgets").
	BudgetsFile    string        `env:"QUOTAGATE_CONFIG"`
	RedisURL       string        `env:"QUOTAGATE_REDIS_URL"`
	RedisPrefix    string        `env:"QUOTAGATE_REDIS_PREFIX" envDefault:"qg:"`
	RedisTimeout   time.Duration `env:"QUOTAGATE_REDIS_TIMEOUT" envDefault:"250ms"`
	FailurePolicy  string        `env:"QUOTAGATE_FAILURE_POLICY" envDefault:"fail-closed"`
	Replicas       int           `env:"QUOTAGATE_REPLICAS" envDefault:"1"`
	MaxWait        time.Duration `env:"QUOTAGATE_MAX_WAIT" envDefault:"10s"`
	LeaseTTL       time.Duration `env:"QUOTAGATE_LEASE_TTL" envDefault:"1m"`
	EstimateMargin float64       `env:"QUOTAGATE_ESTIMATE_MARGIN" envDefault:"0.05"`
	CountTokens    bool          `env:"QUOTAGATE_COUNT_TOKENS" envDefault:"false"`
	// BudgetWindow is the period of TPM and RPM budgets. It is a minute in
	// production; tests and demos shorten it to see windows roll quickly.
	BudgetWindow time.Duration `env:"QUOTAGATE_BUDGET_WINDOW" envDefault:"1m"`

	// Routes (see README, "Routes and overflow").
	Cooldown       time.Duration `env:"QUOTAGATE_COOLDOWN" envDefault:"5s"`
	CooldownAfter  int           `env:"QUOTAGATE_COOLDOWN_AFTER" envDefault:"3"`
	CooldownWindow time.Duration `env:"QUOTAGATE_COOLDOWN_WINDOW" envDefault:"10s"`
	MaxAttempts    int           `env:"QUOTAGATE_MAX_ATTEMPTS" envDefault:"4"`
	RetryBase      time.Duration `env:"QUOTAGATE_RETRY_BASE" envDefault:"50ms"`
	RetryMax       time.Duration `env:"QUOTAGATE_RETRY_MAX" envDefault:"2s"`

	// Tenants (see README, "Tenants").
	AdminToken string `env:"QUOTAGATE_ADMIN_TOKEN"`
	// AdminAddr, when set, serves the admin API on its own listener (and
	// not on Addr), e.g. one reachable only from the platform team's
	// network.
	AdminAddr string `env:"QUOTAGATE_ADMIN_ADDR"`
	// SecretsKey seals the secrets of access keys issued through the admin
	// API; empty falls back to AdminToken (see secretsKey).
	SecretsKey string `env:"QUOTAGATE_SECRETS_KEY"`
	// AuthFailures is how many failed authentications per minute one
	// source may make before it is refused with ThrottlingException.
	AuthFailures int `env:"QUOTAGATE_AUTH_FAILURES" envDefault:"20"`
	// RequireAuth forbids open mode: with no tenant configured, every
	// request is refused instead of served, unauthenticated, as tenant
	// "default". Without it, a gateway that starts with no tenant in the
	// budgets file and none in Redis runs open, which is also what a
	// replica started after Redis lost its data (a restart without
	// persistence) finds: set it wherever tenants are meant to exist. A
	// replica that has seen a tenant never opens, with or without it.
	RequireAuth bool `env:"QUOTAGATE_REQUIRE_AUTH" envDefault:"false"`
	// TrustedProxies are the load balancers (CIDRs or single addresses)
	// whose X-Forwarded-For
	// names the client: failed authentications are then counted per
	// client, not per balancer, which would throttle every tenant at once.
	TrustedProxies []string `env:"QUOTAGATE_TRUSTED_PROXIES" envSeparator:","`

	// Standard AWS variables. Region and credentials are resolved by the
	// SDK's default chain; these two are read here because they change how
	// the gateway reaches Bedrock.
	ServiceEndpoint string `env:"AWS_ENDPOINT_URL_BEDROCK_RUNTIME"`
	GlobalEndpoint  string `env:"AWS_ENDPOINT_URL"`
	BearerToken     string `env:"AWS_BEARER_TOKEN_BEDROCK"`
}

// String prints the configuration for the start-up log, without secrets.
func (c Config) String() string {
	return fmt.Sprintf("addr=%s tls=%t max_body_bytes=%d drain_timeout=%s upstream_header_timeout=%s log_level=%s upstream_auth=%s budgets_file=%q redis=%t failure_policy=%s replicas=%d max_wait=%s lease_ttl=%s estimate_margin=%g count_tokens=%t budget_window=%s admin_api=%t admin_addr=%q auth_failures=%d require_auth=%t trusted_proxies=%q cooldown=%s/%d-in-%s max_attempts=%d retry=%s..%s",
		c.Addr, c.TLSCertFile != "", c.MaxBodyBytes, c.DrainTimeout, c.UpstreamHeaderTimeout, c.LogLevel, c.upstreamAuth(),
		c.BudgetsFile, c.RedisURL != "", c.FailurePolicy, c.Replicas, c.MaxWait, c.LeaseTTL, c.EstimateMargin, c.CountTokens, c.BudgetWindow,
		c.AdminToken != "", c.AdminAddr, c.AuthFailures, c.RequireAuth, strings.Join(c.TrustedProxies, ","),
		c.Cooldown, c.CooldownAfter, c.CooldownWindow, c.MaxAttempts, c.RetryBase, c.RetryMax)
}

// secretsKey is the key material that seals issued access-key secrets:
// QUOTAGATE_SECRETS_KEY, else the admin token. Falling back keeps a small
// deployment to one secret; rotating the admin token then invalidates every
// issued access key, which the README says.
func (c Config) secretsKey() []byte {
	if c.SecretsKey != "" {
		return []byte(c.SecretsKey)
	}
	return []byte(c.AdminToken)
}

// trustedProxies parses QUOTAGATE_TRUSTED_PROXIES: CIDRs, or single
// addresses (a /32 or /128).
func (c Config) trustedProxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range c.TrustedProxies {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR (10.0.0.0/8) nor an address", v)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (c Config) upstreamAuth() string {
	if c.BearerToken != "" {
		return "bedrock-api-key"
	}
	return "sigv4"
}

// loadConfig parses and validates the environment. Every problem is
// reported at once, so that one deploy fixes them all.
func loadConfig(environ map[string]string) (Config, error) {
	var c Config
	var errs []error
	if err := env.ParseWithOptions(&c, env.Options{Environment: environ}); err != nil {
		var agg env.AggregateError
		if errors.As(err, &agg) {
			errs = append(errs, agg.Errors...)
		} else {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.validate()...)
	return c, errors.Join(errs...)
}

func (c Config) validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, port, err := net.SplitHostPort(c.Addr); err != nil || port == "" {
		bad("QUOTAGATE_ADDR=%q: want host:port, e.g. :8080", c.Addr)
	}
	switch {
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		bad("QUOTAGATE_TLS_CERT_FILE and QUOTAGATE_TLS_KEY_FILE must be set together")
	case c.TLSCertFile != "":
		if _, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			bad("QUOTAGATE_TLS_CERT_FILE/QUOTAGATE_TLS_KEY_FILE: %v", err)
		}
	}
	if c.MaxBodyBytes <= 0 {
		bad("QUOTAGATE_MAX_BODY_BYTES=%d: must be positive", c.MaxBodyBytes)
	}
	if c.DrainDelay < 0 {
		bad("QUOTAGATE_DRAIN_DELAY=%s: must not be negative", c.DrainDelay)
	}
	if c.DrainTimeout <= 0 {
		bad("QUOTAGATE_DRAIN_TIMEOUT=%s: must be positive", c.DrainTimeout)
	}
	if c.UpstreamHeaderTimeout <= 0 {
		bad("QUOTAGATE_UPSTREAM_HEADER_TIMEOUT=%s: must be positive", c.UpstreamHeaderTimeout)
	}
	if _, err := telemetry.NewLogger(nil, c.LogLevel); err != nil {
		bad("QUOTAGATE_LOG_LEVEL: %v", err)
	}
	switch quota.Policy(c.FailurePolicy) {
	case quota.FailClosed, quota.FailOpen:
	default:
		bad("QUOTAGATE_FAILURE_POLICY=%q: want fail-closed or fail-open", c.FailurePolicy)
	}
	if c.Replicas < 1 {
		bad("QUOTAGATE_REPLICAS=%d: must be at least 1", c.Replicas)
	}
	if c.MaxWait < 0 {
		bad("QUOTAGATE_MAX_WAIT=%s: must not be negative", c.MaxWait)
	}
	if c.LeaseTTL < 3*time.Second {
		bad("QUOTAGATE_LEASE_TTL=%s: must be at least 3s (it is renewed every third of it)", c.LeaseTTL)
	}
	if c.Cooldown <= 0 || c.CooldownWindow <= 0 || c.CooldownAfter < 1 {
		bad("QUOTAGATE_COOLDOWN=%s, QUOTAGATE_COOLDOWN_WINDOW=%s, QUOTAGATE_COOLDOWN_AFTER=%d: durations must be positive and the count at least 1", c.Cooldown, c.CooldownWindow, c.CooldownAfter)
	}
	if c.MaxAttempts < 1 {
		bad("QUOTAGATE_MAX_ATTEMPTS=%d: must be at least 1", c.MaxAttempts)
	}
	if c.RetryBase <= 0 || c.RetryMax < c.RetryBase {
		bad("QUOTAGATE_RETRY_BASE=%s, QUOTAGATE_RETRY_MAX=%s: the base must be positive and at most the max", c.RetryBase, c.RetryMax)
	}
	if c.RedisTimeout <= 0 {
		bad("QUOTAGATE_REDIS_TIMEOUT=%s: must be positive", c.RedisTimeout)
	}
	if c.EstimateMargin < 0 || c.EstimateMargin > 1 {
		bad("QUOTAGATE_ESTIMATE_MARGIN=%g: want a fraction between 0 and 1", c.EstimateMargin)
	}
	if c.BudgetWindow < time.Second {
		bad("QUOTAGATE_BUDGET_WINDOW=%s: must be at least 1s", c.BudgetWindow)
	}
	if strings.ContainsAny(c.RedisPrefix, "{}") {
		bad("QUOTAGATE_REDIS_PREFIX=%q: must not contain { or }, which would change the keys' Cluster hash slot", c.RedisPrefix)
	}
	if c.AdminAddr != "" {
		if _, port, err := net.SplitHostPort(c.AdminAddr); err != nil || port == "" {
			bad("QUOTAGATE_ADMIN_ADDR=%q: want host:port, e.g. 127.0.0.1:8081", c.AdminAddr)
		}
		if c.AdminToken == "" {
			bad("QUOTAGATE_ADMIN_ADDR is set but QUOTAGATE_ADMIN_TOKEN is not: the admin API is disabled without a token")
		}
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		bad("QUOTAGATE_ADMIN_TOKEN: at least 16 characters, please (it guards key issuance)")
	}
	if c.SecretsKey != "" && len(c.SecretsKey) < 16 {
		bad("QUOTAGATE_SECRETS_KEY: at least 16 characters")
	}
	if _, err := c.trustedProxies(); err != nil {
		bad("QUOTAGATE_TRUSTED_PROXIES: %v", err)
	}
	if c.AuthFailures < 1 {
		bad("QUOTAGATE_AUTH_FAILURES=%d: must be at least 1", c.AuthFailures)
	}
	if c.RedisURL != "" {
		if client, err := quota.NewClient(c.RedisURL); err != nil {
			bad("QUOTAGATE_REDIS_URL: %v", err)
		} else {
			_ = client.Close() // parsed only; nothing was dialled
		}
	}
	if c.BudgetsFile != "" {
		if bc, err := quota.LoadConfig(c.BudgetsFile); err != nil {
			bad("QUOTAGATE_CONFIG=%s:\n%v", c.BudgetsFile, err)
		} else {
			// Start-up resolves every secret and refuses to serve without
			// one; say so here too, so that -check-config predicts it. The
			// errors name the variable or file, never the secret.
			for _, id := range slices.Sorted(maps.Keys(bc.Tenants)) {
				for _, ak := range bc.Tenants[id].AccessKeys {
					if _, err := tenant.ResolveSecret(ak); err != nil {
						bad("QUOTAGATE_CONFIG=%s: tenant %q access key %s: %v", c.BudgetsFile, id, ak.ID, err)
					}
				}
			}
		}
	}
	for name, v := range map[string]string{"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": c.ServiceEndpoint, "AWS_ENDPOINT_URL": c.GlobalEndpoint} {
		if v == "" {
			continue
		}
		if _, err := parseEndpoint(v); err != nil {
			bad("%s=%q: %v", name, v, err)
		}
	}
	return errs
}

func parseEndpoint(v string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("want an http:// or https:// URL with a host")
	}
	return u, nil
}

// upstreamURL is the Bedrock Runtime endpoint: the service-specific
// endpoint variable, then the global one, then the regional AWS host.
func (c Config) upstreamURL(region string) *url.URL {
	for _, v := range []string{c.ServiceEndpoint, c.GlobalEndpoint} {
		if u, err := parseEndpoint(v); err == nil {
			return u
		}
	}
	host := "bedrock-runtime." + region + ".amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		host += ".cn"
	}
	return &url.URL{Scheme: "https", Host: host}
}

// loadAWS resolves the region and the credential chain (environment, shared
// profile, web identity/IRSA, Pod Identity, ECS, IMDS) without contacting
// anything: credentials are fetched lazily and cached by the SDK.
func loadAWS(ctx context.Context) (aws.Config, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("AWS_REGION (or a region in the AWS profile) is required: it picks the Bedrock endpoint and signs requests")
	}
	return cfg, nil
}
