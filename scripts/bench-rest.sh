#!/usr/bin/env bash
# REST load: wrk against Pulse's dashboard summary and status, beside a bare axum handler
# in the same run. Prints a markdown table. Needs wrk (apt-get install wrk).
#
#   scripts/bench-rest.sh [duration_s] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
duration=${1:-10}
conns=${2:-64}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

cargo build --release --quiet --bin pulse --example bare_axum
pulse_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bare_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

PULSE_LISTEN=127.0.0.1:$pulse_port PULSE_LOG=warn "$target"/release/pulse serve 2>/tmp/pulse-bench.log &
pulse_pid=$!
"$target"/release/examples/bare_axum 127.0.0.1:$bare_port 2>/dev/null &
bare_pid=$!
trap 'kill $pulse_pid $bare_pid 2>/dev/null || true' EXIT
for url in "http://127.0.0.1:$pulse_port/api/phase4/status" "http://127.0.0.1:$bare_port/bare"; do
  for _ in $(seq 100); do curl -sf "$url" >/dev/null && break; sleep 0.1; done
done

# wrk prints latency percentiles with --latency; we take req/s, p50, p99 and errors.
run() { # name url
  local out rps p50 p99 errors
  out=$(wrk -t2 -c"$conns" -d"${duration}s" --latency "$2")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {e=e $0 "; "} END {print (e=="" ? "0" : e)}' <<<"$out")
  echo "$1|$rps|$p50|$p99|$errors"
}

bare=$(run "bare axum handler (baseline)" "http://127.0.0.1:$bare_port/bare")
summary=$(run "GET /api/phase4/dashboard/summary" "http://127.0.0.1:$pulse_port/api/phase4/dashboard/summary")
status=$(run "GET /api/phase4/status" "http://127.0.0.1:$pulse_port/api/phase4/status")
bare_rps=$(cut -d'|' -f2 <<<"$bare")

echo
echo "REST load, wrk -t2 -c$conns -d${duration}s, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| endpoint | req/s | p50 | p99 | errors | ratio to bare handler |"
echo "|---|---:|---:|---:|---|---:|"
for row in "$bare" "$summary" "$status"; do
  IFS='|' read -r name rps p50 p99 errors <<<"$row"
  ratio=$(python3 -c "print(f'{$rps/$bare_rps:.2f}')")
  echo "| $name | $rps | $p50 | $p99 | $errors | $ratio |"
done
