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
command -v hey >/dev/null || { echo "hey is not installed: apt-get install hey" >&2; exit 1; }
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { echo "no redis-server on 127.0.0.1:6379" >&2; exit 1; }

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
BEDROCKSIM_ADDR=127.0.0.1:$SIM_PORT BEDROCKSIM_API_KEYS=$KEY "$bin/bedrock-sim" >/dev/null 2>&1 &
pids+=($!)
AWS_REGION=us-east-1 AWS_BEARER_TOKEN_BEDROCK=$KEY AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:$SIM_PORT \
  QUOTAGATE_ADDR=127.0.0.1:$GW_PORT QUOTAGATE_LOG_LEVEL=error QUOTAGATE_CONFIG=bench/routes.yaml \
  QUOTAGATE_REDIS_URL=redis://127.0.0.1:6379/0 QUOTAGATE_REDIS_PREFIX="qgbench:$$:" "$bin/gateway" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$GW_PORT/healthz" && break; sleep 0.1; done
sleep 0.5

body='{"anthropic_version":"bedrock-2023-05-31","max_tokens":40,"system":"Be brief.","messages":[{"role":"user","content":"Name three colours."}]}'
declare -A rps p50 p99
runs=("unrouted:anthropic.claude-3-sonnet-20240229-v1%3A0" "routed:claude-direct" "translated:anthropic.claude-3-haiku-20240307-v1%3A0")
for r in "${runs[@]}"; do
  name=${r%%:*}; model=${r#*:}
  url="http://127.0.0.1:$GW_PORT/model/$model/invoke"
  hey -n 2000 -c "$C" -m POST -T application/json -H "Authorization: Bearer $KEY" -d "$body" "$url" >/dev/null
  out=$(hey -n "$N" -c "$C" -m POST -T application/json -H "Authorization: Bearer $KEY" -d "$body" "$url")
  codes=$(echo "$out" | sed -n '/Status code distribution/,$p' | grep -E '^\s*\[' | tr -s ' ' | paste -sd' ' -)
  rps[$name]=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50[$name]=$(echo "$out" | awk '/ 50%+ in/ {print $3*1000}')
  p99[$name]=$(echo "$out" | awk '/ 99%+ in/ {print $3*1000}')
  printf '%-12s %10.0f req/s   p50 %7.3f ms   p99 %7.3f ms   status %s\n' "$name" "${rps[$name]}" "${p50[$name]}" "${p99[$name]}" "$codes"
done
echo
echo "ratios against unrouted (same run; throughput: higher is better, latency: lower is better):"
for name in routed translated; do
  awk -v n="$name" -v r="${rps[$name]}" -v rd="${rps[unrouted]}" -v a="${p50[$name]}" -v ad="${p50[unrouted]}" -v b="${p99[$name]}" -v bd="${p99[unrouted]}" \
    'BEGIN { printf "%-12s throughput x%.2f   p50 x%.2f (+%.3f ms)   p99 x%.2f (+%.3f ms)\n", n, r/rd, a/ad, a-ad, b/bd, b-bd }'
done
