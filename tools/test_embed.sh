#!/usr/bin/env bash
# Embedding, as a user of the installed library sees it (ctest runs this as embed_installed):
#   1. cmake --install BUILD_DIR into a temporary prefix, and check what it put there;
#   2. build examples/embed.c against that prefix with pkg-config, and with find_package;
#   3. run the pkg-config build from a directory without lua/ or scripts/ (so the installed
#      data directory is found), check it serves /healthz while the host's own timer ticks,
#      then stop it with a client session open and check the host's loop closed cleanly
#      (uv_loop_close returned 0; under ASan, nothing leaked).
# usage: tools/test_embed.sh BUILD_DIR     (compiler flags for the example: EMBED_CFLAGS)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:?usage: tools/test_embed.sh BUILD_DIR}" && pwd)"
WORK=$(mktemp -d)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$WORK/out" ] && sed 's/^/  | /' "$WORK/out" >&2; exit 1; }
ok() { echo "ok: $*"; }

# wait_for WHAT CMD...: polls CMD until it succeeds, for at most 20 s
wait_for() {
    local what=$1 i
    shift
    for ((i = 0; i < 400; i++)); do
        "$@" && return 0
        kill -0 "$PID" 2>/dev/null || fail "embed exited while waiting for $what"
        sleep 0.05
    done
    fail "timed out waiting for $what"
}

PREFIX="$WORK/prefix"
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
LIBDIR=$(dirname "$(find "$PREFIX" -name 'libchatrt.so' | head -1)")
[ -n "$LIBDIR" ] || fail "no libchatrt.so installed"
for f in include/chat.h share/chatd/lua share/chatd/scripts share/chatd/web bin/chatd; do
    [ -e "$PREFIX/$f" ] || fail "$f was not installed"
done
for f in libchatrt.a libchatrt.so.0 pkgconfig/chatrt.pc cmake/chatrt/chatrtConfig.cmake \
    cmake/chatrt/chatrtConfigVersion.cmake cmake/chatrt/chatrtTargets.cmake; do
    [ -e "$LIBDIR/$f" ] || fail "$f was not installed in $LIBDIR"
done
soname=$(objdump -p "$LIBDIR/libchatrt.so" | awk '/SONAME/ {print $2}')
[ "$soname" = libchatrt.so.0 ] || fail "SONAME is '$soname', not libchatrt.so.0"
if nm -D --defined-only "$LIBDIR/libchatrt.so" | grep -q ' chat__\| chat_run_lua'; then
    fail "libchatrt.so exports internal symbols"
fi
ok "installed header, libraries (SONAME $soname), chatrt.pc, CMake package, data dir"
# a sanitizer build of the library needs the same sanitizers in the program that loads it
if [ -z "${EMBED_CFLAGS:-}" ] && objdump -p "$LIBDIR/libchatrt.so" | grep -q 'NEEDED.*libasan'; then
    EMBED_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer"
fi

# shellcheck disable=SC2086  # EMBED_CFLAGS and pkg-config output are word lists
{
    export PKG_CONFIG_PATH="$LIBDIR/pkgconfig"
    cc -std=c11 -Wall -Wextra -Werror ${EMBED_CFLAGS:-} -o "$WORK/embed" "$ROOT/examples/embed.c" \
        $(pkg-config --cflags --libs chatrt) -Wl,-rpath,"$LIBDIR"
}
ok "examples/embed.c builds with pkg-config"
cmake -S "$ROOT/examples" -B "$WORK/build-cmake" -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DCMAKE_C_FLAGS="${EMBED_CFLAGS:-}" >/dev/null
cmake --build "$WORK/build-cmake" >/dev/null
ok "examples/embed.c builds with find_package(chatrt)"

PORT=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
mkdir "$WORK/run"
cd "$WORK/run"
"$WORK/embed" "127.0.0.1:$PORT" >"$WORK/out" 2>&1 &
PID=$!
wait_for "the listening log line" grep -q '"event":"listening"' "$WORK/out"
grep -q "\"scripts_dir\":\"$(realpath "$PREFIX/share/chatd/scripts")\"" "$WORK/out" ||
    fail "the runtime did not find the installed scripts"
grep -q '_missing' "$WORK/out" && fail "a folder was reported missing"
ok "the runtime logs through the host's sink and found the installed lua/ and scripts/"

body=$(curl -fsS "http://127.0.0.1:$PORT/healthz") || fail "/healthz did not answer 200"
ticks_at_healthz=$(grep -c '^host: tick' "$WORK/out" || true)
ok "/healthz: $body"
more_ticks() { [ "$(grep -c '^host: tick' "$WORK/out" || true)" -ge $((ticks_at_healthz + 3)) ]; }
wait_for "three more ticks of the host's timer" more_ticks
ok "the host's timer ticks beside the runtime"

# a client session open while the host stops: the close waits for it to end
open=$(curl -fsS "http://127.0.0.1:$PORT/socket.io/?EIO=4&transport=polling") ||
    fail "the Engine.IO handshake failed"
grep -q '"sid"' <<<"$open" || fail "no sid in the handshake: $open"
ok "an Engine.IO polling session is open"

kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=
grep -q '^host: runtime closed' "$WORK/out" || fail "the close callback did not run"
grep -q '^host: uv_loop_close: ok' "$WORK/out" || fail "the host's loop did not close cleanly"
[ "$rc" -eq 0 ] || fail "embed exited with $rc"
ok "stopped: close callback ran, uv_loop_close returned 0, exit 0"
