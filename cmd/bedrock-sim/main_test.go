package main

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/quotagate/quotagate/bedrocksim"
)

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != ":8090" || cfg.Region != "us-east-1" || cfg.TPM != 0 || cfg.AccessKeyID != "" {
		t.Errorf("defaults: got %+v, want :8090, us-east-1, unlimited, default credentials", cfg)
	}
	sc := cfg.simConfig(nil)
	if sc.Credentials != nil {
		t.Errorf("credentials: got %v, want nil (the simulator's defaults)", sc.Credentials)
	}
}

func TestLoadConfig(t *testing.T) {
	cfg, err := loadConfig([]string{
		"BEDROCKSIM_ADDR=127.0.0.1:9999", "BEDROCKSIM_TPM=1000", "BEDROCKSIM_RPM=10", "BEDROCKSIM_CONCURRENCY=2",
		"BEDROCKSIM_BURNDOWN=5", "BEDROCKSIM_TTFT=250ms", "BEDROCKSIM_PER_TOKEN=10ms", "BEDROCKSIM_OUTPUT_TOKENS=50",
		"BEDROCKSIM_API_KEYS=k1,k2", "AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=s3cret", "IGNORED",
	})
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.simConfig(slog.New(slog.DiscardHandler))
	want := bedrocksim.Limits{TPM: 1000, RPM: 10, Concurrency: 2, OutputBurndown: 5}
	if sc.Default != want {
		t.Errorf("limits: got %+v, want %+v", sc.Default, want)
	}
	if sc.Latency.TimeToFirstToken != 250*time.Millisecond || sc.Latency.PerOutputToken != 10*time.Millisecond || sc.OutputTokens != 50 {
		t.Errorf("latency and output: got %+v %d", sc.Latency, sc.OutputTokens)
	}
	if len(sc.APIKeys) != 2 || sc.Credentials["AKIDTEST"] != "s3cret" || len(sc.Credentials) != 1 || cfg.Addr != "127.0.0.1:9999" {
		t.Errorf("auth and address: got %+v %v %s", sc.APIKeys, sc.Credentials, cfg.Addr)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	_, err := loadConfig([]string{"BEDROCKSIM_TPM=many", "BEDROCKSIM_RPM=-1", "AWS_ACCESS_KEY_ID=AKIDONLY", "BEDROCKSIM_TTFT=soon"})
	if err == nil {
		t.Fatal("got nil, want errors")
	}
	for _, want := range []string{"BEDROCKSIM_TPM", "BEDROCKSIM_RPM=-1", "BEDROCKSIM_TTFT", "AWS_SECRET_ACCESS_KEY"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error: got %q, want it to mention %s", err, want)
		}
	}
}

func TestServe(t *testing.T) {
	cfg, err := loadConfig([]string{"AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=s3cret", "BEDROCKSIM_OUTPUT_TOKENS=4"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, bedrocksim.New(cfg.simConfig(logger)), logger) }()

	c := bedrockruntime.New(bedrockruntime.Options{
		BaseEndpoint:     aws.String("http://" + ln.Addr().String()),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDTEST", "s3cret", ""),
		RetryMaxAttempts: 1,
		HTTPClient:       bedrocksim.BufferedBodyClient{},
	}, func(o *bedrockruntime.Options) { o.AuthSchemePreference = nil })
	out, err := c.Converse(t.Context(), &bedrockruntime.ConverseInput{
		ModelId:  aws.String("amazon.nova-micro-v1:0"),
		Messages: []types.Message{{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "hi"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToInt32(out.Usage.OutputTokens); got != 4 {
		t.Errorf("output tokens: got %d, want 4", got)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve after shutdown: got %v, want nil", err)
	}
}

func TestRunBadAddress(t *testing.T) {
	if err := run(t.Context(), config{Addr: "not an address"}); err == nil {
		t.Error("got nil, want a listen error")
	}
}
