#!/usr/bin/env bash
# Fan-out benchmark of /ws (docs/performance.md): the server pinned to core 0
# with GOMAXPROCS=1, the load generator (tools/fanoutbench) pinned to core 1.
# Usage: scripts/bench-fanout.sh [subscriber counts...]
#        (default 1000 3000 5000 10000 20000, the sizes of issue 15's table)
# Env: RATE (events/s, 1000), DURATION (20s), SCOPE (projects or "*"), PROJECTS (10),
#      PROTOCOL (observatory.v2, or observatory.v1 for the whole-entity diffs),
#      DEFLATE (true: subscribers offer permessage-deflate as browsers do; false),
#      SETTLE (3s: how long the subscribers sit idle before the idle RSS is read),
#      SERVER_BIN (an observatory binary to measure instead of this tree's build,
#      e.g. an older commit's, for before/after in one sitting),
#      SERVER_FLAGS (more flags for observatory serve, e.g. "--tick 50ms"),
#      SERVER_ENV (environment for the server only, e.g. "GOGC=200"),
#      LOADGEN_FLAGS (more flags for fanoutbench, e.g. "--probe-process=false"),
#      LOADGEN_BIN (a fanoutbench binary to use instead of this tree's build)
# Each size prints fanoutbench's JSON result, then a one-line summary with
# the server's CPU and the load generator's own CPU (loadgen_cpu_cores): a
# generator near 1.0 core saturated first, and the latency then includes
# client-side delay.
# Every subscriber is a socket in both processes: a size whose subscribers
# do not fit the open-file limit (ulimit -n, raised to 65536 where allowed)
# is skipped with a message, and the script then exits non-zero.
# The server's NATS takes no anonymous client: fanoutbench logs in as admin,
# enrolls as a worker of its projects and publishes with the credentials it
# gets. Its subscribers share the admin token, so the server's /ws caps are
# raised to the subscriber count.
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000 3000 5000 10000 20000)
out=$(mktemp -d)
pid=
# The server is stopped however the script ends (a failed run included).
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT
if [ -n "${SERVER_BIN:-}" ]; then
  cp "$SERVER_BIN" "$out/observatory"
else
  go build -o "$out/observatory" ./cmd/observatory
fi
if [ -n "${LOADGEN_BIN:-}" ]; then
  cp "$LOADGEN_BIN" "$out/fanoutbench"
else
  go build -o "$out/fanoutbench" ./tools/fanoutbench
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
skipped=0
for n in "${counts[@]}"; do
  # The subscribers, plus the server's own files and NATS connections.
  if [ "$nofile" != unlimited ] && [ $((n + 200)) -gt "$nofile" ]; then
    echo "bench-fanout: $n subscribers need $((n + 200)) open files per process; the limit here is $nofile (hard limit $(ulimit -Hn)): skipped" >&2
    skipped=1
    continue
  fi
  data="$out/data-$n"
  # A server left on the port would answer for the one started here.
  if curl -fs http://127.0.0.1:3901/readyz >/dev/null 2>&1; then
    echo "bench-fanout: something already serves 127.0.0.1:3901; stop it first" >&2
    exit 1
  fi
  env ${SERVER_ENV:-} GOMAXPROCS=1 taskset -c 0 "$out/observatory" serve --addr 127.0.0.1:3901 --nats-listen 127.0.0.1:4901 \
    --ws-max-conns $((n + 100)) --ws-max-conns-per-credential $((n + 100)) \
    --data-dir "$data" --log-level warn ${SERVER_FLAGS:-} >"$out/serve-$n.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -fs http://127.0.0.1:3901/readyz >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs http://127.0.0.1:3901/readyz >/dev/null && kill -0 "$pid" 2>/dev/null || { cat "$out/serve-$n.log" >&2; exit 1; }
  GOMAXPROCS=1 taskset -c 1 "$out/fanoutbench" --url http://127.0.0.1:3901 \
    --pid "$pid" --subs "$n" --rate "${RATE:-1000}" --duration "${DURATION:-20s}" \
    --scope "${SCOPE:-projects}" --projects "${PROJECTS:-10}" --protocol "${PROTOCOL:-observatory.v2}" \
    --deflate="${DEFLATE:-true}" --settle "${SETTLE:-3s}" ${LOADGEN_FLAGS:-}
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=
done
exit "$skipped"
