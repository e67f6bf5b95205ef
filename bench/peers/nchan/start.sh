#!/usr/bin/env bash
# start.sh PORT RUNDIR: runs nginx + Nchan as the current user on 127.0.0.1:PORT, with its
# configuration, pid file, error log and temp files in RUNDIR; returns once it answers.
#
# Environment (all optional):
#   NCHAN_SHM=256m       nchan_shared_memory_size
#   NCHAN_BUFFER=1000    nchan_message_buffer_length (messages kept per channel for resume)
#   NCHAN_PING=40        nchan_eventsource_ping_interval in seconds (0: none); Herald's
#                        --heartbeat is 40s by default
#   NCHAN_REUSEPORT=0    1: `listen ... reuseport` (the kernel spreads connections evenly over
#                        the two workers instead of whichever worker accepts first)
#   NGINX=nginx          the nginx binary
#   CPUS=                e.g. 0-1: pin nginx (master and workers) with taskset
set -euo pipefail

die() { echo "nchan/start.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: start.sh PORT RUNDIR"
PORT=$1
RUNDIR=$2
[[ "$PORT" =~ ^[0-9]+$ ]] || die "PORT must be a number, not '$PORT'"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NGINX=${NGINX:-$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)}
[ -x "$NGINX" ] || die "nginx not found: run $HERE/install.sh"
command -v curl >/dev/null 2>&1 || die "curl not found"

# The module: Debian's path, or whatever Debian's modules-available snippet loads.
MODULE=${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
if [ ! -f "$MODULE" ] && [ -f /usr/share/nginx/modules-available/mod-nchan.conf ]; then
    rel=$(sed -n 's/^[[:space:]]*load_module[[:space:]]\+\([^;]*\);.*/\1/p' \
        /usr/share/nginx/modules-available/mod-nchan.conf | head -n1)
    case "$rel" in
        /*) MODULE=$rel ;;
        ?*) MODULE=/usr/lib/nginx/$rel ;;
    esac
fi
[ -f "$MODULE" ] || die "the Nchan module is not installed: run $HERE/install.sh"

mkdir -p "$RUNDIR"
RUNDIR=$(cd "$RUNDIR" && pwd)
if [ -f "$RUNDIR/nginx.pid" ] && kill -0 "$(cat "$RUNDIR/nginx.pid")" 2>/dev/null; then
    die "an nginx from $RUNDIR is already running (pid $(cat "$RUNDIR/nginx.pid")): stop.sh it first"
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "127.0.0.1:$PORT is already in use"
fi
mkdir -p "$RUNDIR/tmp"

# Descriptors: the hard limit of this user, at most 19,999 (nginx can raise its soft limit up to
# the hard one without root). Each worker may hold nearly all of them as connections.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
RLIMIT=$(( hard < 19999 ? hard : 19999 ))
WORKER_CONNECTIONS=$(( RLIMIT - 64 ))
[ "$WORKER_CONNECTIONS" -ge 1024 ] || die "the open-files hard limit ($hard) is too low for a benchmark"

USER_LINE=""
if [ "$(id -u)" -eq 0 ]; then
    # As root nginx would switch its workers to nobody; keep them as the user that runs Herald.
    USER_LINE="user $(id -un) $(id -gn);"
fi
REUSEPORT=""
[ "${NCHAN_REUSEPORT:-0}" = 1 ] && REUSEPORT=" reuseport"

sed -e "s|@USER_LINE@|$USER_LINE|" \
    -e "s|@MODULE@|$MODULE|" \
    -e "s|@RLIMIT@|$RLIMIT|" \
    -e "s|@WORKER_CONNECTIONS@|$WORKER_CONNECTIONS|" \
    -e "s|@SHM@|${NCHAN_SHM:-256m}|" \
    -e "s|@PORT@|$PORT|" \
    -e "s|@REUSEPORT@|$REUSEPORT|" \
    -e "s|@PING@|${NCHAN_PING:-40}|" \
    -e "s|@BUFFER@|${NCHAN_BUFFER:-1000}|" \
    "$HERE/nginx.conf.in" > "$RUNDIR/nginx.conf"

pin=()
[ -n "${CPUS:-}" ] && pin=(taskset -c "$CPUS")

# -e: the error log from the very start (before the configuration is read, nginx would try the
# compiled-in /var/log/nginx/error.log).
if ! "${pin[@]}" "$NGINX" -p "$RUNDIR/" -c "$RUNDIR/nginx.conf" -e "$RUNDIR/error.log" \
        >"$RUNDIR/start.log" 2>&1; then
    cat "$RUNDIR/start.log" >&2
    die "nginx did not start (see $RUNDIR/error.log)"
fi

# daemon on: the master has forked; wait until it answers on the port.
for _ in $(seq 1 100); do
    if [ -f "$RUNDIR/nginx.pid" ] &&
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
            "http://127.0.0.1:$PORT/nchan_stub_status") && [ "$code" = 200 ]; then
        echo "nchan listening on 127.0.0.1:$PORT (master pid $(cat "$RUNDIR/nginx.pid"), run dir $RUNDIR)"
        exit 0
    fi
    sleep 0.1
done
tail -n 20 "$RUNDIR/error.log" >&2 || true
"$HERE/stop.sh" "$RUNDIR" || true
die "nginx did not answer on 127.0.0.1:$PORT within 10 s"
