#!/usr/bin/env bash
# The real servers the scale-out tests run against, on fixed loopback test ports:
#   redis-server (Debian's)                        127.0.0.1:$CHAT_TEST_REDIS_PORT (16379)
#   FerretDB v1.24.2 with its SQLite backend       127.0.0.1:$CHAT_TEST_MONGO_PORT (27018)
#
#   tools/services.sh start    installs what is missing, (re)starts both with empty data,
#                              waits until both answer, prints the export line for the tests:
#                                eval "$(tools/services.sh start)"
#   tools/services.sh env      prints the export line again
#   tools/services.sh status   says whether each one answers
#   tools/services.sh stop     stops both and deletes their data
#
# Only the export line goes to stdout; progress goes to stderr.
#
# FerretDB is built from its Go module with the Go toolchain found on the machine (Go >= 1.24
# is needed: FerretDB 1.24.2's go.mod says "go 1.24"; Debian 12's golang-go is 1.19 and cannot
# build it). A plain `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2` produces a
# binary that panics at start: the module zip lacks the generated build/version/version.txt.
# So this script builds from the same module source (fetched by `go mod download`, checksums
# verified by go) after writing that one file, as FerretDB's own build does.
set -euo pipefail

FERRETDB_VERSION=v1.24.2
REDIS_PORT=${CHAT_TEST_REDIS_PORT:-16379}
MONGO_PORT=${CHAT_TEST_MONGO_PORT:-27018}
STATE_DIR=${CHAT_SERVICES_DIR:-${TMPDIR:-/tmp}/chatd-services-$(id -u)}
BIN_DIR=${CHAT_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chatd/bin}
FERRETDB_BIN=$BIN_DIR/ferretdb
WAIT_S=${CHAT_SERVICES_WAIT_S:-30}

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ---- installs ---------------------------------------------------------------------------

ensure_redis() {
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
    log "installing redis-server (Debian package)"
    as_root apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
        redis-server >/dev/null || die "apt-get install redis-server failed"
    # the package starts a system instance on 6379; ours runs on its own port and data dir
}

find_go() {
    local g
    for g in "${GO:-}" "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
        [ -n "$g" ] && [ -x "$g" ] && { echo "$g"; return 0; }
    done
    return 1
}

# go1.26.8 -> 126 (major*100 + minor), enough to compare against 1.24
go_version_num() {
    "$1" env GOVERSION 2>/dev/null | sed -nE 's/^go([0-9]+)\.([0-9]+).*/\1 \2/p' |
        awk '{ print $1 * 100 + $2 }'
}

ferretdb_ok() {
    local v
    [ -x "$FERRETDB_BIN" ] || return 1
    v=$("$FERRETDB_BIN" --version 2>/dev/null) || return 1
    grep -qx "version: $FERRETDB_VERSION" <<<"$v"
}

ensure_ferretdb() {
    ferretdb_ok && return 0
    local go num
    go=$(find_go) || die "no Go toolchain found (looked for go on PATH, /usr/local/go/bin/go); \
FerretDB $FERRETDB_VERSION needs Go >= 1.24 to build (Debian 12's golang-go is 1.19, too old)"
    num=$(go_version_num "$go")
    [ "${num:-0}" -ge 124 ] || die "$go is $("$go" env GOVERSION); FerretDB $FERRETDB_VERSION \
needs Go >= 1.24 to build (go.mod: go 1.24). Install a newer Go toolchain and retry"
    log "building FerretDB $FERRETDB_VERSION with $("$go" env GOVERSION) into $BIN_DIR (a few minutes, once)"
    mkdir -p "$BIN_DIR"
    local src dir
    dir=$("$go" mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" |
        sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')
    [ -n "$dir" ] && [ -d "$dir" ] || die "go mod download github.com/FerretDB/FerretDB@$FERRETDB_VERSION failed"
    src=$(mktemp -d)
    # the module cache is read-only; build a writable copy with the generated version file
    cp -r "$dir/." "$src/"
    chmod -R u+w "$src"
    echo "$FERRETDB_VERSION" >"$src/build/version/version.txt"
    (cd "$src" && GOFLAGS=-mod=mod "$go" build -trimpath -buildvcs=false \
        -o "$FERRETDB_BIN.tmp" ./cmd/ferretdb) || { rm -rf "$src"; die "building FerretDB failed"; }
    rm -rf "$src"
    mv "$FERRETDB_BIN.tmp" "$FERRETDB_BIN"
    ferretdb_ok || die "the built $FERRETDB_BIN does not report $FERRETDB_VERSION"
}

# ---- processes --------------------------------------------------------------------------

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {
    local f=$1 pid i
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

redis_answers() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

# A MongoDB wire ping: one OP_MSG {ping: 1, $db: "admin"}; true when the reply is {ok: 1.0}.
# (`ferretdb ping` only probes when given --setup-database, which needs the new auth.)
ferretdb_answers() {
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "\x33\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00\x00\x00\x00\x00\x00\x1e\x00\x00\x00\x10ping\x00\x01\x00\x00\x00\x02\$db\x00\x06\x00\x00\x00admin\x00\x00" >&3
        head -c 38 <&3 | od -An -tx1 | tr -d " \n" | grep -q "016f6b00000000000000f03f"
    ' _ "$MONGO_PORT" 2>/dev/null
}

start_redis() {
    mkdir -p "$STATE_DIR/redis"
    port_busy "$REDIS_PORT" && die "127.0.0.1:$REDIS_PORT is taken by another process; \
set CHAT_TEST_REDIS_PORT to a free port"
    # setsid: the server outlives this script and the terminal; its pid is ours to stop
    setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
        --dir "$STATE_DIR/redis" --logfile "$STATE_DIR/redis.log" --daemonize no \
        </dev/null >/dev/null 2>&1 &
    echo $! >"$STATE_DIR/redis.pid"
}

start_ferretdb() {
    mkdir -p "$STATE_DIR/ferretdb/data"
    port_busy "$MONGO_PORT" && die "127.0.0.1:$MONGO_PORT is taken by another process; \
set CHAT_TEST_MONGO_PORT to a free port"
    setsid "$FERRETDB_BIN" --handler=sqlite --sqlite-url="file:$STATE_DIR/ferretdb/data/" \
        --state-dir="$STATE_DIR/ferretdb" --listen-addr="127.0.0.1:$MONGO_PORT" \
        --debug-addr=- --telemetry=disable --log-level=warn \
        </dev/null >"$STATE_DIR/ferretdb.log" 2>&1 &
    echo $! >"$STATE_DIR/ferretdb.pid"
}

wait_for() { # wait_for NAME CHECK PIDFILE LOG
    local name=$1 check=$2 pidfile=$3 logf=$4 deadline=$((SECONDS + WAIT_S))
    until "$check"; do
        if ! pid_alive "$pidfile"; then
            tail -20 "$logf" >&2 2>/dev/null || true
            die "$name exited during start-up (log above: $logf)"
        fi
        [ "$SECONDS" -lt "$deadline" ] || die "$name did not answer within ${WAIT_S}s (log: $logf)"
        sleep 0.1
    done
}

print_env() {
    echo "export CHAT_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0" \
        "CHAT_TEST_MONGO_URI=mongodb://127.0.0.1:$MONGO_PORT/chatd_test" \
        "CHAT_TEST_FERRETDB_BIN=$FERRETDB_BIN"
}

cmd_stop() {
    stop_pidfile "$STATE_DIR/ferretdb.pid"
    stop_pidfile "$STATE_DIR/redis.pid"
    rm -rf "$STATE_DIR"
}

cmd_start() {
    ensure_redis
    ensure_ferretdb
    cmd_stop # a fresh start: no data from an earlier run
    mkdir -p "$STATE_DIR"
    start_redis
    start_ferretdb
    wait_for redis-server redis_answers "$STATE_DIR/redis.pid" "$STATE_DIR/redis.log"
    wait_for FerretDB ferretdb_answers "$STATE_DIR/ferretdb.pid" "$STATE_DIR/ferretdb.log"
    log "redis-server on 127.0.0.1:$REDIS_PORT, FerretDB $FERRETDB_VERSION (SQLite) on" \
        "127.0.0.1:$MONGO_PORT, data in $STATE_DIR"
    print_env
}

cmd_status() {
    local rc=0
    if redis_answers; then log "redis-server answers on $REDIS_PORT"; else log "redis-server: down"; rc=1; fi
    if ferretdb_ok && ferretdb_answers; then log "FerretDB answers on $MONGO_PORT"; else log "FerretDB: down"; rc=1; fi
    return $rc
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
env) print_env ;;
status) cmd_status ;;
*)
    echo "usage: tools/services.sh start|stop|env|status" >&2
    exit 2
    ;;
esac
