package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quotagate/quotagate/bedrocksim"
	"github.com/quotagate/quotagate/internal/redistest"
)

// gatewayOptions configure the replicas of one test.
type gatewayOptions struct {
	replicas    int
	upstream    string // the simulator's URL
	budgetsFile string
	redisURL    string
	redisPrefix string
	window      time.Duration
	maxWait     time.Duration
	leaseTTL    time.Duration
	// extra environment, e.g. the failure policy.
	extra map[string]string
}

// gateway is one replica: a cmd/gateway process on its own loopback port.
type gateway struct {
	name   string
	url    string
	cmd    *exec.Cmd
	logf   string
	exited chan struct{}
	err    error // the process's exit, valid once exited is closed
}

// startGateways starts the replicas and waits until each is live and
// ready. They are stopped (SIGTERM, then SIGKILL) and reaped when the test
// ends; on failure their stderr is copied into the test log.
func startGateways(t *testing.T, o gatewayOptions) []*gateway {
	t.Helper()
	bin := gatewayBinary(t)
	dir := t.TempDir()
	gws := make([]*gateway, o.replicas)
	for i := range gws {
		gws[i] = startGateway(t, bin, dir, i, o)
	}
	for i, g := range gws {
		gws[i] = g.readyOrRestart(t, bin, dir, i, o)
	}
	return gws
}

// readyOrRestart waits until g is ready. A replica that could not bind
// its port (FreePort's port taken in between, e.g. as the ephemeral port
// of some other test's connection) is started again on another port; any
// other failure fails the test.
func (g *gateway) readyOrRestart(t *testing.T, bin, dir string, i int, o gatewayOptions) *gateway {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := g.ready()
		if err == nil {
			return g
		}
		if attempt < 3 && strings.Contains(g.logTail(8<<10), "address already in use") {
			t.Logf("%s: its port was taken before it could bind; starting it on another", g.name)
			g = startGateway(t, bin, dir, i, o)
			continue
		}
		t.Fatalf("%v\n%s", err, g.logTail(8<<10))
	}
}

func startGateway(t *testing.T, bin, dir string, i int, o gatewayOptions) *gateway {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	g := &gateway{
		name:   fmt.Sprintf("gateway-%d", i+1),
		url:    "http://" + addr,
		logf:   filepath.Join(dir, fmt.Sprintf("gateway-%d.log", i+1)),
		exited: make(chan struct{}),
	}
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	// A minimal environment, not the test's own: a developer's AWS_PROFILE
	// or OTEL_EXPORTER_OTLP_ENDPOINT must not leak into the replicas, which
	// must talk to nothing but loopback. The credentials are static, IMDS is
	// off and the shared config files do not exist, so the SDK's chain
	// resolves locally.
	env := map[string]string{
		"PATH":                    os.Getenv("PATH"),
		"HOME":                    home,
		"QUOTAGATE_ADDR":          addr,
		"QUOTAGATE_CONFIG":        o.budgetsFile,
		"QUOTAGATE_REDIS_URL":     o.redisURL,
		"QUOTAGATE_REDIS_PREFIX":  o.redisPrefix,
		"QUOTAGATE_BUDGET_WINDOW": o.window.String(),
		"QUOTAGATE_MAX_WAIT":      o.maxWait.String(),
		"QUOTAGATE_LEASE_TTL":     o.leaseTTL.String(),
		"QUOTAGATE_LOG_LEVEL":     logLevel(),
		"QUOTAGATE_DRAIN_TIMEOUT": "2s",
		// Longer than the 250ms default: with every package's tests at
		// once, a 2-core CI machine starves redis-server for up to 190ms
		// (its slow log shows admit scripts taking that long while the
		// machine is saturated), and a replica would then switch to its
		// failure policy mid-proof. These tests are about accuracy; the
		// failover test kills Redis, which fails fast whatever the
		// timeout.
		"QUOTAGATE_REDIS_TIMEOUT":          "2s",
		"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": o.upstream,
		"AWS_REGION":                       "us-east-1",
		"AWS_ACCESS_KEY_ID":                bedrocksim.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":            bedrocksim.SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED":        "true",
		"AWS_CONFIG_FILE":                  filepath.Join(home, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE":      filepath.Join(home, "no-aws-credentials"),
	}
	for k, v := range o.extra {
		env[k] = v
	}
	logFile, err := os.Create(g.logf)
	if err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(bin)
	for k, v := range env {
		g.cmd.Env = append(g.cmd.Env, k+"="+v)
	}
	g.cmd.Stdout = logFile
	g.cmd.Stderr = logFile
	if err := g.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting %s: %v", g.name, err)
	}
	go func() {
		g.err = g.cmd.Wait()
		logFile.Close()
		close(g.exited)
	}()
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			t.Logf("%s stderr (last 8 KiB):\n%s", g.name, g.logTail(8<<10))
		}
	})
	return g
}

// logLevel is the replicas' log level: warn, so that the log holds what
// went wrong and not one access-log line per request, unless
// QUOTAGATE_E2E_LOG_LEVEL asks for more while investigating.
func logLevel() string {
	if v := os.Getenv("QUOTAGATE_E2E_LOG_LEVEL"); v != "" {
		return v
	}
	return "warn"
}

// ready polls /healthz and /readyz. The bound only keeps a broken start
// from hanging the test.
func (g *gateway) ready() error {
	deadline := time.Now().Add(30 * time.Second)
	for _, path := range []string{"/healthz", "/readyz"} {
		for {
			select {
			case <-g.exited:
				return fmt.Errorf("%s exited before it was ready: %v", g.name, g.err)
			default:
			}
			status, _, err := httpGet(g.url + path)
			if err == nil && status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s%s: got status %d, error %v; want 200 within 30s", g.name, path, status, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// alive reports an error if the process has exited.
func (g *gateway) alive() error {
	select {
	case <-g.exited:
		return fmt.Errorf("%s exited during the run: %v", g.name, g.err)
	default:
		return nil
	}
}

// stop asks the replica to drain (SIGTERM) and kills it if it does not
// exit in time, then reaps it.
func (g *gateway) stop() {
	select {
	case <-g.exited:
		return
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
}

func (g *gateway) logTail(n int64) string {
	f, err := os.Open(g.logf)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// metric returns the value of an unlabelled Prometheus series on the
// replica's /metrics, e.g. quotagate_quota_degraded.
func (g *gateway) metric(name string) (float64, error) {
	status, body, err := httpGet(g.url + "/metrics")
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("%s/metrics: status %d", g.name, status)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if series == name || strings.HasPrefix(series, name+"{") {
			return strconv.ParseFloat(strings.TrimSpace(value), 64)
		}
	}
	return 0, fmt.Errorf("%s/metrics has no series %s", g.name, name)
}

func httpGet(url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// writeBudgets writes a budgets file with one model pool.
func writeBudgets(t *testing.T, model string, l limits) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "budgets.yaml")
	body := fmt.Sprintf("models:\n  %s:\n    tpm: %d\n    rpm: %d\n    concurrency: %d\n", model, l.tpm, l.rpm, l.concurrency)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// limits are one pool's limits, shared by the budget and the simulator.
type limits struct {
	tpm, rpm, concurrency int
}
