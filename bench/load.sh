#!/usr/bin/env bash
# Load comparison, in one run on one machine: the simulator directly, a bare
# httputil.ReverseProxy in front of it, and the gateway in front of it (with
# budgets on, when redis-server is available). Prints throughput and p50/p99
# latency, and each proxy's figures as ratios to the direct ones; quote the
# ratios, not the absolute numbers (shared machines are noisy).
#
#   bench/load.sh                 # defaults: 20000 requests, 32 connections
#   N=50000 C=64 bench/load.sh
#
# Needs hey (Debian package "hey"). Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
C=${C:-32}
SIM_PORT=${SIM_PORT:-18090}
GW_PORT=${GW_PORT:-18091}
RP_PORT=${RP_PORT:-18092}
GWB_PORT=${GWB_PORT:-18093}
KEY=bench-key
. bench/procs.sh

go build -o "$bin/bedrock-sim" ./cmd/bedrock-sim
go build -o "$bin/gateway" ./cmd/gateway
go build -o "$bin/reverseproxy" ./bench/reverseproxy

start env BEDROCKSIM_ADDR=127.0.0.1:$SIM_PORT BEDROCKSIM_API_KEYS=$KEY "$bin/bedrock-sim"
start "$bin/reverseproxy" -addr 127.0.0.1:$RP_PORT -target http://127.0.0.1:$SIM_PORT
start env AWS_REGION=us-east-1 AWS_BEARER_TOKEN_BEDROCK=$KEY AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:$SIM_PORT \
  QUOTAGATE_ADDR=127.0.0.1:$GW_PORT QUOTAGATE_LOG_LEVEL=error "$bin/gateway"

targets=("direct:$SIM_PORT" "reverseproxy:$RP_PORT" "gateway:$GW_PORT")
if [ -f bench/budgets.yaml ] && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  start env AWS_REGION=us-east-1 AWS_BEARER_TOKEN_BEDROCK=$KEY AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:$SIM_PORT \
    QUOTAGATE_ADDR=127.0.0.1:$GWB_PORT QUOTAGATE_LOG_LEVEL=error QUOTAGATE_CONFIG=bench/budgets.yaml \
    QUOTAGATE_REDIS_URL=redis://127.0.0.1:6379/0 QUOTAGATE_REDIS_PREFIX="qgbench:$$:" "$bin/gateway"
  targets+=("gateway+budgets:$GWB_PORT")
fi
waitHealthy "${targets[@]##*:}"

body='{"messages":[{"role":"user","content":[{"text":"Name three colours."}]}],"inferenceConfig":{"maxTokens":40}}'
path=/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse
for t in "${targets[@]}"; do
  measure "${t%%:*}" "http://127.0.0.1:${t##*:}$path" "$body"
done
echo
echo "ratios against direct (same run; throughput: higher is better, latency: lower is better):"
for t in "${targets[@]:1}"; do
  ratio "${t%%:*}" direct
done
