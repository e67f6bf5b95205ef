#!/usr/bin/env bash
# pids.sh RUNDIR: prints the pids of the nginx that start.sh started in RUNDIR, master first, then
# its workers, one per line (for `herald bench fanout --pid`).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: pids.sh RUNDIR" >&2; exit 2; }
master=$(cat "$1/nginx.pid" 2>/dev/null) || { echo "pids.sh: no $1/nginx.pid" >&2; exit 1; }
kill -0 "$master" 2>/dev/null || { echo "pids.sh: nginx $master is not running" >&2; exit 1; }
echo "$master"
pgrep -P "$master" || true
