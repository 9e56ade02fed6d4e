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
command -v hey >/dev/null || { echo "hey is not installed: apt-get install hey" >&2; exit 1; }

bin=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$bin"
}
trap cleanup EXIT

go build -o "$bin/bedrock-sim" ./cmd/bedrock-sim
go build -o "$bin/gateway" ./cmd/gateway
go build -o "$bin/reverseproxy" ./bench/reverseproxy

BEDROCKSIM_ADDR=127.0.0.1:$SIM_PORT BEDROCKSIM_API_KEYS=$KEY "$bin/bedrock-sim" >/dev/null 2>&1 &
pids+=($!)
"$bin/reverseproxy" -addr 127.0.0.1:$RP_PORT -target http://127.0.0.1:$SIM_PORT >/dev/null 2>&1 &
pids+=($!)
AWS_REGION=us-east-1 AWS_BEARER_TOKEN_BEDROCK=$KEY AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:$SIM_PORT \
  QUOTAGATE_ADDR=127.0.0.1:$GW_PORT QUOTAGATE_LOG_LEVEL=error "$bin/gateway" >/dev/null 2>&1 &
pids+=($!)

targets=("direct:$SIM_PORT" "reverseproxy:$RP_PORT" "gateway:$GW_PORT")
if [ -f bench/budgets.yaml ] && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  AWS_REGION=us-east-1 AWS_BEARER_TOKEN_BEDROCK=$KEY AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:$SIM_PORT \
    QUOTAGATE_ADDR=127.0.0.1:$GWB_PORT QUOTAGATE_LOG_LEVEL=error QUOTAGATE_CONFIG=bench/budgets.yaml \
    QUOTAGATE_REDIS_URL=redis://127.0.0.1:6379/0 QUOTAGATE_REDIS_PREFIX="qgbench:$$:" "$bin/gateway" >/dev/null 2>&1 &
  pids+=($!)
  targets+=("gateway+budgets:$GWB_PORT")
fi

for t in "${targets[@]}"; do
  port=${t##*:}
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
done
sleep 0.5

body='{"messages":[{"role":"user","content":[{"text":"Name three colours."}]}],"inferenceConfig":{"maxTokens":40}}'
path=/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse
declare -A rps p50 p99
for t in "${targets[@]}"; do
  name=${t%%:*}; port=${t##*:}
  # warm-up, then the measured run
  hey -n 2000 -c "$C" -m POST -T application/json -H "Authorization: Bearer $KEY" -d "$body" "http://127.0.0.1:$port$path" >/dev/null
  out=$(hey -n "$N" -c "$C" -m POST -T application/json -H "Authorization: Bearer $KEY" -d "$body" "http://127.0.0.1:$port$path")
  codes=$(echo "$out" | sed -n '/Status code distribution/,$p' | grep -E '^\s*\[' | tr -s ' ' | paste -sd' ' -)
  rps[$name]=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50[$name]=$(echo "$out" | awk '/ 50%+ in/ {print $3*1000}')
  p99[$name]=$(echo "$out" | awk '/ 99%+ in/ {print $3*1000}')
  printf '%-16s %10.0f req/s   p50 %7.3f ms   p99 %7.3f ms   status %s\n' "$name" "${rps[$name]}" "${p50[$name]}" "${p99[$name]}" "$codes"
done
echo
echo "ratios against direct (same run; throughput: higher is better, latency: lower is better):"
for t in "${targets[@]:1}"; do
  name=${t%%:*}
  awk -v n="$name" -v r="${rps[$name]}" -v rd="${rps[direct]}" -v a="${p50[$name]}" -v ad="${p50[direct]}" -v b="${p99[$name]}" -v bd="${p99[direct]}" \
    'BEGIN { printf "%-16s throughput x%.2f   p50 x%.2f (+%.3f ms)   p99 x%.2f (+%.3f ms)\n", n, r/rd, a/ad, a-ad, b/bd, b-bd }'
done
