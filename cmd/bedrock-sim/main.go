// Command bedrock-sim serves a simulated Amazon Bedrock Runtime (package
// bedrocksim) for demos and manual testing of Quotagate. Point an AWS SDK or
// the gateway at it with AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://localhost:8090.
//
// It is configured from the environment:
//
//	BEDROCKSIM_ADDR           listen address (default :8090)
//	BEDROCKSIM_REGION         signing region accepted (default us-east-1)
//	BEDROCKSIM_TPM            tokens per minute per model (0: unlimited)
//	BEDROCKSIM_RPM            requests per minute per model (0: unlimited)
//	BEDROCKSIM_CONCURRENCY    requests in progress per model (0: unlimited)
//	BEDROCKSIM_BURNDOWN       quota tokens per output token (default 1)
//	BEDROCKSIM_TTFT           time to first token, e.g. 300ms
//	BEDROCKSIM_PER_TOKEN      time per output token, e.g. 20ms
//	BEDROCKSIM_OUTPUT_TOKENS  tokens per response (default 24)
//	BEDROCKSIM_API_KEYS       accepted Bedrock API keys, comma-separated
//	AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
//	                          the SigV4 credentials accepted (default: the
//	                          simulator's documented example key pair)
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/quotagate/quotagate/bedrocksim"
)

func main() {
	cfg, err := loadConfig(os.Environ())
	if err != nil {
		fmt.Fprintln(os.Stderr, "bedrock-sim:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bedrock-sim:", err)
		os.Exit(1)
	}
}

// config is the simulator's environment.
type config struct {
	Addr            string        `env:"BEDROCKSIM_ADDR" envDefault:":8090"`
	Region          string        `env:"BEDROCKSIM_REGION" envDefault:"us-east-1"`
	TPM             int           `env:"BEDROCKSIM_TPM"`
	RPM             int           `env:"BEDROCKSIM_RPM"`
	Concurrency     int           `env:"BEDROCKSIM_CONCURRENCY"`
	Burndown        int           `env:"BEDROCKSIM_BURNDOWN"`
	TTFT            time.Duration `env:"BEDROCKSIM_TTFT"`
	PerToken        time.Duration `env:"BEDROCKSIM_PER_TOKEN"`
	OutputTokens    int           `env:"BEDROCKSIM_OUTPUT_TOKENS"`
	APIKeys         []string      `env:"BEDROCKSIM_API_KEYS"`
	AccessKeyID     string        `env:"AWS_ACCESS_KEY_ID"`
	SecretAccessKey string        `env:"AWS_SECRET_ACCESS_KEY"`
}

// loadConfig parses and validates the environment (KEY=value pairs),
// reporting every problem at once.
func loadConfig(environ []string) (config, error) {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			vars[k] = v
		}
	}
	cfg, err := env.ParseAsWithOptions[config](env.Options{Environment: vars})
	var errs []error
	var agg env.AggregateError
	if errors.As(err, &agg) {
		for _, e := range agg.Errors {
			errs = append(errs, nameVariable(e, vars))
		}
	} else if err != nil {
		errs = append(errs, err)
	}
	for name, v := range map[string]int{
		"BEDROCKSIM_TPM": cfg.TPM, "BEDROCKSIM_RPM": cfg.RPM, "BEDROCKSIM_CONCURRENCY": cfg.Concurrency,
		"BEDROCKSIM_BURNDOWN": cfg.Burndown, "BEDROCKSIM_OUTPUT_TOKENS": cfg.OutputTokens,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s=%d: must not be negative", name, v))
		}
	}
	if cfg.TTFT < 0 || cfg.PerToken < 0 {
		errs = append(errs, errors.New("BEDROCKSIM_TTFT and BEDROCKSIM_PER_TOKEN must not be negative"))
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		errs = append(errs, errors.New("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together"))
	}
	return cfg, errors.Join(errs...)
}

// nameVariable rewords a parse error, which names a struct field, with the
// environment variable and value at fault.
func nameVariable(err error, vars map[string]string) error {
	var pe env.ParseError
	if !errors.As(err, &pe) {
		return err
	}
	if f, ok := reflect.TypeFor[config]().FieldByName(pe.Name); ok {
		name := f.Tag.Get("env")
		return fmt.Errorf("%s=%q: %w", name, vars[name], pe.Err)
	}
	return err
}

// simConfig turns the environment into the simulator's configuration.
func (c config) simConfig(logger *slog.Logger) bedrocksim.Config {
	sc := bedrocksim.Config{
		Region:       c.Region,
		APIKeys:      c.APIKeys,
		Default:      bedrocksim.Limits{TPM: c.TPM, RPM: c.RPM, Concurrency: c.Concurrency, OutputBurndown: c.Burndown},
		Latency:      bedrocksim.Latency{TimeToFirstToken: c.TTFT, PerOutputToken: c.PerToken},
		OutputTokens: c.OutputTokens,
		Logger:       logger,
	}
	if c.AccessKeyID != "" {
		sc.Credentials = map[string]string{c.AccessKeyID: c.SecretAccessKey}
	}
	return sc
}

// run serves the simulator until ctx is done, then drains it.
func run(ctx context.Context, cfg config) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	accessKey := cfg.AccessKeyID
	if accessKey == "" {
		accessKey = bedrocksim.AccessKeyID
	}
	logger.Info("bedrock simulator listening",
		slog.String("addr", ln.Addr().String()),
		slog.String("region", cfg.Region),
		slog.String("access_key_id", accessKey),
		slog.Int("api_keys", len(cfg.APIKeys)),
		slog.Int("tpm", cfg.TPM), slog.Int("rpm", cfg.RPM), slog.Int("concurrency", cfg.Concurrency),
	)
	return serve(ctx, ln, bedrocksim.New(cfg.simConfig(logger)), logger)
}

// shutdownGrace is how long in-flight requests (streams, mostly) get to
// finish after a signal.
const shutdownGrace = 10 * time.Second

// serve serves h on ln until ctx is done, then shuts down gracefully.
func serve(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
