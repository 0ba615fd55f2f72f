#!/usr/bin/env bash
# heavy-tools.sh: build the heavy tools (`make heavy-tools`: helm, the
# collector builder, the Collector, Jaeger) in the background while the
# rest of `make test` runs, and wait for them where they are needed.
#
#   scripts/heavy-tools.sh start CACHE   start the build in the background
#   scripts/heavy-tools.sh wait CACHE    wait for it (build now if none was
#                                        started) and fail loudly if it failed
#
# The build's output goes to CACHE/heavy-tools.log, its exit status to
# CACHE/heavy-tools.rc. Each tool's own script skips a build whose cached
# binary is already at its pin, so a warm cache costs seconds.
set -euo pipefail
cmd=$1 cache=$2
make=${MAKE:-make}
log="$cache/heavy-tools.log" rc="$cache/heavy-tools.rc" pidfile="$cache/heavy-tools.pid"
mkdir -p "$cache"
case $cmd in
start)
	rm -f "$rc" "$pidfile"
	( set +e; "$make" --no-print-directory heavy-tools >"$log" 2>&1; echo $? >"$rc.tmp"; mv "$rc.tmp" "$rc" ) </dev/null &
	echo $! >"$pidfile"
	echo "building helm, the Collector and Jaeger in the background (log: $log)"
	;;
wait)
	if [ ! -f "$pidfile" ] && [ ! -f "$rc" ]; then
		"$0" start "$cache"
	fi
	pid=$(cat "$pidfile" 2>/dev/null || echo 0)
	while [ ! -f "$rc" ]; do
		if ! kill -0 "$pid" 2>/dev/null && [ ! -f "$rc" ]; then
			echo "the heavy tools' build (pid $pid) ended without a status: see $log; run: make heavy-tools" >&2
			exit 1
		fi
		sleep 2 # waiting on another process's file: nothing to block on
	done
	rm -f "$pidfile"
	if [ "$(cat "$rc")" != 0 ]; then
		cat "$log" >&2
		echo "building the heavy tools failed: run make heavy-tools" >&2
		exit 1
	fi
	;;
*)
	echo "usage: $0 start|wait CACHE" >&2
	exit 2
	;;
esac
