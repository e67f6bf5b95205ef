#!/usr/bin/env bash
# run.sh [SCENARIO...]: runs the fan-out scenarios against Herald and against Nchan (the peer),
# each run on a fresh hub pinned to the same cores, and appends the results to
# bench/scenarios/out/<date>-<scenario>.md (raw JSON in out/raw/). See README.md.
#
# Scenarios: idle light fanout topics stall storm soak (default: all, in that order).
# Environment: HERALD (default target/release/herald; built elsewhere, never here), SERVERS
# ("herald nchan"), HUB_CPUS (0-1), BENCH_CPUS, OUT, SIZE, CONNECT_RATE, HEARTBEAT, and the
# per-scenario sizes listed under "sizes" below (e.g. IDLE_N="1000 5000").
set -euo pipefail

ALL_SCENARIOS="idle light fanout topics stall storm soak"

usage() {
    sed -n '2,9s/^# \{0,1\}//p' "$0"
    echo
    echo "usage: ${0##*/} [-h|--list] [SCENARIO...]"
}

scenarios=()
for a in "$@"; do
    case $a in
        -h | --help) usage; exit 0 ;;
        --list) echo "$ALL_SCENARIOS" | tr ' ' '\n'; exit 0 ;;
        -*) usage >&2; exit 2 ;;
        *)
            [[ " $ALL_SCENARIOS " == *" $a "* ]] || { echo "${0##*/}: unknown scenario '$a' (known: $ALL_SCENARIOS)" >&2; exit 2; }
            scenarios+=("$a")
            ;;
    esac
done
[ ${#scenarios[@]} -gt 0 ] || read -r -a scenarios <<<"$ALL_SCENARIOS"

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- sizes ----------------------------------------------------------------------------------
SERVERS=${SERVERS:-herald nchan}
IDLE_N=${IDLE_N:-1000 5000 10000 19500}
IDLE_DURATION=${IDLE_DURATION:-10}
IDLE_HOLD=${IDLE_HOLD:-5}
LIGHT_N=${LIGHT_N:-100 1000 10000}
LIGHT_DURATION=${LIGHT_DURATION:-10}
FANOUT_N=${FANOUT_N:-10000}
FANOUT_RATES=${FANOUT_RATES:-10 100 200 500}
FANOUT_DURATION=${FANOUT_DURATION:-20}
TOPICS_N=${TOPICS_N:-10000}
TOPICS_K=${TOPICS_K:-10000}
TOPICS_RATE=${TOPICS_RATE:-1000}
TOPICS_DURATION=${TOPICS_DURATION:-30}
STALL_N=${STALL_N:-10000}
STALL_RATE=${STALL_RATE:-200}
STALL_PERCENT=${STALL_PERCENT:-1}
STALL_DURATION=${STALL_DURATION:-30}
STORM_N=${STORM_N:-19500}
STORM_RATE=${STORM_RATE:-100}
STORM_DURATION=${STORM_DURATION:-60}
STORM_RESTART_AFTER=${STORM_RESTART_AFTER:-10}
STORM_RECONNECT_LIMIT=${STORM_RECONNECT_LIMIT:-120}
SOAK_N=${SOAK_N:-10000}
SOAK_CYCLES=${SOAK_CYCLES:-10}
SOAK_DURATION=${SOAK_DURATION:-1}
SOAK_HOLD=${SOAK_HOLD:-1}
SOAK_SETTLE=${SOAK_SETTLE:-2}
DRAIN=${DRAIN:-10}

for s in $SERVERS; do
    case $s in herald | nchan) ;; *) die "SERVERS: unknown server '$s' (herald, nchan)" ;; esac
done
for n in $IDLE_N $STORM_N $FANOUT_N $TOPICS_N $STALL_N $SOAK_N $LIGHT_N; do
    (( n <= 19500 )) || die "$n subscribers: one hub process keeps at most 19,500 (20,000 open files)"
done

check_tools jq curl taskset timeout awk
check_herald
[[ " $SERVERS " == *" nchan "* ]] && ensure_nchan

server_name() { case $1 in herald) echo Herald ;; nchan) echo Nchan ;; esac; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# Arguments that point `herald bench fanout` at a hub on PORT.
herald_target() { printf '%s\n' --hub "http://127.0.0.1:$1/.well-known/mercure" --jwt "$2"; }
nchan_target() {
    printf '%s\n' --hub "http://127.0.0.1:$1" \
        --subscribe-url "http://127.0.0.1:$1/sub/{topic}" \
        --publish-url "http://127.0.0.1:$1/pub/{topic}"
}
pid_args() { local p; for p in "$@"; do printf '%s\n' --pid "$p"; done; }

# Where a run's raw output goes; sets RAW (without extension).
raw_base() { RAW=$OUT/raw/$(date +%Y-%m-%d)-$1-$2-$3; mkdir -p "$OUT/raw"; }

# A note for a failed run, with the hub's log kept beside the raw output.
failure_note() {
    local hublog=$1
    [ "$BENCH_RC" -eq 0 ] && return 0
    [ -f "$hublog" ] && cp "$hublog" "$RAW.hub.log"
    if [ "$BENCH_RC" -eq 124 ]; then
        printf 'bench timed out (%s.log)' "${RAW#"$OUT"/}"
    else
        printf 'bench exit %s (%s.log)' "$BENCH_RC" "${RAW#"$OUT"/}"
    fi
}

# run_one SERVER SCENARIO ID ARGS...: one run on a fresh hub; sets FLAT and NOTE.
run_one() {
    local server=$1 scenario=$2 id=$3 port dir n target pids hublog
    shift 3
    n=$(arg_of --subscribers "$@")
    port=$(free_port)
    dir=$TMP/$scenario-$id-$server
    raw_base "$scenario" "$id" "$server"
    mkdir -p "$dir"
    if [ "$server" = herald ]; then
        start_herald "$port" "$dir" memory
        mapfile -t target < <(herald_target "$port" "$(herald_token)")
        pids=("$HUB_PID")
        hublog=$dir/herald.log
    else
        start_nchan "$port" "$dir"
        mapfile -t target < <(nchan_target "$port")
        pids=("${HUB_PIDS[@]}")
        hublog=$dir/error.log
    fi
    log "$scenario $id: $(server_name "$server") on 127.0.0.1:$port (pids ${pids[*]})"
    sample_mem "$dir/mem" "${pids[@]}"
    local sampler=$SAMPLER_PID common pidargs
    mapfile -t common < <(common_args "${n:-0}")
    mapfile -t pidargs < <(pid_args "${pids[@]}")
    start_bench "$RAW.json" "$RAW.log" "${target[@]}" "${pidargs[@]}" "${common[@]}" "$@"
    wait_bench
    stop_sampler "$sampler"
    if [ "$server" = herald ]; then stop_herald "$HUB_PID"; else stop_nchan "$dir"; fi
    FLAT=$(flatten "$RAW.json" "$(peak_pss "$dir/mem")")
    NOTE=$(failure_note "$hublog")
    log "$scenario $id: $(server_name "$server") done (bench exit $BENCH_RC)"
}

# run_pair SCENARIO ID LABEL ARGS...: the same run against each server, then the ratio row.
run_pair() {
    local scenario=$1 id=$2 label=$3 s
    shift 3
    local -A flats=()
    for s in $SERVERS; do
        run_one "$s" "$scenario" "$id" "$@"
        table_row "$scenario" "$label" "$(server_name "$s")" "$FLAT" "$NOTE"
        flats[$s]=$FLAT
    done
    if [ -n "${flats[herald]:-}" ] && [ -n "${flats[nchan]:-}" ]; then
        table_ratio "$scenario" "$label" "Herald/Nchan" "${flats[herald]}" "${flats[nchan]}"
    fi
}

# --- scenarios ------------------------------------------------------------------------------
scenario_idle() {
    table_start idle "Idle subscribers (rate 0, one topic): memory per subscriber. N subscribers connect, stay ${IDLE_DURATION} s with nothing published, and are held ${IDLE_HOLD} s more while the hub's memory is read."
    local n
    for n in $IDLE_N; do
        run_pair idle "n$n" "N=$n" --subscribers "$n" --topics 1 --rate 0 \
            --duration "$IDLE_DURATION" --drain 0 --hold "$IDLE_HOLD"
    done
    table_end idle
}

scenario_light() {
    table_start light "Light load: N subscribers on one topic, 1 update/s for ${LIGHT_DURATION} s: delivery latency with the hub mostly idle."
    local n
    for n in $LIGHT_N; do
        run_pair light "n$n" "N=$n" --subscribers "$n" --topics 1 --rate 1 \
            --duration "$LIGHT_DURATION" --drain "$DRAIN"
    done
    table_end light
}

scenario_fanout() {
    table_start fanout "Fan-out: ${FANOUT_N} subscribers on one topic, R updates/s for ${FANOUT_DURATION} s (open loop): deliveries per second and p99 as R grows, to find the knee."
    local r
    for r in $FANOUT_RATES; do
        run_pair fanout "r$r" "R=$r/s" --subscribers "$FANOUT_N" --topics 1 --rate "$r" \
            --duration "$FANOUT_DURATION" --drain "$DRAIN"
    done
    table_end fanout
}

scenario_topics() {
    table_start topics "Many topics: ${TOPICS_N} subscribers spread over ${TOPICS_K} topics, ${TOPICS_RATE} updates/s spread over the topics for ${TOPICS_DURATION} s."
    run_pair topics "k$TOPICS_K" "N=$TOPICS_N K=$TOPICS_K R=$TOPICS_RATE/s" \
        --subscribers "$TOPICS_N" --topics "$TOPICS_K" --rate "$TOPICS_RATE" \
        --duration "$TOPICS_DURATION" --drain "$DRAIN"
    table_end topics
}

scenario_stall() {
    table_start stall "Stalled readers: ${STALL_N} subscribers on one topic, ${STALL_RATE} updates/s for ${STALL_DURATION} s, once with every subscriber reading and once with ${STALL_PERCENT}% of them never reading (--stall): the others' p99 and the hub's memory. Latency and delivery counts are of the subscribers that read."
    local common=(--subscribers "$STALL_N" --topics 1 --rate "$STALL_RATE" --duration "$STALL_DURATION" --drain "$DRAIN")
    run_pair stall nostall "no stall" "${common[@]}"
    run_pair stall "stall$STALL_PERCENT" "stall ${STALL_PERCENT}%" "${common[@]}" --stall "$STALL_PERCENT"
    table_end stall
}

# Storm: N subscribers with --reconnect; once all are connected the hub is stopped (TERM) and
# started again on the same port (Herald: --store redb, same data directory, so the history
# survives; Nchan keeps its messages in shared memory, which a restart empties). Measures how
# long until the hub counts N subscribers again, and what the subscribers missed or got twice.
storm_one() {
    local server=$1 port dir n=$STORM_N count_fn pids token t0 t1 t2="" c=0
    port=$(free_port)
    dir=$TMP/storm-$server
    raw_base storm "n$n" "$server"
    mkdir -p "$dir"
    start_storm_hub() {
        if [ "$server" = herald ]; then
            start_herald "$port" "$dir" redb
            pids=("$HUB_PID")
        else
            start_nchan "$port" "$dir"
            pids=("${HUB_PIDS[@]}")
        fi
    }
    stop_storm_hub() {
        if [ "$server" = herald ]; then stop_herald "${pids[0]}"; else stop_nchan "$dir"; fi
    }
    start_storm_hub
    local target common
    if [ "$server" = herald ]; then
        count_fn=herald_subscribers
        token=$(herald_token)
        mapfile -t target < <(herald_target "$port" "$token")
    else
        count_fn=nchan_subscribers
        mapfile -t target < <(nchan_target "$port")
    fi
    mapfile -t common < <(common_args "$n")
    log "storm: $(server_name "$server") on 127.0.0.1:$port (pids ${pids[*]})"
    # No --pid: the hub's pid changes at the restart. Memory is sampled here instead.
    start_bench "$RAW.json" "$RAW.log" "${target[@]}" "${common[@]}" \
        --subscribers "$n" --topics 1 --rate "$STORM_RATE" --duration "$STORM_DURATION" \
        --drain "$DRAIN" --reconnect
    local limit=$(( n / CONNECT_RATE + 60 ))
    for _ in $(seq 1 $(( limit * 5 ))); do
        c=$($count_fn "$port")
        (( c >= n )) && break
        kill -0 "$BENCH_PID" 2>/dev/null || break
        sleep 0.2
    done
    local note_pre=""
    (( c >= n )) || note_pre="only $c of $n connected before the restart; "
    sleep "$STORM_RESTART_AFTER"
    log "storm: restarting $(server_name "$server")"
    t0=$(now)
    stop_storm_hub
    start_storm_hub
    t1=$(now)
    sample_mem "$dir/mem" "${pids[@]}"
    local sampler=$SAMPLER_PID
    for _ in $(seq 1 $(( STORM_RECONNECT_LIMIT * 5 ))); do
        c=$($count_fn "$port")
        if (( c >= n )); then t2=$(now); break; fi
        kill -0 "$BENCH_PID" 2>/dev/null || break
        sleep 0.2
    done
    wait_bench
    stop_sampler "$sampler"
    stop_storm_hub
    FLAT=$(flatten "$RAW.json" "$(peak_pss "$dir/mem")")
    local back
    if [ -n "$t2" ]; then
        back="all $n back $(secs "$t1" "$t2") s after the restart"
    else
        back="$c of $n back when the wait ended"
    fi
    NOTE="${note_pre}hub down $(secs "$t0" "$t1") s; $back"
    local fail
    fail=$(failure_note "$dir/$([ "$server" = herald ] && echo herald.log || echo error.log)")
    [ -n "$fail" ] && NOTE="$NOTE; $fail"
    log "storm: $(server_name "$server") done: $NOTE"
}

scenario_storm() {
    table_start storm "Reconnect storm: ${STORM_N} subscribers (--reconnect) on one topic, ${STORM_RATE} updates/s for ${STORM_DURATION} s; ${STORM_RESTART_AFTER} s after all are connected the hub gets SIGTERM and is started again on the same port (Herald with --store redb and the same data directory; Nchan's history is in shared memory and does not survive). Notes: how long the hub was down and how long after it was back until it counted every subscriber again. RSS: not measured by the bench (the pid changes); PSS peak is of the restarted hub."
    local s
    local -A flats=()
    for s in $SERVERS; do
        storm_one "$s"
        table_row storm "N=$STORM_N" "$(server_name "$s")" "$FLAT" "$NOTE"
        flats[$s]=$FLAT
    done
    if [ -n "${flats[herald]:-}" ] && [ -n "${flats[nchan]:-}" ]; then
        table_ratio storm "N=$STORM_N" "Herald/Nchan" "${flats[herald]}" "${flats[nchan]}"
    fi
    table_end storm
}

# Soak: one hub; SOAK_CYCLES times, SOAK_N subscribers connect, are held, and disconnect; the
# hub's memory after each disconnect shows whether anything is left behind.
declare -A SOAK_FLAT=() SOAK_NOTE=()
soak_one() {
    local server=$1 port dir pids target common pidargs c r s base_r
    port=$(free_port)
    dir=$TMP/soak-$server
    mkdir -p "$dir"
    if [ "$server" = herald ]; then
        start_herald "$port" "$dir" memory
        pids=("$HUB_PID")
        mapfile -t target < <(herald_target "$port" "$(herald_token)")
    else
        start_nchan "$port" "$dir"
        pids=("${HUB_PIDS[@]}")
        mapfile -t target < <(nchan_target "$port")
    fi
    mapfile -t common < <(common_args "$SOAK_N")
    mapfile -t pidargs < <(pid_args "${pids[@]}")
    read -r base_r _ < <(mem_now "${pids[@]}")
    log "soak: $(server_name "$server") on 127.0.0.1:$port (pids ${pids[*]}), RSS $(( base_r / 1024 )) MiB at start"
    for c in $(seq 1 "$SOAK_CYCLES"); do
        raw_base soak "c$c" "$server"
        sample_mem "$dir/mem$c" "${pids[@]}"
        local sampler=$SAMPLER_PID
        start_bench "$RAW.json" "$RAW.log" "${target[@]}" "${pidargs[@]}" "${common[@]}" \
            --subscribers "$SOAK_N" --topics 1 --rate 0 --duration "$SOAK_DURATION" \
            --drain 0 --hold "$SOAK_HOLD"
        wait_bench
        stop_sampler "$sampler"
        sleep "$SOAK_SETTLE"
        read -r r s < <(mem_now "${pids[@]}")
        SOAK_FLAT[$server.$c]=$(flatten "$RAW.json" "$(peak_pss "$dir/mem$c")")
        local note
        note=$(printf 'after disconnect: RSS %s MiB, PSS %s MiB' "$(awk -v k="$r" 'BEGIN { printf "%.1f", k / 1024 }')" "$(awk -v k="$s" 'BEGIN { printf "%.1f", k / 1024 }')")
        (( c == 1 )) && note="$note (before cycle 1: RSS $(awk -v k="$base_r" 'BEGIN { printf "%.1f", k / 1024 }') MiB)"
        local fail
        fail=$(failure_note "$dir/$([ "$server" = herald ] && echo herald.log || echo error.log)")
        [ -n "$fail" ] && note="$note; $fail"
        SOAK_NOTE[$server.$c]=$note
        log "soak: $(server_name "$server") cycle $c: $note"
    done
    if [ "$server" = herald ]; then stop_herald "${pids[0]}"; else stop_nchan "$dir"; fi
}

scenario_soak() {
    table_start soak "Soak: one hub, ${SOAK_CYCLES} cycles of ${SOAK_N} subscribers connecting (rate 0), held ${SOAK_HOLD} s, and disconnecting; the hub's memory ${SOAK_SETTLE} s after each disconnect is in the notes (it should come back down and not grow cycle after cycle)."
    local s c
    for s in $SERVERS; do soak_one "$s"; done
    for c in $(seq 1 "$SOAK_CYCLES"); do
        for s in $SERVERS; do
            table_row soak "cycle $c" "$(server_name "$s")" "${SOAK_FLAT[$s.$c]}" "${SOAK_NOTE[$s.$c]}"
        done
        if [ -n "${SOAK_FLAT[herald.$c]:-}" ] && [ -n "${SOAK_FLAT[nchan.$c]:-}" ]; then
            table_ratio soak "cycle $c" "Herald/Nchan" "${SOAK_FLAT[herald.$c]}" "${SOAK_FLAT[nchan.$c]}"
        fi
    done
    table_end soak
}

# --- main -----------------------------------------------------------------------------------
log "Herald: $HERALD; servers: $SERVERS; hub cores: $HUB_CPUS; results: $OUT"
for sc in "${scenarios[@]}"; do
    log "=== $sc"
    "scenario_$sc"
    log "=== $sc: $(results_file "$sc")"
done
