#!/usr/bin/env bash
# cluster.sh: three Herald nodes on one Redis (--store redis://127.0.0.1:PORT/0, same --jwt-key
# and --redis-prefix), measured with one `herald bench fanout` given the three hubs and the three
# pids; then one node on the same Redis with the same parameters, for comparison. Appends to
# bench/scenarios/out/<date>-cluster.md (raw JSON in out/raw/). See README.md.
#
# Environment: HERALD (default target/release/herald), HUB_CPUS (0-1: every node and Redis are
# pinned to these cores, so three nodes share the single node's budget), CLUSTER_N (10000
# subscribers), CLUSTER_TOPICS (1), CLUSTER_RATE (100 updates/s), CLUSTER_DURATION (30 s), DRAIN
# (10 s), CLUSTER_NODES (3), REDIS_ARGS (default: append-only file fsynced at every write, the
# setting docs/cluster.md gives for Herald's durability promise), and those of run.sh (OUT, SIZE,
# CONNECT_RATE, BENCH_CPUS, ...).
set -euo pipefail

case ${1:-} in
    -h | --help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
    "") ;;
    *) echo "usage: ${0##*/} [-h]  (sizes through the environment)" >&2; exit 2 ;;
esac

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER_N=${CLUSTER_N:-10000}
CLUSTER_TOPICS=${CLUSTER_TOPICS:-1}
CLUSTER_RATE=${CLUSTER_RATE:-100}
CLUSTER_DURATION=${CLUSTER_DURATION:-30}
CLUSTER_NODES=${CLUSTER_NODES:-3}
DRAIN=${DRAIN:-10}
REDIS_ARGS=${REDIS_ARGS:---appendonly yes --appendfsync always}

(( CLUSTER_N <= 19500 )) || die "CLUSTER_N=$CLUSTER_N: the single-node run keeps at most 19,500 subscribers in one process"
(( CLUSTER_NODES >= 1 )) || die "CLUSTER_NODES must be at least 1"

check_tools jq curl taskset timeout awk
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt_install redis-server
fi
check_tools redis-server redis-cli
check_herald

# --- Redis ----------------------------------------------------------------------------------
REDIS_PORT=$(free_port)
REDIS_DIR=$TMP/redis
mkdir -p "$REDIS_DIR"
# shellcheck disable=SC2086
taskset -c "$HUB_CPUS" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" \
    --save '' --daemonize no --protected-mode yes --logfile "$REDIS_DIR/redis.log" $REDIS_ARGS \
    </dev/null >/dev/null 2>&1 &
REDIS_PID=$!
track "$REDIS_PID"
for _ in $(seq 1 100); do
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true)" = PONG ] && break
    kill -0 "$REDIS_PID" 2>/dev/null || { cat "$REDIS_DIR/redis.log" >&2 || true; die "redis-server did not start"; }
    sleep 0.1
done
[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true)" = PONG ] || die "redis-server does not answer on 127.0.0.1:$REDIS_PORT"
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
log "redis-server on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID, $(redis-server --version | awk '{ print $3 }' | sed 's/^v=//'))"

redis_rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$REDIS_PID/status" 2>/dev/null || echo '?'; }

# run_nodes ID COUNT: COUNT nodes on Redis (a key prefix of their own), one bench run against
# all of them; sets FLAT and NOTE.
run_nodes() {
    local id=$1 count=$2 i port dir prefix hubs=() pids=() args=() common
    prefix=bench-$id-$RANDOM
    for i in $(seq 1 "$count"); do
        port=$(free_port)
        dir=$TMP/$id-node$i
        start_herald "$port" "$dir" "$REDIS_URL" --redis-prefix "$prefix"
        hubs+=("$port")
        pids+=("$HUB_PID")
    done
    log "cluster $id: $count node(s) on ports ${hubs[*]} (pids ${pids[*]}), Redis prefix $prefix"
    for port in "${hubs[@]}"; do args+=(--hub "http://127.0.0.1:$port/.well-known/mercure"); done
    for i in "${pids[@]}"; do args+=(--pid "$i"); done
    mapfile -t common < <(common_args "$CLUSTER_N")
    RAW=$OUT/raw/$(date +%Y-%m-%d)-cluster-$id
    mkdir -p "$OUT/raw"
    sample_mem "$TMP/$id.mem" "${pids[@]}"
    local sampler=$SAMPLER_PID
    start_bench "$RAW.json" "$RAW.log" "${args[@]}" --jwt "$(herald_token)" "${common[@]}" \
        --subscribers "$CLUSTER_N" --topics "$CLUSTER_TOPICS" --rate "$CLUSTER_RATE" \
        --duration "$CLUSTER_DURATION" --drain "$DRAIN"
    wait_bench
    stop_sampler "$sampler"
    for i in "${pids[@]}"; do stop_herald "$i"; done
    FLAT=$(flatten "$RAW.json" "$(peak_pss "$TMP/$id.mem")")
    NOTE="Redis RSS $(redis_rss_mib) MiB after the run"
    if [ "$BENCH_RC" -ne 0 ]; then
        for i in $(seq 1 "$count"); do cp "$TMP/$id-node$i/herald.log" "$RAW.node$i.log" 2>/dev/null || true; done
        NOTE="$NOTE; bench exit $BENCH_RC (${RAW#"$OUT"/}.log)"
    fi
    log "cluster $id: done (bench exit $BENCH_RC)"
}

table_start cluster "Cluster: ${CLUSTER_NODES} Herald nodes on one Redis (\`--store $REDIS_URL\`, Redis flags \`$REDIS_ARGS\`), ${CLUSTER_N} subscribers spread over the nodes by the load generator, ${CLUSTER_TOPICS} topic(s), ${CLUSTER_RATE} updates/s for ${CLUSTER_DURATION} s; then a single node on the same Redis with the same parameters. Every node and Redis pinned to cores ${HUB_CPUS}. RSS, CPU and PSS are the Herald nodes' (summed), not Redis's (in the notes)."
run_nodes "nodes$CLUSTER_NODES" "$CLUSTER_NODES"
table_row cluster "N=$CLUSTER_N R=$CLUSTER_RATE/s" "Herald × $CLUSTER_NODES" "$FLAT" "$NOTE"
MULTI=$FLAT
run_nodes single 1
table_row cluster "N=$CLUSTER_N R=$CLUSTER_RATE/s" "Herald × 1" "$FLAT" "$NOTE"
table_ratio cluster "N=$CLUSTER_N R=$CLUSTER_RATE/s" "×$CLUSTER_NODES / ×1" "$MULTI" "$FLAT"
table_end cluster
log "results: $(results_file cluster)"
