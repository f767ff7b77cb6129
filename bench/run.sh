#!/usr/bin/env bash
# bench/run.sh - Realm against Node, side by side, in one run (`make bench`).
#
# Builds Realm and realm-wsload (Release, REALM_BENCH=ON, build/bench), starts
# Realm and the Node peers (bench/peers/) on ephemeral loopback ports, and
# measures:
#
#   memory  RSS (VmRSS) with 0 and with BENCH_IDLE idle WebSocket connections
#           (realm-wsload --idle), on freshly started servers
#   http    GET /health requests/s with wrk -t1 at 1 and 100 connections
#           (the Node peer serves a body of the size of Realm's)
#   ws      `health` calls/s with realm-wsload at 1 and 100 connections
#   invoke  bench/invoke.py: invocation latency (cold, warm, high frequency) and
#           throughput (1-100 callers) of no-op Node, Python and provided (C)
#           functions over Invoke HTTP (wrk) and the client WebSocket
#           (realm-wsload), with the HTTP and the WebSocket runtime channel,
#           the Node HTTP rows alternating with serverless-offline; server
#           memory with 0, 1000 and 10000 idle client WebSockets;
#           bench/results/invoke.json, and PNG plots by bench/plots.py
#           (skipped with BENCH_INVOKE=0)
#   llm     bench/llm.py: generate against node-llama-cpp (bench/results/llm.json)
#   store   bench/store.py: Realm on SQLite and on PostgreSQL (a throwaway
#           cluster, fsync on) side by side: control operations/s, Event
#           enqueue and dispatch rates, warm invoke latency
#           (bench/results/store.json; skipped with BENCH_STORE=0)
#   cluster bench/cluster.py: a call placed across nodes against a local one,
#           and callers over one node against three (bench/results/cluster.json;
#           skipped with BENCH_CLUSTER=0)
#
# Each load scenario starts with an unrecorded warm-up of BENCH_WARMUP seconds
# per server, then BENCH_ROUNDS rounds of BENCH_SECONDS seconds that alternate
# Realm, Node, Realm, Node...: a neighbour busy for a while on a shared
# machine then slows both sides alike, and the median round is reported.
# The CPU time of the server (/proc/PID/stat), of the load generator and of
# the whole machine (/proc/stat) is recorded with every round, so a run where
# the load generator or some other process set the pace shows it.
#
# The raw records go to a temporary directory; bench/report.py turns them
# into bench/results/core.json (medians, ratios, every round), then that into
# BENCHMARKS.md.
#
# Knobs (environment): BENCH_ROUNDS (5), BENCH_SECONDS (1), BENCH_WARMUP (1),
# BENCH_IDLE (1000), REALM_BENCH_CFLAGS (extra CMAKE_C_FLAGS for the build),
# BENCH_INVOKE / BENCH_STORE (1; 0 skips bench/invoke.py / bench/store.py),
# BENCH_STORE_NOTE (what else the machine was doing, printed in BENCHMARKS.md).
set -euo pipefail

cd "$(dirname "$0")/.."

ROUNDS=${BENCH_ROUNDS:-5}
SECONDS_PER_ROUND=${BENCH_SECONDS:-1}
WARMUP=${BENCH_WARMUP:-1}
IDLE=${BENCH_IDLE:-1000}
BUILD=build/bench
WSLOAD=$BUILD/bench/realm-wsload
REALM=$BUILD/realm
RESULTS=bench/results/core.json
HZ=$(getconf CLK_TCK)

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

for tool in wrk node cmake /usr/bin/python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh --bench installs it)"
done
[ -d node_modules/ws ] || die "node_modules/ws is missing (scripts/setup.sh installs it)"

# Build ------------------------------------------------------------------------
log "building ($BUILD, Release)"
mkdir -p "$BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DREALM_TESTS=OFF -DREALM_BENCH=ON \
    -DCMAKE_C_FLAGS="${REALM_BENCH_CFLAGS:-}" >/dev/null
cmake --build "$BUILD" -j2 >"$BUILD/build.log" 2>&1 || {
    tail -30 "$BUILD/build.log" >&2
    die "build failed (full log: $BUILD/build.log)"
}

# Environment ------------------------------------------------------------------
# Every idle connection is a descriptor in the server and in realm-wsload.
need_fds=$((IDLE + 256))
if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$need_fds" ]; then
    ulimit -Sn "$need_fds" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"
    [ "$(ulimit -Sn)" = unlimited ] || [ "$(ulimit -Sn)" -ge "$need_fds" ] ||
        die "ulimit -n is $(ulimit -Sn) (hard limit $(ulimit -Hn)); $need_fds descriptors are needed"
fi

T=$(mktemp -d)
declare -A PID=()
cleanup() {
    local p
    for p in "${PID[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PID[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT

# start NAME LINES COMMAND... : runs a server, waits for LINES "listening" lines.
start() {
    local name=$1 lines=$2
    shift 2
    "$@" >"$T/$name.out" 2>"$T/$name.err" &
    PID[$name]=$!
    for _ in $(seq 100); do
        [ "$(grep -c '^listening ' "$T/$name.out" || true)" -ge "$lines" ] && return 0
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    cat "$T/$name.err" >&2
    die "$name did not start"
}

stop() {
    local name=$1
    kill -TERM "${PID[$name]}" 2>/dev/null || true
    wait "${PID[$name]}" 2>/dev/null || true
    unset "PID[$name]"
}

# port NAME KIND : the port of NAME's "listening KIND" line (KIND empty: the first line).
port() {
    grep -m1 "^listening ${2:+$2 }" "$T/$1.out" | sed -E 's#^.*:([0-9]+)(/.*)?$#\1#'
}

alive() { kill -0 "${PID[$1]}" 2>/dev/null || die "$1 died (stderr: $(tail -5 "$T/$1.err"))"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# ticks PID : CPU ticks (user + system, all threads) the process has used so far.
ticks() {
    local s
    s=$(<"/proc/$1/stat")
    s=${s##*) } # fields after "pid (comm) "; utime and stime are the 12th and 13th
    # shellcheck disable=SC2086
    set -- $s
    echo $((${12} + ${13}))
}
# machine_ticks : CPU ticks every process on the machine has used so far.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
calc() { awk "BEGIN { printf \"%.6g\", $1 }"; }
# jget JSON KEY : the number after the last "KEY": in a JSON text (for logs).
jget() { printf '%s' "$1" | sed -E "s/.*\"$2\": *(-?[0-9.eE+-]+).*/\\1/"; }
body_bytes() {
    /usr/bin/python3 -c 'import sys, urllib.request; print(len(urllib.request.urlopen(sys.argv[1]).read()))' "$1"
}

# Machine ----------------------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo | sed 's/"/\\"/g; s/  */ /g')
# shellcheck disable=SC1091
os_name=$(. /etc/os-release && printf '%s' "$PRETTY_NAME")
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
{
    printf '{"cpu_model": "%s", "cores": %d, "memory_kb": %d,\n' \
        "$cpu_model" "$(nproc)" "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
    printf ' "kernel": "%s", "os": "%s", "date": "%s", "loadavg_at_start": "%s",\n' \
        "$(uname -r)" "$os_name" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$loadavg"
    printf ' "realm_commit": "%s", "realm_tracked_files_modified": %d, "realm_build": "%s",\n' \
        "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)" \
        "CMake Release, $(cc --version | head -1)"
    printf ' "node_version": "%s", "ws_version": "%s", "wrk_version": "%s"}\n' \
        "$(node --version)" "$(node -p 'require("ws/package.json").version')" \
        "$(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
} >"$T/machine.json"
log "machine: $cpu_model, $(nproc) cores, load average $loadavg"

realm_cmd=("$REALM" serve --port 0 --control-port 0 --runtime-port 0 --metrics-port 0
    --data-dir "$T/realm-data" --log-level warn)

# Memory: idle WebSocket connections --------------------------------------------
# measure_idle NAME URL SIDE : RSS of NAME before and while BENCH_IDLE
# connections idle; writes $T/memory-SIDE.json.
measure_idle() {
    local name=$1 url=$2 side=$3 rss0 rss1 ready=0 rc=0 lp
    sleep 1 # let the fresh server settle
    rss0=$(rss_kb "${PID[$name]}")
    "$WSLOAD" --idle -c "$IDLE" "$url" >"$T/idle-$name.out" 2>"$T/idle-$name.err" &
    lp=$!
    for _ in $(seq 600); do
        if grep -qx ready "$T/idle-$name.out"; then
            ready=1
            break
        fi
        kill -0 "$lp" 2>/dev/null || break
        sleep 0.1
    done
    [ "$ready" = 1 ] || {
        kill -TERM "$lp" 2>/dev/null || true
        cat "$T/idle-$name.err" >&2
        die "$IDLE idle connections to $name did not open"
    }
    sleep 1 # let the server finish whatever the connects set off
    rss1=$(rss_kb "${PID[$name]}")
    alive "$name"
    kill -TERM "$lp"
    wait "$lp" || rc=$?
    [ "$rc" = 0 ] || {
        cat "$T/idle-$name.err" >&2
        die "realm-wsload --idle against $name failed ($rc)"
    }
    log "memory $name: ${rss0} kB idle, ${rss1} kB with $IDLE connections"
    printf '{"connections": %d, "rss_0_kb": %d, "rss_n_kb": %d, "wsload": %s}\n' \
        "$IDLE" "$rss0" "$rss1" "$(tail -1 "$T/idle-$name.out")" >"$T/memory-$side.json"
}

start realm 4 "${realm_cmd[@]}"
start node_ws 1 node bench/peers/ws_server.js 0
measure_idle realm "ws://127.0.0.1:$(port realm client)/" realm
measure_idle node_ws "ws://127.0.0.1:$(port node_ws)/" node
stop realm
stop node_ws
sleep 0.5

# Throughput (fresh servers) ----------------------------------------------------------
start realm 4 "${realm_cmd[@]}"
start node_ws 1 node bench/peers/ws_server.js 0
realm_metrics="http://127.0.0.1:$(port realm metrics)/health"
metrics_bytes=$(body_bytes "$realm_metrics")
start node_http 1 node bench/peers/http_server.js 0 "$metrics_bytes"
node_metrics="http://127.0.0.1:$(port node_http)/health"
realm_ws="ws://127.0.0.1:$(port realm client)/"
node_ws="ws://127.0.0.1:$(port node_ws)/"

# record SECTION CONNS SIDE ROUND T0 T1 C0 C1 M0 M1 CLIENT_CPU_S TOOL TOOL_JSON :
# appends one round to $T/runs.jsonl (times in seconds, C/M in ticks).
record() {
    printf '{"section": "%s", "connections": %d, "server": "%s", "round": %d, ' "$1" "$2" "$3" "$4"
    printf '"wall_s": %s, "server_cpu_s": %s, "machine_cpu_s": %s, "client_cpu_s": %s, "%s": %s}\n' \
        "$(calc "$6 - $5")" "$(calc "($8 - $7) / $HZ")" "$(calc "(${10} - $9) / $HZ")" \
        "${11}" "${12}" "${13}"
}

# run_wrk SIDE NAME URL CONNS ROUND : one recorded wrk round.
run_wrk() {
    local side=$1 name=$2 url=$3 conns=$4 round=$5 t0 t1 c0 c1 m0 m1 out="$T/wrk.out" wj
    m0=$(machine_ticks)
    c0=$(ticks "${PID[$name]}")
    t0=$EPOCHREALTIME
    local TIMEFORMAT='%3U %3S'
    { time wrk -t1 -c"$conns" -d"${SECONDS_PER_ROUND}s" -s bench/wrk_report.lua "$url" >"$out" 2>&1; } 2>"$out.time" ||
        die "wrk against $name failed: $(cat "$out")"
    t1=$EPOCHREALTIME
    c1=$(ticks "${PID[$name]}")
    m1=$(machine_ticks)
    alive "$name"
    wj=$(sed -n 's/^WRK_JSON //p' "$out")
    [ -n "$wj" ] || die "wrk printed no result: $(cat "$out")"
    case "$wj" in
    *'"errors":{"connect":0,"read":0,"write":0,"status":0,"timeout":0}'*) ;;
    *) die "wrk saw errors against $name: $wj" ;;
    esac
    record http "$conns" "$side" "$round" "$t0" "$t1" "$c0" "$c1" "$m0" "$m1" \
        "$(awk '{ printf "%.3f", $1 + $2 }' "$out.time")" wrk "$wj" >>"$T/runs.jsonl"
    log "http c$conns round $round $side: $(jget "$wj" requests_per_s) req/s"
}

# run_ws SIDE NAME URL CONNS ROUND : one recorded realm-wsload round.
run_ws() {
    local side=$1 name=$2 url=$3 conns=$4 round=$5 t0 t1 c0 c1 m0 m1 out="$T/ws.out" rc=0 wj
    m0=$(machine_ticks)
    c0=$(ticks "${PID[$name]}")
    t0=$EPOCHREALTIME
    "$WSLOAD" -c "$conns" -d "$SECONDS_PER_ROUND" -w 0 "$url" >"$out" 2>"$out.err" || rc=$?
    t1=$EPOCHREALTIME
    c1=$(ticks "${PID[$name]}")
    m1=$(machine_ticks)
    [ "$rc" = 0 ] || die "realm-wsload against $name failed ($rc): $(cat "$out" "$out.err")"
    alive "$name"
    wj=$(tail -1 "$out")
    record ws "$conns" "$side" "$round" "$t0" "$t1" "$c0" "$c1" "$m0" "$m1" \
        "$(jget "$wj" client_cpu_s)" wsload "$wj" >>"$T/runs.jsonl"
    log "ws c$conns round $round $side: $(jget "$wj" calls_per_s) calls/s"
}

# scenario http|ws CONNS : a warm-up per side, then alternating recorded rounds.
scenario() {
    local kind=$1 conns=$2 round
    if [ "$kind" = http ]; then
        wrk -t1 -c"$conns" -d"${WARMUP}s" "$realm_metrics" >/dev/null 2>&1 || die "wrk warm-up against realm failed"
        wrk -t1 -c"$conns" -d"${WARMUP}s" "$node_metrics" >/dev/null 2>&1 || die "wrk warm-up against node failed"
    else
        "$WSLOAD" -c "$conns" -d "$WARMUP" -w 0 "$realm_ws" >/dev/null || die "realm-wsload warm-up against realm failed"
        "$WSLOAD" -c "$conns" -d "$WARMUP" -w 0 "$node_ws" >/dev/null || die "realm-wsload warm-up against node failed"
    fi
    for round in $(seq "$ROUNDS"); do
        if [ "$kind" = http ]; then
            run_wrk realm realm "$realm_metrics" "$conns" "$round"
            run_wrk node node_http "$node_metrics" "$conns" "$round"
        else
            run_ws realm realm "$realm_ws" "$conns" "$round"
            run_ws node node_ws "$node_ws" "$conns" "$round"
        fi
    done
}

: >"$T/runs.jsonl"
scenario http 1
scenario http 100
scenario ws 1
scenario ws 100
metrics_bytes_end=$(body_bytes "$realm_metrics")

{
    printf '{"command": "make bench", "rounds": %d, "seconds_per_round": %s, "warmup_s": %s,\n' \
        "$ROUNDS" "$SECONDS_PER_ROUND" "$WARMUP"
    printf ' "idle_connections": %d, "wrk_threads": 1, "loadavg_at_end": "%s",\n' \
        "$IDLE" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf ' "realm_metrics_bytes": %d, "realm_metrics_bytes_at_end": %d, "node_http_body_bytes": %d}\n' \
        "$metrics_bytes" "$metrics_bytes_end" "$metrics_bytes"
} >"$T/config.json"

# Results ---------------------------------------------------------------------------
mkdir -p "$(dirname "$RESULTS")"
/usr/bin/python3 bench/report.py collect "$T" "$RESULTS"
log "wrote $RESULTS"
# Invocations (issue 7): their own server, after the core scenarios.
if [ "${BENCH_INVOKE:-1}" = 1 ]; then
    command -v gcc >/dev/null || die "gcc is missing (it builds the provided bootstrap)"
    /usr/bin/python3 bench/invoke.py --realm "$REALM" --wsload "$WSLOAD" --out bench/results/invoke.json ||
        die "bench/invoke.py failed"
    log "wrote bench/results/invoke.json"
    /usr/bin/python3 -c 'import matplotlib' 2>/dev/null ||
        die "python3-matplotlib is missing (scripts/setup.sh --bench installs it)"
    /usr/bin/python3 bench/plots.py bench/results/invoke.json || die "bench/plots.py failed"
    log "wrote bench/results/invoke-*.png"
fi
# generate against llama.cpp itself, when the worker was built (llama.cpp installed).
if [ -x build/bench/realm-llm ] && command -v node >/dev/null; then
    [ -f build/models/bench-300.gguf ] || PYTHONPATH=build/llama.cpp/gguf-py /usr/bin/python3 scripts/make_test_model.py --size-mb 300 --out build/models/bench-300.gguf
    /usr/bin/python3 bench/llm.py --realm build/bench/realm && log "wrote bench/results/llm.json"
fi
# Storage (issue 16): SQLite and PostgreSQL, each its own server.
if [ "${BENCH_STORE:-1}" = 1 ]; then
    /usr/bin/python3 -c 'import sys; sys.path.insert(0, "tests/integration"); import pg_util; pg_util.pg_bindir()' ||
        die "PostgreSQL's server binaries are missing (scripts/setup.sh --bench installs postgresql-15)"
    /usr/bin/python3 bench/store.py --realm "$REALM" --out bench/results/store.json ${BENCH_STORE_NOTE:+--note "$BENCH_STORE_NOTE"} ||
        die "bench/store.py failed"
    log "wrote bench/results/store.json"
fi
# A cluster (issue 17): calls across nodes over NATS.
if [ "${BENCH_CLUSTER:-1}" = 1 ]; then
    /usr/bin/python3 bench/cluster.py --realm "$REALM" --out bench/results/cluster.json ||
        die "bench/cluster.py failed"
    log "wrote bench/results/cluster.json"
fi
/usr/bin/python3 bench/report.py render "$RESULTS" BENCHMARKS.md
log "wrote BENCHMARKS.md"
