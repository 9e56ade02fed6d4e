# Sourced by the load scripts: builds the binaries into a temporary
# directory ($bin), and starts background processes (start ...) that are
# killed, with the directory removed, when the script exits.
command -v hey >/dev/null || { echo "hey is not installed: apt-get install hey" >&2; exit 1; }
bin=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$bin"
}
trap cleanup EXIT

# start runs a command in the background, its output discarded.
start() {
  "$@" >/dev/null 2>&1 &
  pids+=($!)
}

# waitHealthy waits until each port's /healthz answers.
waitHealthy() {
  for port in "$@"; do
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  done
  sleep 0.5
}

# measure NAME URL BODY: a warm-up, then N requests over C connections;
# records rps/p50/p99 under NAME and prints them.
declare -A rps p50 p99
measure() {
  local name=$1 url=$2 body=$3 out codes
  hey -n 2000 -c "$C" -m POST -T application/json -H "Authorization: Bearer $KEY" -d "$body" "$url" >/dev/null
  out=$(hey -n "$N" -c "$C" -m POST -T application/json -H "Authorization: Bearer $KEY" -d "$body" "$url")
  codes=$(echo "$out" | sed -n '/Status code distribution/,$p' | grep -E '^\s*\[' | tr -s ' ' | paste -sd' ' -)
  rps[$name]=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50[$name]=$(echo "$out" | awk '/ 50%+ in/ {print $3*1000}')
  p99[$name]=$(echo "$out" | awk '/ 99%+ in/ {print $3*1000}')
  printf '%-16s %10.0f req/s   p50 %7.3f ms   p99 %7.3f ms   status %s\n' "$name" "${rps[$name]}" "${p50[$name]}" "${p99[$name]}" "$codes"
}

# ratio NAME BASE prints NAME's figures as ratios to BASE's.
ratio() {
  awk -v n="$1" -v r="${rps[$1]}" -v rd="${rps[$2]}" -v a="${p50[$1]}" -v ad="${p50[$2]}" -v b="${p99[$1]}" -v bd="${p99[$2]}" \
    'BEGIN { printf "%-16s throughput x%.2f   p50 x%.2f (+%.3f ms)   p99 x%.2f (+%.3f ms)\n", n, r/rd, a/ad, a-ad, b/bd, b-bd }'
}
