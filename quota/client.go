package quota

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Short network timeouts, so that a dead or unreachable Redis fails fast and
// the failure policy takes over, instead of every request hanging. The
// per-call Options.Timeout (250ms by default) is usually shorter still.
const (
	defaultDialTimeout = time.Second
	defaultIOTimeout   = 500 * time.Millisecond
	defaultPoolTimeout = time.Second
)

// NewClient returns a Redis client for rawURL, one of:
//
//	redis://[[user]:password@]host[:port][/db][?option=value&...]
//	rediss://...                   the same over TLS
//	unix://[[user]:password@]/path/to/redis.sock[?db=N&...]
//	redis+cluster://[[user]:password@]host1:port1,host2:port2,...[?option=value&...]
//	rediss+cluster://...           Redis Cluster over TLS
//	redis+sentinel://[[user]:password@]host1:port1,host2:port2,.../master-name[/db][?option=value&...]
//	rediss+sentinel://...          Sentinel-managed Redis over TLS
//
// For Cluster the hosts are seed nodes: any reachable one is enough to
// discover the others. For Sentinel the hosts are Sentinels and the path
// names the monitored master; the user and password are those of the Redis
// servers, while sentinel_username and sentinel_password (options) are the
// Sentinels' own, when they require one.
//
// Options are go-redis's URL options, e.g. dial_timeout=1s, read_timeout,
// write_timeout, pool_size, max_retries, client_name, protocol; an unknown
// option is an error. Unless set there, dial_timeout is 1s, read_timeout
// and write_timeout 500ms and pool_timeout 1s, and the client always honours
// context deadlines (the store's per-call Timeout). Nothing is dialled until
// the first command.
func NewClient(rawURL string) (redis.UniversalClient, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, fmt.Errorf("quota: redis URL %q: want redis://, rediss://, unix://, redis+cluster:// or redis+sentinel://", redact(rawURL))
	}
	switch scheme {
	case "redis", "rediss", "unix":
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("quota: redis URL %q: %w", redact(rawURL), err)
		}
		shortTimeouts(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.ContextTimeoutEnabled)
		return redis.NewClient(o), nil
	case "redis+cluster", "rediss+cluster":
		o, err := parseCluster(strings.TrimSuffix(scheme, "+cluster"), rest)
		if err != nil {
			return nil, fmt.Errorf("quota: redis URL %q: %w", redact(rawURL), err)
		}
		shortTimeouts(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.ContextTimeoutEnabled)
		return redis.NewClusterClient(o), nil
	case "redis+sentinel", "rediss+sentinel":
		o, err := parseSentinel(strings.TrimSuffix(scheme, "+sentinel"), rest)
		if err != nil {
			return nil, fmt.Errorf("quota: redis URL %q: %w", redact(rawURL), err)
		}
		shortTimeouts(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.ContextTimeoutEnabled)
		return redis.NewFailoverClient(o), nil
	}
	return nil, fmt.Errorf("quota: redis URL %q: unknown scheme %q: want redis, rediss, unix, redis+cluster, rediss+cluster, redis+sentinel or rediss+sentinel", redact(rawURL), scheme)
}

// shortTimeouts applies the defaults above to the timeouts a URL left
// unset, for whichever go-redis options type the URL produced.
func shortTimeouts(dial, read, write, pool *time.Duration, contextTimeout *bool) {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{dial, defaultDialTimeout}, {read, defaultIOTimeout}, {write, defaultIOTimeout}, {pool, defaultPoolTimeout}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	*contextTimeout = true
}

// multiHost splits the part of a URL after "scheme://" into its user
// information, its comma-separated hosts, its path and its query. url.Parse
// cannot: a host list is no host.
func multiHost(rest string) (user *url.Userinfo, hosts []string, path string, query url.Values, err error) {
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		u, err := url.Parse("redis://" + authority[:i+1] + "host")
		if err != nil {
			return nil, nil, "", nil, fmt.Errorf("bad user information: %w", err)
		}
		user, authority = u.User, authority[i+1:]
	}
	for h := range strings.SplitSeq(authority, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return nil, nil, "", nil, fmt.Errorf("no host")
	}
	path, rawQuery, _ := strings.Cut(tail, "?")
	if query, err = url.ParseQuery(rawQuery); err != nil {
		return nil, nil, "", nil, fmt.Errorf("bad query: %w", err)
	}
	return user, hosts, path, query, nil
}

// single builds the one-host URL that go-redis's parsers take, with the
// other hosts as addr options.
func single(scheme string, user *url.Userinfo, hosts []string, path string, query url.Values) string {
	for _, h := range hosts[1:] {
		query.Add("addr", h)
	}
	u := url.URL{Scheme: scheme, User: user, Host: hosts[0], Path: path, RawQuery: query.Encode()}
	return u.String()
}

func parseCluster(scheme, rest string) (*redis.ClusterOptions, error) {
	user, hosts, path, query, err := multiHost(rest)
	if err != nil {
		return nil, err
	}
	if path != "" && path != "/" {
		return nil, fmt.Errorf("a cluster URL has no path (no database number), got %q", path)
	}
	return redis.ParseClusterURL(single(scheme, user, hosts, "", query))
}

func parseSentinel(scheme, rest string) (*redis.FailoverOptions, error) {
	user, hosts, path, query, err := multiHost(rest)
	if err != nil {
		return nil, err
	}
	parts := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	if len(parts) == 0 || len(parts) > 2 {
		return nil, fmt.Errorf("want /master-name or /master-name/db as the path, got %q", path)
	}
	master, db := parts[0], ""
	if len(parts) == 2 {
		db = parts[1]
	}
	sentUser, sentPass := query.Get("sentinel_username"), query.Get("sentinel_password")
	query.Del("sentinel_username")
	query.Del("sentinel_password")
	query.Set("master_name", master)
	if db != "" {
		query.Set("db", db)
	}
	o, err := redis.ParseFailoverURL(single(scheme, nil, hosts, "", query))
	if err != nil {
		return nil, err
	}
	if user != nil {
		o.Username = user.Username()
		o.Password, _ = user.Password()
	}
	o.SentinelUsername, o.SentinelPassword = sentUser, sentPass
	return o, nil
}

// redact hides passwords in a URL for error messages: the user
// information's and any *password option's.
func redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	rest, rawQuery, hasQuery := strings.Cut(rest, "?")
	authority, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		if name, _, hasPass := strings.Cut(authority[:at], ":"); hasPass {
			authority = name + ":xxxxx" + authority[at:]
		}
	}
	out := scheme + "://" + authority + path
	if !hasQuery {
		return out
	}
	params := strings.Split(rawQuery, "&")
	for i, p := range params {
		if k, _, ok := strings.Cut(p, "="); ok && strings.HasSuffix(strings.ToLower(k), "password") {
			params[i] = k + "=xxxxx"
		}
	}
	return out + "?" + strings.Join(params, "&")
}
