// Command gateway runs Quotagate: a Bedrock Runtime-compatible proxy that
// re-signs every call with the gateway's own AWS identity.
//
//	gateway                 serve, configured from the environment
//	gateway -check-config   validate the environment and exit
//	gateway -demo           serve in front of an in-process simulated Bedrock
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], environ(), os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "gateway:", err)
		}
		os.Exit(1)
	}
}

func environ() map[string]string {
	m := make(map[string]string)
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// options are the command-line flags; everything else is environment.
type options struct {
	checkConfig bool
	demo        bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.checkConfig, "check-config", false, "validate the configuration from the environment and exit")
	fs.BoolVar(&o.demo, "demo", false, "serve in front of an in-process simulated Bedrock (no AWS account needed)")
	err := fs.Parse(args)
	return o, err
}

// run is the whole program; main only gives it the process's context,
// arguments, environment and output.
func run(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) error {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(environ)
	if opts.checkConfig {
		if !opts.demo {
			if _, awsErr := loadAWS(ctx); awsErr != nil {
				err = errors.Join(err, awsErr)
			}
		}
		if err != nil {
			return fmt.Errorf("invalid configuration:\n%w", err)
		}
		fmt.Fprintln(stdout, "configuration ok:", cfg)
		return nil
	}
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	return serve(ctx, cfg, opts.demo, stdout, stderr)
}
