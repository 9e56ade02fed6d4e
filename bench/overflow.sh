#!/usr/bin/env bash
# What a route costs under load, in one run on one machine, with budgets in
# Redis: InvokeModel with a Claude body (1) without a route, (2) through a
# route whose first target (Claude) serves, and (3) through a route served
# by Llama, translated there and back. Prints throughput and p50/p99, and
# the routed runs as ratios to the first; quote the ratios.
#
#   bench/overflow.sh              # defaults: 20000 requests, 32 connections
#
# Needs hey (Debian package "hey") and redis-server on 127.0.0.1:6379.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
C=${C:-32}
SIM_PORT=${SIM_PORT:-18190}
GW_PORT=${GW_PORT:-18191}
KEY=bench-key
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { echo "no redis-server on 127.0.0.1:6379" >&2; exit 1; }
. bench/procs.sh

go build -o "$bin/bedrock-sim" ./cmd/bedrock-sim
go build -o "$bin/gateway" ./cmd/gateway
start env BEDROCKSIM_ADDR=127.0.0.1:$SIM_PORT BEDROCKSIM_API_KEYS=$KEY "$bin/bedrock-sim"
start env AWS_REGION=us-east-1 AWS_BEARER_TOKEN_BEDROCK=$KEY AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:$SIM_PORT \
  QUOTAGATE_ADDR=127.0.0.1:$GW_PORT QUOTAGATE_LOG_LEVEL=error QUOTAGATE_CONFIG=bench/routes.yaml \
  QUOTAGATE_REDIS_URL=redis://127.0.0.1:6379/0 QUOTAGATE_REDIS_PREFIX="qgbench:$$:" "$bin/gateway"
waitHealthy "$GW_PORT"

body='{"anthropic_version":"bedrock-2023-05-31","max_tokens":40,"system":"Be brief.","messages":[{"role":"user","content":"Name three colours."}]}'
measure unrouted "http://127.0.0.1:$GW_PORT/model/anthropic.claude-3-sonnet-20240229-v1%3A0/invoke" "$body"
measure routed "http://127.0.0.1:$GW_PORT/model/claude-direct/invoke" "$body"
measure translated "http://127.0.0.1:$GW_PORT/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke" "$body"
echo
echo "ratios against unrouted (same run; throughput: higher is better, latency: lower is better):"
ratio routed unrouted
ratio translated unrouted
