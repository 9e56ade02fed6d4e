package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/quotagate/quotagate/proxy"
	"github.com/quotagate/quotagate/quota"
	"github.com/quotagate/quotagate/telemetry"
	"github.com/quotagate/quotagate/tokens"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// upstream is how the gateway reaches Bedrock: an endpoint and the
// credentials to sign with.
type upstream struct {
	url         *url.URL
	region      string
	credentials aws.CredentialsProvider
}

// serve runs the gateway until ctx is cancelled, then drains.
func serve(ctx context.Context, cfg Config, demo bool, stdout, stderr io.Writer) error {
	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "quotagate", Version: version, LogOutput: stderr, LogLevel: cfg.LogLevel})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	log := tel.Logger

	var up upstream
	var awsCfg aws.Config
	if demo {
		sim, err := startSimulator(ctx, log)
		if err != nil {
			return err
		}
		defer sim.close()
		up = sim.upstream
		cfg.BearerToken = "" // the simulator is signed for with its own keys
		awsCfg = aws.Config{Region: up.region, Credentials: up.credentials}
	} else {
		if awsCfg, err = loadAWS(ctx); err != nil {
			return err
		}
		up = upstream{url: cfg.upstreamURL(awsCfg.Region), region: awsCfg.Region, credentials: awsCfg.Credentials}
	}

	metrics, err := proxy.NewMetrics(tel.MeterProvider)
	if err != nil {
		return err
	}
	bud, err := newBudgets(cfg, demo, metrics, log)
	if err != nil {
		return err
	}
	defer bud.close()
	gw := newGateway(cfg, up, log)
	gw.Metrics = metrics
	gw.Upstreams = &upstreamSet{base: awsCfg, transport: signerTransport(gw), bearer: cfg.BearerToken}
	bud.wire(gw, cfg)
	ten, err := newTenants(cfg, bud, log)
	if err != nil {
		return err
	}
	ten.start(ctx)
	ten.wire(gw, cfg)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := newServer(cfg, gw, up, log)
	srv.metrics = tel.MetricsHandler
	srv.budgets = bud
	srv.tenants = ten
	if h := ten.adminHandler(); h != nil {
		if cfg.AdminAddr == "" {
			srv.admin = h
		} else {
			aln, err := net.Listen("tcp", cfg.AdminAddr)
			if err != nil {
				_ = ln.Close()
				return fmt.Errorf("admin listen: %w", err)
			}
			asrv := newAdminServer(cfg, h, log)
			adminDone := make(chan struct{})
			go func() { defer close(adminDone); asrv.serve(aln) }()
			defer func() { asrv.close(); <-adminDone }()
			log.Info("admin API listening", "addr", aln.Addr().String())
		}
	}
	bctx, stopBudgets := context.WithCancel(context.WithoutCancel(ctx))
	budgetsDone := make(chan struct{})
	go func() {
		defer close(budgetsDone)
		var wg sync.WaitGroup
		wg.Go(func() { bud.run(bctx) })
		wg.Go(func() { ten.run(bctx) })
		wg.Wait()
	}()
	defer func() { stopBudgets(); <-budgetsDone }()
	log.Info("quotagate listening", "addr", ln.Addr().String(), "upstream", up.url.String(), "region", up.region,
		"config", cfg.String(), "tracing_export", tel.Exporting, "version", version)
	if demo {
		printDemo(stdout, ln.Addr(), cfg.TLSCertFile != "")
	}
	return srv.run(ctx, ln)
}

func newGateway(cfg Config, up upstream, log *slog.Logger) *proxy.Gateway {
	signer := &proxy.Signer{
		Transport:   proxy.NewTransport(proxy.TransportOptions{ResponseHeaderTimeout: cfg.UpstreamHeaderTimeout}),
		Credentials: up.credentials,
		Region:      up.region,
		BearerToken: cfg.BearerToken,
	}
	gw := &proxy.Gateway{
		Upstream:     up.url,
		Transport:    signer,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Logger:       log,
		Calibrator:   &tokens.Calibrator{Margin: marginOrNone(cfg.EstimateMargin)},
		Cooldown:     quota.Cooldown{After: cfg.CooldownAfter, Window: cfg.CooldownWindow, Cool: cfg.Cooldown},
		MaxAttempts:  cfg.MaxAttempts,
		RetryBase:    cfg.RetryBase,
		RetryMax:     cfg.RetryMax,
	}
	if cfg.CountTokens {
		gw.CountTokens = proxy.NewCountTokens(up.url, signer)
	}
	return gw
}

// signerTransport is the connection pool under the gateway's signer, shared
// by the other upstreams' signers.
func signerTransport(gw *proxy.Gateway) http.RoundTripper {
	if s, ok := gw.Transport.(*proxy.Signer); ok && s.Transport != nil {
		return s.Transport
	}
	return http.DefaultTransport
}

// marginOrNone maps the configured margin to Calibrator's convention, where
// zero means its default and a negative value means none.
func marginOrNone(m float64) float64 {
	if m == 0 {
		return -1
	}
	return m
}

// server is the HTTP server with its health endpoints and drain logic.
type server struct {
	http     *http.Server
	cfg      Config
	log      *slog.Logger
	draining atomic.Bool
	// inflight counts running handlers, so that a drain that ran out of
	// time still waits for the cancelled ones to settle their budgets.
	inflight sync.WaitGroup
	metrics  http.Handler // Prometheus; nil: no /metrics
	budgets  *budgets     // nil: no budgets
	admin    http.Handler // the admin API on this listener; nil: not here
	tenants  *tenants     // nil: no tenant registry to wait for
	// cancel ends every in-flight request when the drain timeout runs out.
	cancel context.CancelFunc
	base   context.Context
}

func newServer(cfg Config, gw http.Handler, up upstream, log *slog.Logger) *server {
	s := &server{cfg: cfg, log: log}
	s.base, s.cancel = context.WithCancel(context.Background())
	traced := telemetry.ServerHandler(gw, proxy.SpanName)
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Done()
		// A switch rather than http.ServeMux: the mux would clean and
		// redirect paths, and Bedrock routes must be matched on the raw,
		// escaped path (model ARNs carry %2F).
		if s.admin != nil && strings.HasPrefix(r.URL.Path, "/admin/") {
			s.admin.ServeHTTP(w, r)
			return
		}
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "ok\n")
		case "/readyz":
			s.ready(w, r, up)
		case "/metrics":
			if s.metrics == nil {
				http.NotFound(w, r)
				return
			}
			s.metrics.ServeHTTP(w, r)
		default:
			traced.ServeHTTP(w, r)
		}
	})
	// HTTP/2 without TLS too (prior knowledge, h2c): the AWS SDK for
	// JavaScript v3 speaks HTTP/2 by default, and a gateway reached over
	// plain http inside a cluster must not make it fail with a protocol
	// error.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	s.http = &http.Server{
		Handler:           mux,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return s.base },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// ready answers 200 only when the gateway can do useful work: not draining,
// able to produce credentials for Bedrock, enforcing budgets, and knowing
// its tenants.
func (s *server) ready(w http.ResponseWriter, r *http.Request, up upstream) {
	if s.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	if up.credentials != nil && s.cfg.BearerToken == "" {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := up.credentials.Retrieve(ctx); err != nil {
			s.log.Warn("not ready: AWS credentials unavailable", "error", err)
			http.Error(w, "AWS credentials unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	if s.budgets != nil {
		if err := s.budgets.ready(r.Context()); err != nil {
			s.log.Warn("not ready: budgets cannot be enforced", "error", err)
			http.Error(w, "budget store unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	if s.tenants != nil {
		if err := s.tenants.ready(); err != nil {
			s.log.Warn("not ready: tenants unknown", "error", err)
			http.Error(w, "tenant registry not loaded", http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = io.WriteString(w, "ready\n")
}

// run serves on ln until ctx ends, then drains: stop accepting, let
// in-flight requests and streams finish within DrainTimeout, then cancel
// what is left so every upstream call ends too.
func (s *server) run(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLSCertFile != "" {
			errc <- s.http.ServeTLS(ln, s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		} else {
			errc <- s.http.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		s.cancel()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	if s.cfg.DrainDelay > 0 {
		s.log.Info("not ready; serving on before the drain", "delay", s.cfg.DrainDelay.String())
		time.Sleep(s.cfg.DrainDelay)
	}
	s.log.Info("draining", "timeout", s.cfg.DrainTimeout.String())
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	err := s.http.Shutdown(dctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("drain timeout: cancelling in-flight requests")
		s.cancel()
		err = s.http.Close()
		// Cancelled handlers still settle (with a timeout of their own);
		// wait for them, boundedly, before the budget store is closed.
		settled := make(chan struct{})
		go func() { s.inflight.Wait(); close(settled) }()
		select {
		case <-settled:
		case <-time.After(5 * time.Second):
			s.log.Warn("handlers still running after the drain; their leases expire by TTL")
		}
	}
	s.cancel()
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	s.log.Info("stopped")
	return err
}

// adminServer serves the admin API on its own listener
// (QUOTAGATE_ADMIN_ADDR), with TLS when the gateway has it.
type adminServer struct {
	http *http.Server
	cfg  Config
	log  *slog.Logger
}

func newAdminServer(cfg Config, h http.Handler, log *slog.Logger) *adminServer {
	return &adminServer{cfg: cfg, log: log, http: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
}

// serve runs until close; its error is logged, since the gateway itself
// keeps serving without its admin API.
func (a *adminServer) serve(ln net.Listener) {
	var err error
	if a.cfg.TLSCertFile != "" {
		err = a.http.ServeTLS(ln, a.cfg.TLSCertFile, a.cfg.TLSKeyFile)
	} else {
		err = a.http.Serve(ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Error("admin API stopped", "error", err)
	}
}

// close stops the admin API at once: admin calls are short, and a
// half-done one changes nothing (every write is atomic).
func (a *adminServer) close() { _ = a.http.Close() }
