#!/usr/bin/env bash
# The benchmark command: chatd against the reference Node.js Socket.IO 4 server, same
# scenarios, same machine, same run; every figure as a ratio chatd/reference.
#
#   bench/run.sh                 # every scenario: idle fanout100 fanout1000 chatmix persist
#   bench/run.sh fanout100 idle  # some of them
#   BENCH_QUICK=1 bench/run.sh   # small and short: checks the machinery, not the figures
#                                # (its output goes to build-bench/bench-quick/)
#   BENCH_BEFORE=<git rev> bench/run.sh  # also runs chatd as built from that commit
#                                # ("chatd-before"), for the before/after column of the targets
#
# On a machine with two or more cores the server runs pinned to one core and chat-bench to
# another (taskset; the same cores for every server: BENCH_SERVER_CPU, BENCH_CLIENT_CPU,
# BENCH_PIN=0 to turn it off), so a server is never starved by the load generator and each
# side's CPU is its own; server CPU time per delivery is the figure the load does not move.
#
# It installs what is missing (Debian packages, the reference's npm packages with `npm ci`),
# builds chatd and chat-bench in build-bench/, starts each server itself on a free loopback
# port with a fresh data directory, runs bench/chat-bench against it, stops it, and writes:
#   docs/bench/results/<scenario>-<server>.json   what chat-bench printed, one per run
#   docs/bench/results/machine.json               the machine and its load during the runs
#   docs/bench/results.md                         the tables and ratios (bench/report.py)
#   docs/bench/*.png                              the plots (gnuplot)
#   BENCHMARKS.md                                 its tables, between the results markers
# Every run is bounded (chat-bench --max-secs) and targets 127.0.0.0/8 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
QUICK=${BENCH_QUICK:-0}
OUT=$ROOT/docs/bench
DOC=$ROOT/BENCHMARKS.md
if [ "$QUICK" = 1 ]; then
    OUT=$BUILD/bench-quick # a machinery check leaves the recorded figures alone
    DOC=""
fi
RES=$OUT/results
REF=$ROOT/bench/reference
WORK=$(mktemp -d /tmp/chat-bench.XXXXXX)
SECRET="bench-secret-0123456789abcdef0123456789abcdef"
ALL=(idle fanout100 fanout1000 chatmix persist)
SCENARIOS=("$@")
BEFORE=${BENCH_BEFORE:-}
SERVER_PIN=() CLIENT_PIN=()
if [ "${BENCH_PIN:-1}" != 0 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    SERVER_PIN=(taskset -c "${BENCH_SERVER_CPU:-1}")
    CLIENT_PIN=(taskset -c "${BENCH_CLIENT_CPU:-0}")
fi
[ ${#SCENARIOS[@]} -eq 0 ] && SCENARIOS=("${ALL[@]}")
SERVER_PID=""

say() { printf '\n==> %s\n' "$*" >&2; }

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---- what is needed

install_deps() {
    . tools/deps.sh
    chat_install_deps build
    local missing=() p
    for p in gnuplot-nox libuv1-dev libjansson-dev libssl-dev python3; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

build() {
    say "building chatd, chat-bench and policy-bench in ${BUILD#$ROOT/}"
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    ninja -C "$BUILD" chatd chat-bench policy-bench >/dev/null
    if [ -n "$BEFORE" ]; then
        # the same build of an earlier commit, from a throwaway worktree
        local src=$BUILD-before.src # a fixed path: the build directory's cache names it
        say "building chatd at $BEFORE in ${BUILD#$ROOT/}-before"
        git worktree remove --force "$src" >/dev/null 2>&1 || rm -rf "$src"
        git worktree prune
        git worktree add --detach -f "$src" "$BEFORE" >/dev/null
        # a build directory configured from another source tree: start it again
        grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$src" "$BUILD-before/CMakeCache.txt" 2>/dev/null ||
            rm -rf "$BUILD-before"
        cmake -S "$src" -B "$BUILD-before" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
        ninja -C "$BUILD-before" chatd >/dev/null
        git worktree remove --force "$src" >/dev/null 2>&1 || true
    fi
}

# npm ci only when the lock changed; better-sqlite3 is compiled here against the installed
# node's headers (npm does not run install scripts it has not been told to trust).
install_reference() {
    local stamp=$REF/node_modules/.bench-lock-sha
    local want
    want=$(sha256sum "$REF/package-lock.json" | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing the reference's npm packages (npm ci)"
        (cd "$REF" && npm ci --ignore-scripts --no-audit --no-fund >/dev/null)
    fi
    if ! (cd "$REF" && node -e 'new (require("better-sqlite3"))(":memory:")' 2>/dev/null); then
        say "compiling better-sqlite3 for node $(node --version) (about 2 minutes)"
        local gyp nodedir=/usr
        gyp=$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js
        [ -f "$nodedir/include/node/node.h" ] || nodedir=""
        (cd "$REF/node_modules/better-sqlite3" &&
            node "$gyp" rebuild --release ${nodedir:+--nodedir=$nodedir} >"$WORK/gyp.log" 2>&1) ||
            { tail -20 "$WORK/gyp.log" >&2; echo "better-sqlite3 did not build" >&2; exit 1; }
    fi
    echo "$want" >"$stamp"
}

# ---- servers

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_healthy() { # port pid log
    local i
    for i in $(seq 1 100); do
        if ! kill -0 "$2" 2>/dev/null; then
            echo "the server exited at start:" >&2
            tail -5 "$3" >&2
            exit 1
        fi
        if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$1/healthz', timeout=1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "the server did not answer /healthz within 10 s" >&2
    exit 1
}

# start_server chatd|ref PING_INTERVAL_MS: sets SERVER_PID and PORT. chatd runs its default
# Lua policies (scripts/); only the rate limits and the per-address connection bounds are
# raised so they refuse no benchmark traffic (chat-bench opens thousands of connections from
# 4 addresses: max_sessions_per_ip's 1024 capped them at 4,096; max_connections keeps its default: the open-file limit less a reserve).
start_server() {
    PORT=$(free_port)
    local data="$WORK/data-$1-$RANDOM" log="$WORK/$1.log"
    mkdir -p "$data"
    local bin=$BUILD/chatd
    [ "$1" = chatd-before ] && bin=$BUILD-before/chatd
    if [ "${1%%-*}" = chatd ]; then
        # variants of the persist scenario: chatd-full (synchronous=FULL), chatd-mongo and
        # chatd-mongo-single (MongoDB at $BENCH_MONGO_URI, batched or one insert per call)
        local -a extra=()
        case $1 in
        chatd-full) extra=(CHAT_SQLITE_SYNCHRONOUS=full) ;;
        chatd-mongo) extra=("CHAT_MONGO_URI=$BENCH_MONGO_URI") ;;
        chatd-mongo-single) extra=("CHAT_MONGO_URI=$BENCH_MONGO_URI" CHAT_STORE_BATCH_MAX=1) ;;
        esac
        env CHAT_LISTEN=127.0.0.1:$PORT CHAT_DATA_DIR=$data CHAT_JWT_SECRET=$SECRET \
            CHAT_BCRYPT_COST=4 CHAT_LOG_LEVEL=warn CHAT_PING_INTERVAL_MS=$2 \
            CHAT_PING_TIMEOUT_MS=20000 CHAT_RATELIMIT_USER=1000000000 \
            CHAT_RATELIMIT_IP=1000000000 CHAT_MAX_CONNECTIONS_PER_IP=1000000 \
            CHAT_MAX_UNCONNECTED_SESSIONS_PER_IP=1000000 CHAT_MAX_UNCONNECTED_SESSIONS=1000000 \
            CHAT_REGISTER_PER_IP=1000000000 CHAT_MAX_SESSIONS_PER_IP=1000000 \
            "${extra[@]}" "${SERVER_PIN[@]}" "$bin" >"$log" 2>&1 &
    else
        REF_LISTEN=127.0.0.1:$PORT REF_DATA_DIR=$data REF_PING_INTERVAL_MS=$2 \
            REF_PING_TIMEOUT_MS=20000 "${SERVER_PIN[@]}" node "$REF/server.js" >"$log" 2>&1 &
    fi
    SERVER_PID=$!
    wait_healthy "$PORT" "$SERVER_PID" "$log"
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# Busy CPU of the whole machine over one second, in % of one core.
machine_busy() {
    local a b
    a=$(head -1 /proc/stat)
    sleep 1
    b=$(head -1 /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x); split(b, y)
        busy = (y[2]+y[3]+y[4]+y[7]+y[8]+y[9]) - (x[2]+x[3]+x[4]+x[7]+x[8]+x[9])
        total = busy + (y[5]+y[6]) - (x[5]+x[6])
        printf "%d", (total > 0 ? busy / total * 200 : 0) }'
}

# The machine is shared (other builds and tests): wait, bounded, for it to be quiet, so the
# two servers are measured under the same conditions. chat-bench records what the rest of
# the machine used during every step either way ("others" CPU).
wait_quiet() {
    local waited=0 busy
    while :; do
        busy=$(machine_busy)
        [ "$busy" -le "${BENCH_QUIET_PCT:-30}" ] && return 0
        if [ "$waited" -ge "${BENCH_QUIET_WAIT:-90}" ]; then
            echo "    the machine is still busy (${busy}% of a core): going on" >&2
            return 0
        fi
        [ "$waited" -eq 0 ] && echo "    waiting for a quiet machine (now ${busy}% of a core busy)" >&2
        sleep 4
        waited=$((waited + 5))
    done
}

# run_one SCENARIO SERVER PING_MS -- chat-bench options...
run_one() {
    local scenario=$1 server=$2 ping=$3
    shift 4
    local out="$RES/$scenario-$server.json"
    say "$scenario on $server (load average $(loadavg))"
    wait_quiet
    start_server "$server" "$ping"
    local before after up_before up_after
    before=$(loadavg)
    up_before=$(uptime)
    "${CLIENT_PIN[@]}" "$BUILD/bench/chat-bench" --target "127.0.0.1:$PORT" --server-pid "$SERVER_PID" \
        --label "$server" "$@" >"$WORK/out.txt" 2> >(tee "$RES/$scenario-$server.log" >&2) || true
    after=$(loadavg)
    up_after=$(uptime)
    stop_server
    head -n1 "$WORK/out.txt" >&2
    tail -n1 "$WORK/out.txt" | python3 -c '
import json, sys
r = json.load(sys.stdin)
r.update(scenario=sys.argv[2], server=sys.argv[3], loadavg_before=sys.argv[4],
         loadavg_after=sys.argv[5], uptime_before=sys.argv[6], uptime_after=sys.argv[7],
         pinned=sys.argv[8], args=sys.argv[9:])
json.dump(r, open(sys.argv[1], "w"))
' "$out" "$scenario" "$server" "$before" "$after" "$up_before" "$up_after" \
        "${SERVER_PIN[*]:-no} / ${CLIENT_PIN[*]:-no}" "$@" ||
        echo "chat-bench printed no JSON for $scenario on $server" >&2
}

# ---- the scenarios: each runs chatd, then the reference, with the same options

scenario() {
    local s=$1 ping=25000
    local -a o
    local q=$QUICK
    case $s in
    idle)
        # hold connections, growing; RSS per connection and heartbeat CPU at each step.
        # The ping interval is short (2 s) so the heartbeat work is visible.
        ping=2000
        if [ "$q" = 1 ]; then o=(--conns 200,500 --step-secs 3); else
            o=(--conns 1000,2500,5000,10000,15000,19900 --step-secs 10); fi
        o+=(--settle-secs 3 --warmup-secs 0 --drain-secs 0)
        ;;
    fanout100)
        # rooms of 100: 5 senders in each; a fixed rate, then as fast as the server goes
        # with 20000 deliveries in flight
        if [ "$q" = 1 ]; then o=(--conns 200 --rate 50,max --step-secs 3); else
            o=(--conns 2000 --rate 200,max --step-secs 10); fi
        o+=(--room-size 100 --senders-per-room 5 --window 20000)
        ;;
    fanout1000)
        if [ "$q" = 1 ]; then o=(--conns 1000 --rate 5,max --step-secs 3); else
            o=(--conns 2000 --rate 20,max --step-secs 10); fi
        o+=(--room-size 1000 --senders-per-room 10 --window 20000)
        ;;
    chatmix)
        # rooms of 10, every user sends 1 message/s; users are added until p99 passes 50 ms
        if [ "$q" = 1 ]; then o=(--conns 200,400 --step-secs 3); else
            o=(--conns 250,500,1000,2000,3000,4000,5000,6000,8000,10000,12000,15000,19000
                --step-secs 6); fi
        o+=(--room-size 10 --user-rate 1 --stop-p99-ms 50)
        ;;
    persist)
        # acknowledged message:send per second: rooms of one, so nothing is delivered and
        # every send is a store write; 64 connections with 16 sends in flight each. Besides
        # chatd and the reference: chatd with synchronous=FULL (power-loss durable acks), and
        # with BENCH_MONGO_URI set (e.g. the FerretDB of tools/services.sh), chatd on MongoDB
        # with batched (insertMany) and single inserts.
        if [ "$q" = 1 ]; then o=(--step-secs 3); else o=(--step-secs 10); fi
        o+=(--conns 64 --room-size 1 --rate max --inflight 16 --window 0 --max-secs 240)
        run_one "$s" chatd-full "$ping" -- "${o[@]}"
        if [ -n "${BENCH_MONGO_URI:-}" ]; then
            run_one "$s" chatd-mongo "$ping" -- "${o[@]}"
            run_one "$s" chatd-mongo-single "$ping" -- "${o[@]}"
        fi
        ;;
    *)
        echo "unknown scenario $s (known: ${ALL[*]})" >&2
        exit 2
        ;;
    esac
    o+=(--max-secs 240)
    run_one "$s" chatd "$ping" -- "${o[@]}"
    if [ -n "$BEFORE" ] && [ "$s" != persist ]; then
        run_one "$s" chatd-before "$ping" -- "${o[@]}"
    fi
    run_one "$s" ref "$ping" -- "${o[@]}"
}

# The Lua policies' cost per message (bench/policy_bench.c), pinned like the servers.
policy_cost() {
    say "Lua policy cost per message (policy-bench)"
    local n=20000
    [ "$QUICK" = 1 ] && n=2000
    "${SERVER_PIN[@]}" "$BUILD/bench/policy-bench" "$n" "$ROOT/scripts" "$ROOT/lua" \
        >"$WORK/policy.txt" 2>&1 || { cat "$WORK/policy.txt" >&2; return 0; }
    head -n -1 "$WORK/policy.txt" >&2
    tail -n1 "$WORK/policy.txt" >"$RES/policy-cost.json"
}

machine() {
    python3 - "$RES/machine.json" "$QUICK" "$BEFORE" \
        "server: ${SERVER_PIN[*]:-not pinned}, chat-bench: ${CLIENT_PIN[*]:-not pinned}" <<'EOF'
import json, os, platform, re, subprocess, sys
cpu = open("/proc/cpuinfo").read()
model = re.search(r"model name\s*:\s*(.*)", cpu)
mem = re.search(r"MemTotal:\s*(\d+)", open("/proc/meminfo").read())
def out(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""
json.dump({
    "nproc": os.cpu_count(),
    "cpu_model": model.group(1) if model else "?",
    "mem_gib": round(int(mem.group(1)) / 1048576, 1) if mem else None,
    "kernel": platform.release(),
    "os": out(". /etc/os-release && echo $PRETTY_NAME"),
    "node": out("node --version"),
    "socketio": out("node -p \"require('./bench/reference/node_modules/socket.io/package.json').version\""),
    "nofile_limit": out("ulimit -n") + " soft / " + out("ulimit -Hn") + " hard",
    "port_range": out("cat /proc/sys/net/ipv4/ip_local_port_range").replace("\t", "-"),
    "loadavg_start": open("/proc/loadavg").read().split()[:3],
    "date": out("date -u +%Y-%m-%dT%H:%MZ"),
    "chatd_commit": out("git rev-parse --short HEAD") + (" (+ uncommitted changes)" if out("git status --porcelain runtime") else ""),
    "before_commit": out("git rev-parse --short " + sys.argv[3]) if sys.argv[3] else "",
    "pinned": sys.argv[4],
    "uptime_start": out("uptime"),
    "quick": sys.argv[2] == "1",
}, open(sys.argv[1], "w"), indent=1)
EOF
}

install_deps
build
install_reference
[ "$QUICK" = 1 ] && rm -rf "$RES" # a machinery check starts clean
mkdir -p "$RES"
# a "before" column only from this run's BENCH_BEFORE
[ -n "$BEFORE" ] || rm -f "$RES"/*-chatd-before.json "$RES"/*-chatd-before.log
# raise the descriptor limit as far as this process may (the hard limit caps it)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
machine
say "checking chat-bench's WebSocket reader (fragments, interleaved pings, chunked HTTP)"
node "$REF/fragments_test.js" "$BUILD/bench/chat-bench" 2>/dev/null | tail -n1 >&2
for s in "${SCENARIOS[@]}"; do
    scenario "$s"
done
policy_cost
say "tables and plots"
python3 bench/report.py "$RES" "$OUT" $DOC >/dev/null
echo "results: ${OUT#$ROOT/}/results.md, plots: ${OUT#$ROOT/}/*.png" >&2
