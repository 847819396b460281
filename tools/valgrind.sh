#!/usr/bin/env bash
# Runs e2e files with every chatd they start under valgrind memcheck, and fails on any
# memcheck error (invalid read/write, use of uninitialised values, ...) or definite/indirect
# leak in any of those processes.
#
#   tools/valgrind.sh [file ...]      e.g. tools/valgrind.sh messages rooms binary
#
# Files are names under spec/e2e/ with or without ".test.js" (default: a set that needs no
# fixed ports). Too slow for CI (valgrind is ~30x slower): it is not part of tools/test.sh.
#
# Settings (environment):
#   VG_BUILD_DIR   plain debug build to use (default build-vg; configured and built if missing:
#                  cmake -S . -B build-vg -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCHAT_JEMALLOC=OFF)
#   VG_LOG_DIR     one log per chatd pid, chatd.<pid>.log (default /tmp/vg; emptied first)
#   VG_SUPP        an extra suppressions file (tools/valgrind.supp is always used)
#   E2E_*          helpers.js's timeouts; raised here (valgrind starts and runs slowly)
# Tests that time out under valgrind are reported by node as usual; only memcheck reports
# decide this script's verdict about memory, the node exit codes are printed alongside.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${VG_BUILD_DIR:-$ROOT/build-vg}
LOGDIR=${VG_LOG_DIR:-/tmp/vg}
SUPP=$ROOT/tools/valgrind.supp

command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed" >&2; exit 2; }
# memcheck sees the C library's malloc only: no jemalloc
if [ ! -x "$BUILD/chatd" ] || ! grep -q '^CHAT_JEMALLOC:BOOL=OFF' "$BUILD/CMakeCache.txt"; then
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCHAT_JEMALLOC=OFF >&2 || exit 2
fi
nice cmake --build "$BUILD" -j2 --target chatd chatctl >&2 || exit 2
if [ ! -d "$ROOT/spec/e2e/node_modules" ]; then
    (cd "$ROOT/spec/e2e" && npm ci --no-audit --no-fund) >&2 || exit 2
fi

mkdir -p "$LOGDIR"
rm -f "$LOGDIR"/chatd.*.log
WRAP=$LOGDIR/chatd-valgrind
SUPP_ARGS="--suppressions=$SUPP"
[ -n "${VG_SUPP:-}" ] && SUPP_ARGS="$SUPP_ARGS --suppressions=$VG_SUPP"
# exec keeps one pid: helpers.js's SIGTERM reaches chatd (valgrind runs it in-process) and
# --error-exitcode turns any report into a non-zero exit that stopServer() already rejects.
cat >"$WRAP" <<EOF
#!/bin/sh
exec valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect \\
    --show-leak-kinds=definite,indirect --error-exitcode=99 --track-origins=yes \\
    --num-callers=30 $SUPP_ARGS --log-file=$LOGDIR/chatd.%p.log "$BUILD/chatd" "\$@"
EOF
chmod +x "$WRAP"
# chatctl.test.js looks for chatctl beside CHATD_BIN (chatctl itself is not run under valgrind)
ln -sf "$BUILD/chatctl" "$LOGDIR/chatctl"

export CHATD_BIN=$WRAP
export E2E_WAIT_MS=${E2E_WAIT_MS:-30000}
export E2E_START_TIMEOUT_MS=${E2E_START_TIMEOUT_MS:-120000}
export E2E_STOP_TIMEOUT_MS=${E2E_STOP_TIMEOUT_MS:-120000}
export E2E_TEST_TIMEOUT_MS=${E2E_TEST_TIMEOUT_MS:-600000}

if [ $# -eq 0 ]; then
    set -- messages rooms binary scripting scripting_limits protocol_args protocol_auth \
        http_pipelining http_keepalive limits engineio lifecycle rest_auth auth_limits
fi

node_failed=()
for f in "$@"; do
    f=${f%.test.js}
    echo "== $f" >&2
    if ! (cd "$ROOT" && node --test --test-concurrency=1 "spec/e2e/$f.test.js") \
        >"$LOGDIR/node.$f.log" 2>&1; then
        node_failed+=("$f")
    fi
    grep -E '^# (tests|pass|fail)' "$LOGDIR/node.$f.log" | tr '\n' ' ' >&2
    echo >&2
done

# A log with a report has a non-empty body (--quiet prints nothing else but the summary
# lines that only appear with errors).
bad=0
logs=0
for l in "$LOGDIR"/chatd.*.log; do
    [ -e "$l" ] || continue
    logs=$((logs + 1))
    if grep -qE 'Invalid (read|write|free)|uninitialised|Mismatched free|(definitely|indirectly) lost in|Syscall param|overlap|fishy value' "$l"; then
        bad=$((bad + 1))
        echo "---- $l" >&2
        cat "$l" >&2
    fi
done
echo "valgrind.sh: ${logs} chatd processes, ${bad} with memcheck reports;" \
    "node failures in: ${node_failed[*]:-none} (logs in $LOGDIR)" >&2
[ "$bad" -eq 0 ]
