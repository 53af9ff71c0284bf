#!/usr/bin/env bash
# Tracing overhead on the REST API: wrk against GET /api/phase4/dashboard/summary on three
# Pulse instances started side by side (tracing off, default sampling, every request
# traced), taking turns for `rounds` rounds so that drift hits all three alike. Prints a
# markdown table of medians. Needs wrk (apt-get install wrk).
#
#   scripts/bench-tracing.sh [duration_s] [connections] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
duration=${1:-10}
conns=${2:-64}
rounds=${3:-3}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

cargo build --release --quiet --bin pulse
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A port
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
start() { # name, then environment assignments
  local name=$1; shift
  port[$name]=$(free_port)
  env PULSE_LISTEN=127.0.0.1:${port[$name]} PULSE_LOG=warn "$@" "$target"/release/pulse serve 2>/tmp/pulse-bench-$name.log &
  pids+=($!)
}
start off PULSE_TRACING_ENABLED=false
start default
start every PULSE_TRACING_MAX_TRACES_PER_SECOND=0
for name in off default every; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:${port[$name]}/api/phase4/status" >/dev/null && break; sleep 0.1; done
done

# One wrk run: "req/s p99_ms errors".
run() {
  local out
  out=$(wrk -t2 -c"$conns" -d"${duration}s" --latency "http://127.0.0.1:$1/api/phase4/dashboard/summary")
  awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /^Requests\/sec/ {rps=$2}
    $1=="99%" {p99=ms($2)}
    /Non-2xx|Socket errors/ {err=err $0 "; "}
    END {printf "%s %.3f %s\n", rps, p99, (err=="" ? "0" : err)}' <<<"$out"
}

declare -A rps p99 errs
for r in $(seq "$rounds"); do
  for name in off default every; do
    read -r a b c <<<"$(run "${port[$name]}")"
    rps[$name]+="$a "; p99[$name]+="$b "
    [ "$c" = 0 ] || errs[$name]+="$c"
    echo "round $r $name: $a req/s, p99 $b ms, errors $c" >&2
  done
done
# Median (and range) of the per-round ratios to the tracing-off run of the same round.
ratios() { # values, baseline values
  python3 - "$1" "$2" <<'PY'
import sys, statistics
a = [float(x) for x in sys.argv[1].split()]; b = [float(x) for x in sys.argv[2].split()]
r = sorted(x / y for x, y in zip(a, b))
print(f"{statistics.median(r):.3f} ({r[0]:.3f}-{r[-1]:.3f})")
PY
}
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
traces=$(curl -s "http://127.0.0.1:${port[default]}/api/phase4/traces?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')

echo
echo "Tracing overhead, GET /api/phase4/dashboard/summary, wrk -t2 -c$conns -d${duration}s, median of $rounds interleaved rounds, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "Ratios: median of the per-round ratios to the tracing-off run of the same round (min-max)."
echo
echo "| tracing | req/s | ratio | p99 | ratio | errors |"
echo "|---|---:|---:|---:|---:|---|"
for name in off default every; do
  label=$name
  [ "$name" = off ] && label="off (baseline)"
  [ "$name" = default ] && label="default: ratio 1.0, at most 100 new traces/s"
  [ "$name" = every ] && label="every request traced"
  echo "| $label | $(median "${rps[$name]}") | $(ratios "${rps[$name]}" "${rps[off]}") | $(median "${p99[$name]}") ms | $(ratios "${p99[$name]}" "${p99[off]}") | ${errs[$name]:-0} |"
done
echo
echo "Traces held by the default instance at the end: $traces"
