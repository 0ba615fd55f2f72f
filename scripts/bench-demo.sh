#!/usr/bin/env bash
# bench-demo.sh: the demo's CPU and memory at steady state.
#
# Builds observatory, runs `observatory demo` (defaults: 24 workers, three
# tenants, 1 mission/s, the live workload) in a fresh data directory, lets
# it warm up for WARMUP seconds, then samples its CPU time and RSS over
# WINDOW seconds from /proc. Prints one line per run; the figures are for
# the whole process (server, fold, hub, workers and workload together).
#
#   scripts/bench-demo.sh [runs] [warmup-seconds] [window-seconds]
set -euo pipefail
runs=${1:-3}
warmup=${2:-30}
window=${3:-60}
cd "$(dirname "$0")/.."
bin=$(mktemp -d)/observatory
go build -o "$bin" ./cmd/observatory
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
for i in $(seq "$runs"); do
	dir=$(mktemp -d)
	"$bin" demo --addr 127.0.0.1:0 --nats-listen 127.0.0.1:-1 --data-dir "$dir/data" >"$dir/out" 2>/dev/null &
	pid=$!
	sleep "$warmup"
	t0=$(cpu_ticks $pid); s0=$(date +%s.%N)
	sleep "$window"
	t1=$(cpu_ticks $pid); s1=$(date +%s.%N); rss=$(rss_kib $pid)
	kill -INT $pid; wait $pid || true
	seq=$(sed -n 's/.*stopped at seq \([0-9]*\).*/\1/p' "$dir/out")
	http=$(sed -n 's/^  HTTP calls *\([0-9]*\) .*/\1/p' "$dir/out")
	awk -v t0="$t0" -v t1="$t1" -v s0="$s0" -v s1="$s1" -v hz="$hz" -v rss="$rss" -v seq="$seq" -v http="$http" -v run="$i" \
		'BEGIN { printf "run %d: CPU %.1f%% of one core, RSS %.1f MiB, %s events folded, %s HTTP calls by the workload\n", run, 100*(t1-t0)/hz/(s1-s0), rss/1024, seq, http }'
	rm -rf "$dir"
done
