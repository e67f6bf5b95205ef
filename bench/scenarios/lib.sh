# Shared by run.sh and cluster.sh (sourced, not run): prerequisites, free ports, starting and
# stopping hubs, running `herald bench fanout`, sampling memory, writing the Markdown tables, and
# cleaning up on exit.
# shellcheck shell=bash

SCEN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCEN_DIR/../.." && pwd)
NCHAN_DIR=$ROOT/bench/peers/nchan

# --- settings (environment) -----------------------------------------------------------------
HERALD=${HERALD:-target/release/herald}
HUB_CPUS=${HUB_CPUS:-0-1}        # taskset -c for every hub process (Herald, nginx, redis)
BENCH_CPUS=${BENCH_CPUS:-}       # taskset -c for the load generator (empty: not pinned)
OUT=${OUT:-$SCEN_DIR/out}        # where the Markdown tables and raw JSON go
SIZE=${SIZE:-100}                # bytes of each update's data
CONNECT_RATE=${CONNECT_RATE:-10000}   # new subscriber connections per second
HEARTBEAT=${HEARTBEAT:-40}       # seconds: Herald --heartbeat and Nchan's ping interval
BENCH_PROCESSES=${BENCH_PROCESSES:-}  # --processes; default: one per 9,000 subscribers, at least 2 from 1,000 on
SOURCE_ADDRS=${SOURCE_ADDRS:-}   # --source-addrs; default: 4 from 5,000 subscribers on, else 1
KEEP_TMP=${KEEP_TMP:-0}          # 1: keep the temporary directory (hub logs, data dirs)
EXTRA_BENCH_ARGS=${EXTRA_BENCH_ARGS:-}  # appended to every `herald bench fanout` (word-split)

# --- the report's fields --------------------------------------------------------------------
# The fields of `herald bench fanout --json` the tables use, as one jq object. If the report's
# names change, change them here only. A field that is absent shows as "–".
REPORT_FIELDS='{
  connected:       .subscribers_connected,
  failed:          .subscribers_failed,
  connect_ms:      .connect_ms,
  published:       .updates_published,
  delivered:       .delivered,
  expected:        .expected,
  missing:         .missing,
  duplicates:      .duplicates,
  delivered_per_s: .delivered_per_s,
  p50_us:          .latency_us.p50,
  p99_us:          .latency_us.p99,
  p999_us:         .latency_us.p999,
  max_us:          .latency_us.max,
  cpu_cores:       ([.hub_processes[]?.cores] | if length == 0 then null else add end),
  rss_kib:         ([.hub_processes[]?.rss_kib] | if length == 0 then null else add end),
  rss_per_sub_kib: (if (.hub_processes | length) == 0 or .subscribers_connected == 0 then null
                    else ([.hub_processes[] | .rss_connected_kib - .rss_before_kib] | add)
                         / .subscribers_connected end)
}'

TABLE_HEAD='| run | server | connected | failed | connect ms | published | delivered | expected | missing | dup | delivered/s | p50 ms | p99 ms | p99.9 ms | max ms | CPU cores | RSS MiB | KiB/sub | PSS peak MiB | notes |
|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|'

# One table row from a flattened report (REPORT_FIELDS plus pss_peak_kib), with $run, $server
# and $notes.
ROW_JQ='
def dash: "–";
def int: if . == null then dash else (round | tostring) end;
def ms: if . == null then dash else ((. / 10 | round) / 100 | tostring) end;
def mib: if . == null then dash else ((. / 102.4 | round) / 10 | tostring) end;
def d2: if . == null then dash else ((. * 100 | round) / 100 | tostring) end;
"| \($run) | \($server) | \(.connected|int) | \(.failed|int) | \(.connect_ms|int) | \(.published|int) | \(.delivered|int) | \(.expected|int) | \(.missing|int) | \(.duplicates|int) | \(.delivered_per_s|int) | \(.p50_us|ms) | \(.p99_us|ms) | \(.p999_us|ms) | \(.max_us|ms) | \(.cpu_cores|d2) | \(.rss_kib|mib) | \(.rss_per_sub_kib|d2) | \(.pss_peak_kib|mib) | \($notes) |"'

# The ratio row: $a / $b for the columns where a ratio means something.
RATIO_JQ='
def dash: "–";
def r(f): if ($a|f) == null or ($b|f) == null or ($b|f) == 0 then dash
          else ((($a|f) / ($b|f) * 100 | round) / 100 | tostring) + "×" end;
"| \($run) | **\($name)** | \(r(.connected)) | | \(r(.connect_ms)) | | \(r(.delivered)) | | | | \(r(.delivered_per_s)) | \(r(.p50_us)) | \(r(.p99_us)) | \(r(.p999_us)) | \(r(.max_us)) | \(r(.cpu_cores)) | \(r(.rss_kib)) | \(r(.rss_per_sub_kib)) | \(r(.pss_peak_kib)) | |"'

# --- helpers --------------------------------------------------------------------------------
die() { echo "${0##*/}: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# Resolves $HERALD (relative to the current directory, else to the repository) and checks that
# it has `bench fanout`.
check_herald() {
    if [[ "$HERALD" != /* ]]; then
        if [ -x "$HERALD" ]; then HERALD=$(pwd)/$HERALD
        elif [ -x "$ROOT/$HERALD" ]; then HERALD=$ROOT/$HERALD
        fi
    fi
    [ -x "$HERALD" ] || die "no Herald binary at '$HERALD': build it (cargo build --release -p herald) or set HERALD=path"
    "$HERALD" bench fanout --help >/dev/null 2>&1 \
        || die "$HERALD has no 'bench fanout' (the load generator): build a version that has it"
}

check_tools() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || die "'$t' is missing (Debian: apt-get install $(pkg_of "$t"))"
    done
}
pkg_of() { case $1 in taskset | setsid) echo util-linux ;; timeout) echo coreutils ;; redis-server | redis-cli) echo redis-server ;; *) echo "$1" ;; esac; }

# apt_install PKG...: installs Debian packages as root or through password-less sudo.
apt_install() {
    local run=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null \
            || die "$* missing, and installing needs root or password-less sudo"
        run=(sudo -n)
    fi
    command -v apt-get >/dev/null 2>&1 || die "$* missing and apt-get not found: install by hand"
    log "installing $*"
    apt-cache show "$1" >/dev/null 2>&1 || "${run[@]}" apt-get update -qq >/dev/null
    "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        >/dev/null || die "apt-get install $* failed"
}

# Nchan: installed through the peer's script when its module is missing.
ensure_nchan() {
    if [ ! -f /usr/lib/nginx/modules/ngx_nchan_module.so ] ||
        { ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; }; then
        log "installing nginx + Nchan"
        "$NCHAN_DIR/install.sh" >&2 || die "could not install Nchan ($NCHAN_DIR/install.sh)"
    fi
}

versions() {
    local hv nv cv
    hv=$("$HERALD" --version 2>/dev/null | head -n1 || true)
    nv=$( (nginx -v 2>&1 || /usr/sbin/nginx -v 2>&1) | sed 's|.*nginx/||' | head -n1 || true)
    cv=$(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')
    echo "${hv:-herald ?}; nginx ${nv:-?} + Nchan $cv"
}

# A free TCP port on 127.0.0.1 below the ephemeral range (so the load generator's own
# connections can never have taken it).
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            if command -v python3 >/dev/null 2>&1; then
                python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.close()' "$p" 2>/dev/null || continue
            fi
            echo "$p"
            return 0
        fi
    done
    die "found no free port on 127.0.0.1"
}

# Waits until URL answers 200 (at most $2 seconds) while pid $3 (if given) lives.
wait_http() {
    local url=$1 limit=${2:-20} pid=${3:-}
    for _ in $(seq 1 $(( limit * 10 ))); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)" = 200 ] && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
    return 1
}

# --- process bookkeeping and cleanup --------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/herald-scenarios.XXXXXX")
declare -a TRACKED_PIDS=()    # Herald hubs, redis, samplers: TERM, then KILL
declare -a TRACKED_GROUPS=()  # load generators (process groups made by `timeout`)
declare -a TRACKED_NCHANS=()  # nginx run directories

track() { TRACKED_PIDS+=("$1"); }
untrack() { local p keep=(); for p in "${TRACKED_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; TRACKED_PIDS=("${keep[@]}"); }
untrack_group() { local p keep=(); for p in "${TRACKED_GROUPS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; TRACKED_GROUPS=("${keep[@]}"); }
untrack_nchan() { local p keep=(); for p in "${TRACKED_NCHANS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; TRACKED_NCHANS=("${keep[@]}"); }

# Stops pid: TERM, up to $2 seconds (default 15), then KILL.
stop_pid() {
    local pid=$1 limit=${2:-15}
    kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    for _ in $(seq 1 $(( limit * 10 ))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? g p d
    trap - EXIT INT TERM
    for g in "${TRACKED_GROUPS[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
    for p in "${TRACKED_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for d in "${TRACKED_NCHANS[@]}"; do "$NCHAN_DIR/stop.sh" "$d" >/dev/null 2>&1 || true; done
    for p in "${TRACKED_PIDS[@]}"; do stop_pid "$p" 10; done
    for g in "${TRACKED_GROUPS[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; wait "$g" 2>/dev/null || true; done
    rmdir "$TMP" 2>/dev/null || true
    if [ ! -d "$TMP" ]; then
        :
    elif [ "$KEEP_TMP" = 1 ] || [ "$rc" -ne 0 ]; then
        echo "${0##*/}: temporary files kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- hubs -----------------------------------------------------------------------------------
JWT_KEY=${JWT_KEY:-bench-$RANDOM$RANDOM$RANDOM$RANDOM}

# start_herald PORT DATADIR STORE [more serve flags...]: sets HUB_PID.
start_herald() {
    local port=$1 dir=$2 store=$3
    shift 3
    mkdir -p "$dir"
    taskset -c "$HUB_CPUS" "$HERALD" serve --listen "127.0.0.1:$port" --data-dir "$dir" \
        --store "$store" --jwt-key "$JWT_KEY" \
        --max-subscribers 0 --max-subscribers-per-ip 0 \
        --heartbeat "${HEARTBEAT}s" --write-timeout 0s --shutdown-grace 2s --log warn \
        "$@" </dev/null >>"$dir/herald.log" 2>&1 &
    HUB_PID=$!
    track "$HUB_PID"
    if ! wait_http "http://127.0.0.1:$port/healthz" 30 "$HUB_PID"; then
        tail -n 20 "$dir/herald.log" >&2 || true
        die "Herald did not start on 127.0.0.1:$port (log: $dir/herald.log)"
    fi
}

stop_herald() { stop_pid "$1" 15; untrack "$1"; }

herald_token() {
    "$HERALD" token --key "$JWT_KEY" --publish '*' --ttl 2days \
        || die "could not mint a publisher token with '$HERALD token'"
}

# start_nchan PORT RUNDIR: sets HUB_PIDS (master and workers).
start_nchan() {
    local port=$1 dir=$2
    TRACKED_NCHANS+=("$dir")
    CPUS=$HUB_CPUS NCHAN_PING=$HEARTBEAT "$NCHAN_DIR/start.sh" "$port" "$dir" >&2 \
        || die "Nchan did not start on 127.0.0.1:$port"
    mapfile -t HUB_PIDS < <("$NCHAN_DIR/pids.sh" "$dir")
}

stop_nchan() { "$NCHAN_DIR/stop.sh" "$1" >&2 || true; untrack_nchan "$1"; }

# Subscribers connected now, as the hub counts them (-1 when the hub does not answer).
herald_subscribers() {
    local body
    body=$(curl -s --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null || true)
    awk '$1 == "mercure_subscribers_connected" { printf "%d\n", $2; found = 1 } END { if (!found) print -1 }' <<<"$body"
}
nchan_subscribers() {
    local body
    body=$(curl -s --max-time 2 "http://127.0.0.1:$1/nchan_stub_status" 2>/dev/null || true)
    awk -F': *' '$1 == "subscribers" { print $2 + 0; found = 1 } END { if (!found) print -1 }' <<<"$body"
}

# --- memory ---------------------------------------------------------------------------------
# Current RSS and PSS in KiB, summed over the pids ("rss pss").
mem_now() {
    local p r s tr=0 ts=0
    for p in "$@"; do
        read -r r s < <(awk '/^Rss:/ { r = $2 } /^Pss:/ { s = $2 } END { print r + 0, s + 0 }' \
            "/proc/$p/smaps_rollup" 2>/dev/null || echo "0 0")
        tr=$(( tr + r )); ts=$(( ts + s ))
    done
    echo "$tr $ts"
}

# sample_mem FILE PID...: in the background, keeps the peak "rss pss" (KiB, summed over the
# pids) in FILE, once a second. Sets SAMPLER_PID.
sample_mem() {
    local file=$1
    shift
    (
        peak_r=0 peak_s=0
        while :; do
            read -r r s < <(mem_now "$@")
            (( r > peak_r )) && peak_r=$r
            (( s > peak_s )) && peak_s=$s
            echo "$peak_r $peak_s" >"$file.tmp" && mv "$file.tmp" "$file"
            sleep 1
        done
    ) </dev/null >/dev/null 2>&1 &
    SAMPLER_PID=$!
    track "$SAMPLER_PID"
}
stop_sampler() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; untrack "$1"; }
peak_pss() { awk '{ print $2 }' "$1" 2>/dev/null | grep . || echo null; }

# --- the load generator ---------------------------------------------------------------------
# The value following FLAG in the remaining arguments (empty if absent).
arg_of() {
    local flag=$1
    shift
    while [ $# -gt 0 ]; do
        [ "$1" = "$flag" ] && { echo "${2:-}"; return 0; }
        shift
    done
}

# Arguments every run gets: payload size, connect rate, processes and source addresses sized
# for N subscribers.
common_args() {
    local n=$1 p a
    # At least two worker processes from 1,000 subscribers on: one worker decodes on one core,
    # and at millions of events per second a single one is slower than the hub it measures.
    p=${BENCH_PROCESSES:-$(( (n + 8999) / 9000 ))}
    (( n >= 1000 && p < 2 )) && p=2
    (( p < 1 )) && p=1
    a=${SOURCE_ADDRS:-$(( n >= 5000 ? 4 : 1 ))}
    printf '%s\n' --size "$SIZE" --connect-rate "$CONNECT_RATE" --processes "$p" --source-addrs "$a"
}

# How long a run may take before it is cut: connecting, the run, drain and hold, plus a margin.
run_limit() {
    local n d dr h
    n=$(arg_of --subscribers "$@"); d=$(arg_of --duration "$@"); dr=$(arg_of --drain "$@"); h=$(arg_of --hold "$@")
    echo $(( ${n:-0} / CONNECT_RATE + ${d:-0} + ${dr:-0} + ${h:-0} + 180 ))
}

# start_bench JSON LOG ARGS...: starts `herald bench fanout ARGS --json` in the background in a
# process group of its own (made by timeout); sets BENCH_PID.
start_bench() {
    local json=$1 blog=$2 limit pin=()
    shift 2
    limit=$(run_limit "$@")
    [ -n "$BENCH_CPUS" ] && pin=(taskset -c "$BENCH_CPUS")
    # shellcheck disable=SC2086
    echo "+ herald bench fanout $* $EXTRA_BENCH_ARGS --json" >"$blog"
    # shellcheck disable=SC2086
    timeout -k 10 "$limit" "${pin[@]}" "$HERALD" bench fanout "$@" $EXTRA_BENCH_ARGS --json \
        </dev/null >"$json" 2>>"$blog" &
    BENCH_PID=$!
    TRACKED_GROUPS+=("$BENCH_PID")
}

# wait_bench: waits for BENCH_PID; sets BENCH_RC.
wait_bench() {
    BENCH_RC=0
    wait "$BENCH_PID" || BENCH_RC=$?
    untrack_group "$BENCH_PID"
}

# flatten JSON PSS_PEAK_KIB: the report's fields as one compact JSON line ("{}" if unreadable).
flatten() {
    local json=$1 pss=${2:-null}
    [[ "$pss" =~ ^[0-9]+$ ]] || pss=null
    jq -c "$REPORT_FIELDS + {pss_peak_kib: $pss}" "$json" 2>/dev/null | head -n1 | grep . \
        || echo "{\"pss_peak_kib\": $pss}"
}

# --- tables ---------------------------------------------------------------------------------
# results_file SCENARIO: the Markdown file of today's SCENARIO.
results_file() { echo "$OUT/$(date +%Y-%m-%d)-$1.md"; }

# table_start SCENARIO DESCRIPTION: appends a titled block and the table head to the file.
table_start() {
    local file
    file=$(results_file "$1")
    mkdir -p "$OUT/raw"
    {
        [ -s "$file" ] || printf '# Scenario `%s`, %s\n\n' "$1" "$(date +%Y-%m-%d)"
        printf '## Run of %s\n\n' "$(date '+%Y-%m-%d %H:%M:%S')"
        printf '%s\n\n' "$2"
        printf 'Machine: %s cores, Linux %s; hub pinned with `taskset -c %s`; %s; commit %s.\n' \
            "$(nproc)" "$(uname -r)" "$HUB_CPUS" "$(versions)" \
            "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
        printf 'Latencies in ms; RSS and CPU as `herald bench fanout` reports them for the hub'"'"'s pids; PSS peak: sampled once a second from /proc/PID/smaps_rollup, summed over the hub'"'"'s processes (nginx: master and 2 workers, whose shared memory RSS would count twice).\n\n'
        printf '%s\n' "$TABLE_HEAD"
    } >>"$file"
}

# table_row SCENARIO LABEL SERVER FLAT NOTES
table_row() {
    jq -r --arg run "$2" --arg server "$3" --arg notes "$5" "$ROW_JQ" <<<"$4" >>"$(results_file "$1")"
}

# table_ratio SCENARIO LABEL NAME FLAT_A FLAT_B
table_ratio() {
    jq -nr --arg run "$2" --arg name "$3" --argjson a "$4" --argjson b "$5" "$RATIO_JQ" \
        >>"$(results_file "$1")"
}

table_end() { echo >>"$(results_file "$1")"; }
