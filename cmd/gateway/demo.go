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
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/quotagate/quotagate/bedrocksim"
)

// demoSimulator is the in-process Bedrock that -demo puts behind the gateway.
type demoSimulator struct {
	upstream upstream
	close    func()
}

// startSimulator serves a simulated Bedrock on a free loopback port. It is
// the only place the gateway imports the simulator, and only for -demo.
func startSimulator(ctx context.Context, log *slog.Logger) (*demoSimulator, error) {
	sim := bedrocksim.New(bedrocksim.Config{
		Logger: log.With("component", "bedrock-sim"),
		// Latencies in Bedrock's range, so that a stream visibly streams.
		Latency: bedrocksim.Latency{TimeToFirstToken: 150 * time.Millisecond, PerOutputToken: 15 * time.Millisecond},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo simulator: %w", err)
	}
	srv := &http.Server{Handler: sim}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("demo simulator stopped", "error", err)
		}
	}()
	u := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	log.Info("demo mode: simulated Bedrock", "url", u.String())
	return &demoSimulator{
		upstream: upstream{
			url:         u,
			region:      "us-east-1",
			credentials: credentials.NewStaticCredentialsProvider(bedrocksim.AccessKeyID, bedrocksim.SecretAccessKey, ""),
		},
		close: func() { _ = srv.Close() },
	}, nil
}

// printDemo tells a newcomer where the gateway is and how to call it.
func printDemo(w io.Writer, addr net.Addr, tls bool) {
	host := addr.String()
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		host = fmt.Sprintf("localhost:%d", tcp.Port)
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	base := scheme + "://" + host
	fmt.Fprintf(w, `
Quotagate demo is listening on %[1]s, in front of a simulated Bedrock (no AWS account used).

Try it:

  curl -s %[1]s/model/anthropic.claude-3-haiku-20240307-v1%%3A0/converse \
    -H 'content-type: application/json' \
    -d '{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"inferenceConfig":{"maxTokens":64}}'

or point any AWS SDK at it, e.g. the AWS CLI:

  AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo aws bedrock-runtime converse \
    --endpoint-url %[1]s --region us-east-1 \
    --model-id anthropic.claude-3-haiku-20240307-v1:0 \
    --messages '[{"role":"user","content":[{"text":"Hello"}]}]'

Overflow: Claude 3.5 Sonnet has 1,000 TPM here and a route to Llama. Repeat
this a few times and watch x-quotagate-served-model turn to Llama while the
body stays a Claude message:

  curl -si %[1]s/model/anthropic.claude-3-5-sonnet-20240620-v1%%3A0/invoke \
    -H 'content-type: application/json' \
    -d '{"anthropic_version":"bedrock-2023-05-31","max_tokens":900,"messages":[{"role":"user","content":"Hello"}]}'

Press Ctrl-C to stop.
`, base)
}
