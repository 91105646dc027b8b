#!/usr/bin/env bash
# Load benchmark of the gateway against an nginx mock upstream. See bench/README.md.
#
#   BENCH_DURATION=10s bash bench/run.sh          (or: make bench)
#
# Env knobs: BENCH_DURATION (10s), BENCH_WARMUP (2s), BENCH_CONNS ("1 64"),
# BENCH_WORKERS2 (1: also run a --workers 2 gateway), BENCH_PROFILE (auto: py-spy profile of
# the 64-connection chat run if py-spy can be had; 1: required; 0: skip), BENCH_PROFILE_RATE
# (py-spy samples/s, 100), BENCH_KEEP_TMP (1: keep the temp dir: configs, logs, raw wrk output),
# BENCH_AUTH (key: a budgeted virtual key; master), BENCH_DB (sqlite; postgresql),
# BENCH_EXACT_TOKENS (1; 0 sets exact_token_counts: false, to see what the tokenizer costs),
# BENCH_NGINX_PORT / BENCH_GATEWAY_PORT (default: free ports).
#
# Everything runs on 127.0.0.1. Every process started here is stopped by PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION:-10s}
[[ $DURATION =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
WARMUP=${BENCH_WARMUP:-2s}
[[ $WARMUP =~ ^[0-9]+$ ]] && WARMUP="${WARMUP}s"
read -r -a CONNS <<<"${BENCH_CONNS:-1 64}"
WORKERS2=${BENCH_WORKERS2:-1}
PROFILE=${BENCH_PROFILE:-auto}
OUT_MD=bench/out/latest.md
MODEL=gpt-4o-mini
BILLED_USER=bench-user
KEY="sk-bench-$(date +%s)-$$"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need() { # command, Debian package that provides it
    command -v "$1" >/dev/null 2>&1 ||
        die "'$1' not found: install it with 'apt-get install $2' (this script installs nothing)"
}
need wrk wrk
need nginx nginx-light
need taskset util-linux
need curl curl
need ps procps
command -v uv >/dev/null 2>&1 || die "'uv' not found: run 'make uv' (see the Makefile)"
(($(nproc) >= 2)) || die "needs at least 2 CPU cores for the pinning (core 0 gateway, core 1 load)"

src_digest() { # what gateway code is measured (no git here: a digest of the source files)
    local sum newest
    sum=$(find src -name '*.py' -type f | LC_ALL=C sort | xargs sha256sum | sha256sum)
    newest=$(find src -name '*.py' -type f -printf '%TY-%Tm-%Td %TH:%TM:%TS\n' | sort | tail -n 1)
    echo "sha256 of src/**/*.py ${sum:0:12}, newest file changed ${newest%.*}"
}
SRC_START=$(src_digest)

TMP=$(mktemp -d /tmp/otari-bench.XXXXXX)
chmod 755 "$TMP" # nginx workers drop to nobody when the script runs as root
STARTED=()       # root PIDs of everything this script started

# ----------------------------------------------------------------------------- process control

tree_pids() { # root pid -> it and all its descendants (from one ps snapshot)
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2 }
        END {
            if (!(root in parent)) exit
            keep[root] = 1; changed = 1
            while (changed) {
                changed = 0
                for (c in parent) if (!(c in keep) && (parent[c] in keep)) { keep[c] = 1; changed = 1 }
            }
            for (p in keep) print p
        }'
}

stop_tree() { # root pid: TERM the whole tree by PID, KILL what is left after 15 s
    local root=$1 pids pid i
    pids=$(tree_pids "$root")
    [[ -n $pids ]] || return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        local alive=()
        for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        ((${#alive[@]})) || break
        sleep 0.1
    done
    for pid in $pids; do
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not stop on TERM; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    wait "$root" 2>/dev/null || true
}

cleanup() {
    local status=$? i
    set +e
    trap - EXIT INT TERM
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_tree "${STARTED[i]}"; done
    declare -F drop_bench_db >/dev/null && drop_bench_db
    if [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget() { # root pid: stopped, drop it from STARTED
    local kept=() pid
    for pid in "${STARTED[@]}"; do [[ $pid == "$1" ]] || kept+=("$pid"); done
    STARTED=("${kept[@]}")
}

py() { uv run --quiet --frozen python bench/report.py "$@"; }

# Long commands run in the background and are waited for, so a signal reaches the traps at
# once (bash runs a trap only after a foreground command ends) and cleanup can stop them.
run_bg() {
    local pid rc=0
    "$@" &
    pid=$!
    STARTED+=("$pid")
    wait "$pid" || rc=$?
    forget "$pid"
    return "$rc"
}

wait_http() { # url, pid that must stay alive, log file, seconds
    local url=$1 pid=$2 logfile=$3 seconds=$4 i
    for ((i = 0; i < seconds * 10; i++)); do
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$logfile" >&2 || true
            die "process $pid exited before $url answered (log above: $logfile)"
        fi
        sleep 0.1
    done
    tail -n 40 "$logfile" >&2 || true
    die "$url did not answer within ${seconds}s"
}

# ----------------------------------------------------------------------------- mock upstream

NGINX_PORT=${BENCH_NGINX_PORT:-$(py free-port)}
GW_PORT=${BENCH_GATEWAY_PORT:-$(py free-port)}
while [[ $GW_PORT == "$NGINX_PORT" ]]; do GW_PORT=$(py free-port); done

mkdir -p "$TMP/nginx"
NGINX_USER=""
((EUID == 0)) && NGINX_USER="nobody nogroup"
py render-nginx --template bench/mock/nginx.conf.template \
    --chat-body bench/mock/chat_completion.json --stream-body bench/mock/chat_stream.sse \
    --prefix "$TMP/nginx" --port "$NGINX_PORT" --user "$NGINX_USER" --out "$TMP/nginx/nginx.conf"
nginx -t -q -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" ||
    die "nginx rejected the rendered config ($TMP/nginx/nginx.conf)"

log "starting nginx on 127.0.0.1:$NGINX_PORT (core 1)"
taskset -c 1 nginx -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" \
    >"$TMP/nginx/stdout.log" 2>&1 &
NGINX_PID=$!
STARTED+=("$NGINX_PID")
DIRECT="http://127.0.0.1:$NGINX_PORT"
wait_http_post() {
    local i
    for ((i = 0; i < 100; i++)); do
        curl -fsS -o /dev/null --max-time 1 -X POST -d '{}' "$DIRECT/v1/chat/completions" 2>/dev/null &&
            return 0
        kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited: $(cat "$TMP/nginx/error.log")"
        sleep 0.1
    done
    die "nginx did not answer on $DIRECT"
}
wait_http_post

# ----------------------------------------------------------------------------- gateway

write_config() { # file
    cat >"$1" <<EOF
# written by bench/run.sh
host: 127.0.0.1
port: $GW_PORT
master_key: $KEY
log_level: warning
# The gateway's own database lives in the temp dir (or a scratch PostgreSQL database).
database_url: $DATABASE_URL
providers:
  mock:
    provider_type: openai
    api_key: sk-mock-upstream-key
    api_base: http://127.0.0.1:$NGINX_PORT/v1
    models: [$MODEL]
  mockstream:
    provider_type: openai
    api_key: sk-mock-upstream-key
    api_base: http://127.0.0.1:$NGINX_PORT/stream/v1
    models: [$MODEL]
# Explicit prices (gpt-4o-mini's list price), so admission does the full budget path
# without depending on a price database.
pricing:
  mock:$MODEL: {input_price_per_million: 0.15, output_price_per_million: 0.6}
  mockstream:$MODEL: {input_price_per_million: 0.15, output_price_per_million: 0.6}
exact_token_counts: $([[ $BENCH_EXACT_TOKENS == 1 ]] && echo true || echo false)
EOF
}
BENCH_DB=${BENCH_DB:-sqlite}
BENCH_AUTH=${BENCH_AUTH:-key}
BENCH_EXACT_TOKENS=${BENCH_EXACT_TOKENS:-1}
PG_DB=""
if [[ $BENCH_DB == postgresql ]]; then
    command -v psql >/dev/null || die "BENCH_DB=postgresql needs psql (apt-get install postgresql-client)"
    PG_DB="otari_bench_$$"
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $PG_DB" >/dev/null
    DATABASE_URL="postgresql://postgres@127.0.0.1:5432/$PG_DB"
else
    DATABASE_URL="sqlite:///$TMP/otari.db"
fi
drop_bench_db() {
    [[ -n $PG_DB ]] && psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1
    return 0
}
write_config "$TMP/gateway.yml"

GW_PID=""
start_gateway() { # workers, pin (core list or "")
    local workers=$1 pin=$2 logfile="$TMP/gateway-w$1.log"
    local cmd=(uv run otari serve --config "$TMP/gateway.yml" --host 127.0.0.1 --port "$GW_PORT"
        --workers "$workers" --log-level warning)
    [[ -n $pin ]] && cmd=(taskset -c "$pin" "${cmd[@]}")
    log "starting gateway: ${cmd[*]}"
    "${cmd[@]}" >"$logfile" 2>&1 &
    GW_PID=$!
    STARTED+=("$GW_PID")
    wait_http "http://127.0.0.1:$GW_PORT/health" "$GW_PID" "$logfile" 90
    # With --workers N uvicorn forks N servers under a supervisor: wait for all of them.
    local i
    for ((i = 0; i < 100; i++)); do
        (($(tree_pids "$GW_PID" | wc -l) >= workers + 1 + (workers > 1))) && break
        sleep 0.1
    done
    log "gateway up (tree: $(py tree "$GW_PID" | awk '{printf "%s:%s ", $3, $1}'))"
}

stop_gateway() {
    stop_tree "$GW_PID"
    forget "$GW_PID"
    GW_PID=""
}

GATEWAY="http://127.0.0.1:$GW_PORT"

# ----------------------------------------------------------------------------- checks

NOTES=()
note() { NOTES+=("$1"); log "check: $1"; }

post() { # url, json body, output file -> prints "status content-type"
    curl -sS -o "$3" -w '%{http_code} %{content_type}' --max-time 10 -X POST "$1" \
        -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d "$2"
}

sanity_checks() {
    local chat_body stream_body usage_body out direct_events gw_events gw_usage_events
    chat_body="{\"model\":\"mock:$MODEL\",\"user\":\"$BILLED_USER\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
    stream_body="{\"model\":\"mockstream:$MODEL\",\"stream\":true,\"user\":\"$BILLED_USER\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
    usage_body="{\"model\":\"mockstream:$MODEL\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"user\":\"$BILLED_USER\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"

    post "$DIRECT/v1/chat/completions" "$chat_body" "$TMP/direct.json" >/dev/null
    out=$(post "$GATEWAY/v1/chat/completions" "$chat_body" "$TMP/gateway.json")
    [[ $out == 200* ]] || die "the gateway refused a plain chat request ($out): \
$(head -c 400 "$TMP/gateway.json") -- measuring only errors would be meaningless"
    if [[ $out == "200 application/json"* ]] && cmp -s "$TMP/direct.json" "$TMP/gateway.json"; then
        note "chat: gateway answers 200 with the upstream body byte-for-byte"
    else
        note "ANOMALY chat: gateway answered '$out': $(head -c 300 "$TMP/gateway.json")"
    fi

    post "$DIRECT/stream/v1/chat/completions" "$stream_body" "$TMP/direct.sse" >/dev/null
    direct_events=$(grep -c '^data: ' "$TMP/direct.sse" || true)
    out=$(post "$GATEWAY/v1/chat/completions" "$stream_body" "$TMP/gateway.sse")
    [[ $out == 200* ]] || die "the gateway refused a streaming chat request ($out): \
$(head -c 400 "$TMP/gateway.sse")"
    gw_events=$(grep -c '^data: ' "$TMP/gateway.sse" || true)
    post "$GATEWAY/v1/chat/completions" "$usage_body" "$TMP/gateway-usage.sse" >/dev/null
    gw_usage_events=$(grep -c '^data: ' "$TMP/gateway-usage.sse" || true)
    if [[ $out == "200 text/event-stream"* ]] && ((gw_events == direct_events - 1)) &&
        ((gw_usage_events == direct_events)) && [[ $(tail -c 15 "$TMP/gateway.sse") == *"data: [DONE]"* ]]; then
        note "stream: $direct_events data events upstream; gateway relays $gw_events (usage chunk dropped: the client did not ask) or $gw_usage_events with stream_options.include_usage, ending in [DONE]"
    else
        note "ANOMALY stream: '$out', $gw_events events without / $gw_usage_events with include_usage (upstream $direct_events): $(head -c 300 "$TMP/gateway.sse")"
    fi
}

# ----------------------------------------------------------------------------- wrk runs

RESULTS="$TMP/results.jsonl"
: >"$RESULTS"

run_wrk() { # target scenario conns pin(core or "")
    local target=$1 scenario=$2 conns=$3 pin=$4
    local threads=1 script=bench/wrk/chat.lua url model
    ((conns > 1)) && threads=2
    [[ $scenario == stream ]] && script=bench/wrk/chat_stream.lua
    if [[ $target == direct ]]; then
        model=$MODEL
        url="$DIRECT/v1/chat/completions"
        [[ $scenario == stream ]] && url="$DIRECT/stream/v1/chat/completions"
    else
        url="$GATEWAY/v1/chat/completions"
        model="mock:$MODEL"
        [[ $scenario == stream ]] && model="mockstream:$MODEL"
    fi
    local pin_cmd=()
    [[ -n $pin ]] && pin_cmd=(taskset -c "$pin")
    local out="$TMP/wrk-$target-$scenario-$conns.txt"
    wrk_for() { # duration
        "${pin_cmd[@]}" wrk "-t$threads" "-c$conns" -d "$1" -s "$script" "$url" \
            -- "$model" "$REQ_KEY" "$BILLED_USER"
    }
    run_bg wrk_for "$WARMUP" >"$out.warmup" 2>&1 || die "wrk warm-up failed: $(cat "$out.warmup")"
    local before after
    before=$(py snapshot --gateway "${GW_PID:-0}" --nginx "$NGINX_PID")
    # `time` gives wrk's own CPU, so the report can tell what other processes used.
    { time run_bg wrk_for "$DURATION" >"$out" 2>&1; } 2>"$out.time" ||
        die "wrk failed: $(cat "$out")"
    after=$(py snapshot --gateway "${GW_PID:-0}" --nginx "$NGINX_PID")
    py record --results "$RESULTS" --wrk-output "$out" --scenario "$scenario" --conns "$conns" \
        --target "$target" --before "$before" --after "$after" --wrk-time "$out.time"
}

TIMEFORMAT='%3U %3S'

# A busy machine (other builds, test runs) skews every number: say so up front.
machine_load() { # -> % of one core busy over 1 s
    local a b
    a=$(awk '/^cpu /{print $2 + $3 + $4}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu /{print $2 + $3 + $4}' /proc/stat)
    echo $(((b - a) * 100 / $(getconf CLK_TCK)))
}
load=$(machine_load)
if ((load > 15)); then
    log "WARNING: the machine is already busy ($load% of a core before the runs; top:"
    top -b -n 2 -d 0.5 | awk '/^top -/ {n++} n == 2 && /^ *[0-9]/ && shown++ < 5' >&2 || true
    log "results will be pessimistic; the report lists the background load of each run)"
fi

start_gateway 1 0
sanity_checks
# The realistic path (BENCH_AUTH=key, the default): requests carry a virtual key whose user
# has a budget, so every request is authenticated from the key cache, priced, held against
# the budget and written to the usage log. BENCH_AUTH=master uses the master key instead.
REQ_KEY=$KEY
if [[ $BENCH_AUTH == key ]]; then
    field() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
    admin() { curl -sS --max-time 10 -X POST "$GATEWAY$1" -H "Authorization: Bearer $KEY" \
        -H 'Content-Type: application/json' -d "$2"; }
    budget_id=$(admin /v1/budgets '{"name":"bench","max_budget":1000000}' | field budget_id)
    admin /v1/users "{\"user_id\":\"$BILLED_USER\",\"budget_id\":\"$budget_id\"}" >/dev/null
    REQ_KEY=$(admin /v1/keys "{\"user_id\":\"$BILLED_USER\",\"key_name\":\"bench\"}" | field key)
    log "billing: virtual key of user $BILLED_USER with budget $budget_id, database $BENCH_DB"
fi

log "runs: ${DURATION} each after a ${WARMUP} warm-up"
for scenario in chat stream; do
    for conns in "${CONNS[@]}"; do
        run_wrk direct "$scenario" "$conns" 1
        run_wrk gateway "$scenario" "$conns" 1
    done
done

read -r rss_kb rss_parts < <(py tree-rss "$GW_PID")
RSS="$((rss_kb / 1024)) MB ($rss_parts MB)"
log "gateway RSS: $RSS"

# ----------------------------------------------------------------------------- py-spy profile

PROFILE_MD="$TMP/profile.md"
PROFILE_CONNS=${CONNS[-1]}
PROFILE_RATE=${BENCH_PROFILE_RATE:-100}
PROFILE_RPS=""
if [[ $PROFILE != 0 ]]; then
    server_pid=$(py tree "$GW_PID" | awk '$3 != "uv" {print $1; exit}')
    if uv run --quiet --with py-spy py-spy --version >/dev/null 2>&1; then
        # BENCH_PROFILE_SCENARIO=stream profiles the streaming run instead.
        profile_script=bench/wrk/chat.lua profile_model="mock:$MODEL"
        if [[ ${BENCH_PROFILE_SCENARIO:-chat} == stream ]]; then
            profile_script=bench/wrk/chat_stream.lua profile_model="mockstream:$MODEL"
        fi
        log "py-spy: profiling pid $server_pid during $profile_model at $PROFILE_CONNS conns (${DURATION})"
        secs=${DURATION%s}
        [[ $secs =~ ^[0-9]+$ ]] || secs=10
        taskset -c 1 wrk -t2 "-c$PROFILE_CONNS" -d "$((secs + 2))s" -s "$profile_script" \
            "$GATEWAY/v1/chat/completions" -- "$profile_model" "$REQ_KEY" "$BILLED_USER" \
            >"$TMP/wrk-profile.txt" 2>&1 &
        PROFILE_WRK=$!
        STARTED+=("$PROFILE_WRK")
        sleep 1
        # Blocking sampling (py-spy pauses the process for each sample) gives whole stacks;
        # --gil keeps only samples of the thread holding the GIL (idle driver threads drop out);
        # it slows the gateway, which is why this run is not one of the table's.
        if run_bg taskset -c 1 uv run --quiet --with py-spy py-spy record --pid "$server_pid" \
            --duration "$secs" --rate "$PROFILE_RATE" --format raw --gil \
            --output "$TMP/pyspy.txt" >"$TMP/pyspy.log" 2>&1; then
            py profile "$TMP/pyspy.txt" --top 10 --rate "$PROFILE_RATE" >"$PROFILE_MD"
        else
            log "py-spy failed: $(tail -n 5 "$TMP/pyspy.log")"
            [[ $PROFILE == 1 ]] && die "py-spy profile required (BENCH_PROFILE=1) but failed"
        fi
        wait "$PROFILE_WRK" || true
        forget "$PROFILE_WRK"
        PROFILE_RPS=$(sed -n 's/^BENCH_WRK .*"rps":\([0-9.]*\).*/\1/p' "$TMP/wrk-profile.txt")
        [[ -n $PROFILE_RPS ]] && PROFILE_RPS="$(printf '%.0f' "$PROFILE_RPS") req/s while sampled"
    elif [[ $PROFILE == 1 ]]; then
        die "py-spy is not available ('uv run --with py-spy' failed)"
    else
        log "py-spy not available: skipping the profile"
    fi
fi

stop_gateway

# ----------------------------------------------------------------------------- workers=2

RSS_W2=""
if [[ $WORKERS2 == 1 ]]; then
    w2_conns=${CONNS[-1]}
    # Unpin nginx too: in this run the scheduler shares both cores between everything.
    for pid in $(tree_pids "$NGINX_PID"); do taskset -a -p -c 0-1 "$pid" >/dev/null; done
    start_gateway 2 ""
    run_wrk gateway-w2 chat "$w2_conns" ""
    read -r rss_kb rss_parts < <(py tree-rss "$GW_PID")
    RSS_W2="$((rss_kb / 1024)) MB ($rss_parts MB)"
    stop_gateway
fi

# ----------------------------------------------------------------------------- report

facts=(
    "nproc: $(nproc); CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    "kernel: $(uname -sr)"
    "$(py versions uvicorn uvloop httptools starlette fastapi aiohttp orjson || echo 'python: ?')"
    "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'); wrk: $(wrk -v 2>&1 | awk 'NR==1 {print $2}')"
    "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    "gateway source: $SRC_START"
    "gateway path: auth $BENCH_AUTH, database $BENCH_DB, exact token counts $([[ $BENCH_EXACT_TOKENS == 1 ]] && echo on || echo off)"
)
src_end=$(src_digest)
[[ $src_end == "$SRC_START" ]] ||
    note "ANOMALY: src/ changed during the benchmark (start: $SRC_START; end: $src_end)"
args=(--results "$RESULTS" --duration "$DURATION" --rss "$RSS" --rss-w2 "$RSS_W2"
    --w2-conns "${CONNS[-1]}" --profile "$PROFILE_MD" --profile-rps "$PROFILE_RPS" --out "$OUT_MD")
for n in "${NOTES[@]}"; do args+=(--note "$n"); done
for f in "${facts[@]}"; do args+=(--fact "$f"); done
echo
py table "${args[@]}"
echo
log "written to $OUT_MD"
