#!/usr/bin/env bash
# stop.sh RUNDIR: stops the nginx that start.sh started in RUNDIR and waits until the master and
# its workers are gone. Fast shutdown (TERM): open subscriber streams are cut, not drained.
set -euo pipefail

die() { echo "nchan/stop.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: stop.sh RUNDIR"
pidfile=$1/nginx.pid
[ -f "$pidfile" ] || exit 0
master=$(cat "$pidfile")
[[ "$master" =~ ^[0-9]+$ ]] || die "$pidfile does not hold a pid"
if ! kill -0 "$master" 2>/dev/null; then
    rm -f "$pidfile"
    exit 0
fi
# The workers, to wait for them too (and kill them if the master dies without them).
workers=$(pgrep -P "$master" 2>/dev/null || true)
kill -TERM "$master" 2>/dev/null || true
for _ in $(seq 1 100); do
    alive=""
    for p in $master $workers; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [ -z "$alive" ] && { rm -f "$pidfile"; exit 0; }
    sleep 0.1
done
echo "nchan/stop.sh: nginx did not stop within 10 s: killing$alive" >&2
for p in $alive; do kill -KILL "$p" 2>/dev/null || true; done
for _ in $(seq 1 50); do
    alive=""
    for p in $master $workers; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [ -z "$alive" ] && break
    sleep 0.1
done
rm -f "$pidfile"
