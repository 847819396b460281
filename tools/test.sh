#!/usr/bin/env bash
# shellcheck disable=SC2317  # the stage functions are called through run_stage
# The one command that installs what is missing and runs every test of chatd:
#   1. system packages (apt, only the missing ones; as root or through sudo)
#   2. configure and build with AddressSanitizer + UBSan and -Werror (build-asan/)
#   3. C unit tests (ctest), and examples/embed.c built against the installed tree
#   4. Lua specs: busted inside build-asan/chatd --run, so the specs use the real bindings
#   4b. fuzzing: each libFuzzer target in runtime/fuzz for CHAT_FUZZ_SECONDS (60) with clang
#   5. end-to-end test dependencies (npm ci, the python-socketio venv; only when needed)
#   6. end-to-end tests against build-asan/chatd (node --test), then a benchmark smoke run
#      (BENCH_QUICK bench/run.sh: the machinery works; no thresholds; CHAT_TEST_BENCH=0 skips)
#   7. containers: the image, the compose cluster and deploy/k8s in podman
#      (tools/test-containers.sh; "skipped" only where podman cannot run at all)
# A summary is printed at the end and written to artifacts/test-summary.txt.
# Exits non-zero if any stage fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUILD_DIR="$ROOT/build-asan"
E2E_DIR="$ROOT/spec/e2e"
ART_DIR="$ROOT/artifacts"
SUMMARY="$ART_DIR/test-summary.txt"
E2E_TAP="$ART_DIR/e2e.tap"
CTEST_LOG="$ART_DIR/ctest.log"
SPECS_LOG="$ART_DIR/lua-specs.log"
SERVICES_ENV="$ART_DIR/services.env"
mkdir -p "$ART_DIR"

. "$ROOT/tools/deps.sh"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

say() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

STAGE_NAMES=()
STAGE_RESULTS=()
FAILED=0
LAST_RC=0

# run_stage NAME FUNCTION: runs FUNCTION in a subshell with errexit on, records the result.
run_stage() {
    local name=$1 fn=$2 start=$SECONDS rc
    say "$name"
    set +e
    (set -e; "$fn")
    rc=$?
    set -e
    local took=$((SECONDS - start))
    LAST_RC=$rc
    STAGE_NAMES+=("$name")
    if [ "$rc" -eq 0 ]; then
        STAGE_RESULTS+=("ok (${took}s)")
        note "$name: ok (${took}s)"
    else
        STAGE_RESULTS+=("FAILED, exit $rc (${took}s)")
        note "$name: FAILED with exit code $rc (${took}s)"
        FAILED=1
    fi
    return 0
}

skip_stage() {
    say "$1"
    note "skipped: $2"
    STAGE_NAMES+=("$1")
    STAGE_RESULTS+=("skipped ($2)")
    FAILED=1
}

# ---- 1. system packages --------------------------------------------------------------

stage_packages() {
    chat_install_deps test
    note "build and test packages are present"
}

# ---- 2. build --------------------------------------------------------------------------

stage_build() {
    local gen=()
    # Ninja when it is there; an existing build dir keeps the generator it was made with.
    if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then
        gen=(-G Ninja)
    fi
    note "cmake -S . -B build-asan ${gen[*]} -DCHAT_SANITIZE=ON -DCHAT_WERROR=ON"
    cmake -S "$ROOT" -B "$BUILD_DIR" "${gen[@]}" -DCHAT_SANITIZE=ON -DCHAT_WERROR=ON
    note "cmake --build build-asan -j$(nproc)"
    cmake --build "$BUILD_DIR" -j"$(nproc)"
    test -x "$BUILD_DIR/chatd" || { echo "build-asan/chatd was not produced" >&2; return 1; }
}

# ---- 3. C unit tests -------------------------------------------------------------------

# ---- 2b. the real servers the scale-out tests use ---------------------------------------

stage_services() {
    note "tools/services.sh start: redis-server 127.0.0.1:${CHAT_TEST_REDIS_PORT:-16379}, FerretDB v1.24.2 (SQLite) 127.0.0.1:${CHAT_TEST_MONGO_PORT:-27018}"
    "$ROOT/tools/services.sh" start >"$SERVICES_ENV"
    cat "$SERVICES_ENV"
}

stage_ctest() {
    # shellcheck disable=SC1090
    [ -s "$SERVICES_ENV" ] && . "$SERVICES_ENV"
    # the services were started above: a C test that finds one absent fails here, it does
    # not skip (runtime/tests/test.h)
    note "ctest --output-on-failure (ASAN_OPTIONS=$ASAN_OPTIONS, CHAT_TEST_REQUIRE_SERVICES=1)"
    CHAT_TEST_REQUIRE_SERVICES=1 ctest --test-dir "$BUILD_DIR" --output-on-failure 2>&1 |
        tee "$CTEST_LOG"
}

# ---- 4. Lua specs ----------------------------------------------------------------------

stage_specs() {
    local data
    data=$(mktemp -d)
    # a fixed secret: chat.jwt specs make tokens of their own with it
    note "build-asan/chatd --run spec/busted.lua spec/lua (data dir $data)"
    local rc=0
    CHAT_JWT_SECRET="lua-specs-secret-0123456789abcdefghijklmn" CHAT_DATA_DIR="$data" \
        CHAT_SCRIPTS_DIR="$ROOT/scripts" CHAT_LUA_DIR="$ROOT/lua" \
        "$BUILD_DIR/chatd" --run spec/busted.lua spec/lua 2>&1 | tee "$SPECS_LOG" || rc=$?
    rm -rf "$data"
    return "$rc"
}

# ---- 4b. fuzzing (bounded) -----------------------------------------------------------------
# The libFuzzer targets in runtime/fuzz (fuzz_*.c: the Engine.IO and Socket.IO codecs, and any
# added later), built with Debian's clang-14 (libFuzzer comes in libclang-rt-14-dev) into
# build-fuzz/, each run for CHAT_FUZZ_SECONDS (default 60) from its seed corpus
# runtime/fuzz/corpus/<target>/. New inputs go to a scratch corpus (the seed stays as
# committed); a crash leaves its input in artifacts/<target>-crash-*: copy it into
# runtime/fuzz/regress/<target>/ with the fix, so ctest's fuzz_<target>_replay keeps it fixed.
FUZZ_BUILD_DIR="$ROOT/build-fuzz"
FUZZ_SECONDS="${CHAT_FUZZ_SECONDS:-60}"

stage_fuzz() {
    local cc
    cc=$(command -v clang-14 || command -v clang || true)
    [ -n "$cc" ] || { echo "clang-14 is missing (tools/deps.sh installs it)" >&2; return 1; }
    local gen=()
    if [ ! -f "$FUZZ_BUILD_DIR/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then
        gen=(-G Ninja)
    fi
    note "CC=$(basename "$cc") cmake -S . -B build-fuzz -DCHAT_FUZZ=ON; cmake --build build-fuzz --target fuzz"
    CC="$cc" cmake -S "$ROOT" -B "$FUZZ_BUILD_DIR" "${gen[@]}" -DCHAT_FUZZ=ON >/dev/null
    cmake --build "$FUZZ_BUILD_DIR" --target fuzz -j"$(nproc)"
    local rc=0 src name bin log work
    for src in "$ROOT"/runtime/fuzz/fuzz_*.c; do
        name=$(basename "$src" .c)
        bin="$FUZZ_BUILD_DIR/$name"
        log="$ART_DIR/$name.log"
        work=$(mktemp -d)
        note "$name: ${FUZZ_SECONDS}s from runtime/fuzz/corpus/$name (log: artifacts/$name.log)"
        if ! ASAN_OPTIONS=detect_leaks=1 "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 \
            -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
            -artifact_prefix="$ART_DIR/$name-" \
            "$work" "$ROOT/runtime/fuzz/corpus/$name" >"$log" 2>&1; then
            rc=1
            note "$name: FAILED"
            grep -E "ERROR|SUMMARY|fuzz_[a-z]+: |Test unit written" "$log" | head -20 || true
        fi
        # "#N DONE cov: C ft: F corp: ..." and the final stats: what it ran and reached
        local final execs per_s
        final=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
        execs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log" | tail -1)
        per_s=$(sed -n 's/^stat::average_exec_per_sec: //p' "$log" | tail -1)
        note "$name: ${execs:-?} execs, ${per_s:-?} execs/s, $(grep -oE 'cov: [0-9]+ ft: [0-9]+' <<<"$final" || echo 'cov: ? ft: ?')"
        rm -rf "$work"
    done
    return "$rc"
}

# ---- 5. end-to-end dependencies --------------------------------------------------------

lock_sum() { sha256sum "$E2E_DIR/package-lock.json" | cut -d' ' -f1; }

stage_npm() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "node and npm are required" >&2
        return 1
    fi
    note "node $(node --version), npm $(npm --version)"
    local stamp="$E2E_DIR/node_modules/.chatd-lock.sha256"
    if [ -d "$E2E_DIR/node_modules" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(lock_sum)" ]; then
        note "spec/e2e/node_modules matches package-lock.json; skipping npm ci"
        return 0
    fi
    note "npm ci in spec/e2e"
    (cd "$E2E_DIR" && npm ci --no-audit --no-fund)
    lock_sum >"$stamp"
}

# python-socketio for protocol_python.test.js, in spec/e2e/.venv (ignored by git)
stage_python() {
    local venv="$E2E_DIR/.venv" req="$E2E_DIR/py/requirements.txt"
    local stamp="$venv/.chatd-req.sha256" sum
    sum=$(sha256sum "$req" | cut -d' ' -f1)
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
        note "spec/e2e/.venv matches py/requirements.txt; skipping pip"
        return 0
    fi
    note "python3 -m venv spec/e2e/.venv; pip install -r spec/e2e/py/requirements.txt"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    echo "$sum" >"$stamp"
}

# ---- 6. end-to-end tests ---------------------------------------------------------------

stage_e2e() {
    # shellcheck disable=SC1090
    [ -s "$SERVICES_ENV" ] && . "$SERVICES_ENV"
    local files=("$E2E_DIR"/*.test.js)
    note "CHATD_BIN=build-asan/chatd node --test --test-concurrency=1 spec/e2e/ (${#files[@]} files)"
    CHATD_BIN="$BUILD_DIR/chatd" node --test --test-concurrency=1 \
        --test-reporter=spec --test-reporter-destination=stdout \
        --test-reporter=tap --test-reporter-destination="$E2E_TAP" \
        "${files[@]}"
}

# ---- run -------------------------------------------------------------------------------

say "chatd tests in $ROOT${CI:+ (CI)}"
: >"$E2E_TAP"
: >"$CTEST_LOG"
: >"$SPECS_LOG"
: >"$SERVICES_ENV"
trap '"$ROOT/tools/services.sh" stop >/dev/null 2>&1 || true' EXIT

run_stage "system packages" stage_packages
BUILD_OK=0
if [ "$FAILED" -eq 0 ]; then
    run_stage "build (ASan+UBSan, -Werror)" stage_build
    [ "$FAILED" -eq 0 ] && BUILD_OK=1
else
    skip_stage "build (ASan+UBSan, -Werror)" "system packages failed"
fi
if [ "$BUILD_OK" -eq 1 ]; then
    run_stage "test servers (redis-server, FerretDB)" stage_services
    run_stage "C unit tests (ctest)" stage_ctest
    run_stage "Lua specs (busted inside chatd)" stage_specs
    run_stage "fuzzing (libFuzzer, ${FUZZ_SECONDS}s per target)" stage_fuzz
else
    skip_stage "C unit tests (ctest)" "no build"
    skip_stage "Lua specs (busted inside chatd)" "no build"
fi
run_stage "e2e dependencies (npm ci)" stage_npm
NPM_RC=$LAST_RC
run_stage "e2e dependencies (python-socketio venv)" stage_python
[ "$LAST_RC" -eq 0 ] || NPM_RC=$LAST_RC
if [ "$BUILD_OK" -eq 1 ] && [ "$NPM_RC" -eq 0 ]; then
    run_stage "end-to-end tests (node --test)" stage_e2e
else
    skip_stage "end-to-end tests (node --test)" "no build or no e2e dependencies"
fi

# ---- 6b. benchmark smoke: the machinery of bench/run.sh, not its figures -----------------

stage_bench() {
    note "BENCH_QUICK=1 bench/run.sh fanout100: chatd and the reference, small and short"
    BENCH_QUICK=1 BENCH_QUIET_WAIT=0 "$ROOT/bench/run.sh" fanout100 >"$ART_DIR/bench-smoke.log" 2>&1 ||
        { tail -30 "$ART_DIR/bench-smoke.log"; return 1; }
    local out="$ROOT/build-bench/bench-quick"
    # both servers ran every step, and the report has its tables (no thresholds: a smoke run)
    python3 - "$out/results" <<'PY'
import json, os, sys
res = sys.argv[1]
for server in ("chatd", "ref"):
    r = json.load(open(os.path.join(res, f"fanout100-{server}.json")))
    assert len(r["steps"]) == 2 and r["steps"][-1]["deliveries_per_s"] > 0, f"{server}: {r.get('error')}"
p = json.load(open(os.path.join(res, "policy-cost.json")))
assert p["before_us"] > 0 and p["refused"] == 0, p
PY
    grep -q "^## Targets" "$out/results.md"
    grep -q "srv CPU per delivery" "$out/results.md"
}

if [ "${CHAT_TEST_BENCH:-1}" = 0 ]; then
    skip_stage "benchmark smoke (bench/run.sh, quick)" "CHAT_TEST_BENCH=0"
else
    run_stage "benchmark smoke (bench/run.sh, quick)" stage_bench
fi

# ---- 7. containers (last: the longest, and it needs nothing above) ---------------------

stage_containers() {
    local rc=0
    note "tools/test-containers.sh: the image, the compose cluster, deploy/k8s (podman)"
    "$ROOT/tools/test-containers.sh" || rc=$?
    if [ "$rc" -eq 77 ]; then # podman cannot run a container on this machine at all
        : >"$ART_DIR/containers.skipped"
        return 0
    fi
    return "$rc"
}

rm -f "$ART_DIR/containers.skipped"
run_stage "containers (image, compose, k8s)" stage_containers
if [ -f "$ART_DIR/containers.skipped" ]; then
    STAGE_RESULTS[${#STAGE_RESULTS[@]}-1]="skipped (podman cannot run containers here)"
fi

# ---- summary ---------------------------------------------------------------------------

tap_count() { # the runner's closing "# pass N" style lines
    { grep -E "^# $1 [0-9]+$" "$E2E_TAP" 2>/dev/null || true; } | tail -1 | awk '{print $3}'
}
ctest_count() {
    local line
    line=$({ grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$CTEST_LOG" 2>/dev/null ||
        true; } | tail -1)
    [ -n "$line" ] || { echo "0 0"; return; }
    local failed total
    failed=$(sed -E 's/.*tests passed, ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.*tests passed, ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"$line")
    echo "$((total - failed)) $failed"
}

specs_count() { # busted's closing "N successes / N failures / N errors / N pending" line
    local line
    line=$({ grep -E '^[0-9]+ successe?s? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' \
        "$SPECS_LOG" 2>/dev/null || true; } | tail -1)
    [ -n "$line" ] || { echo "0 0 0 0"; return; }
    sed -E 's#^([0-9]+) [a-z]+ / ([0-9]+) [a-z]+ / ([0-9]+) [a-z]+ / ([0-9]+) pending.*#\1 \2 \3 \4#' <<<"$line"
}

read -r C_PASS C_FAIL < <(ctest_count)
read -r L_PASS L_FAIL L_ERR L_PEND < <(specs_count)
E_PASS=$(tap_count pass); E_PASS=${E_PASS:-0}
E_FAIL=$(tap_count fail); E_FAIL=${E_FAIL:-0}
E_CANCEL=$(tap_count cancelled); E_CANCEL=${E_CANCEL:-0}
E_FAIL=$((E_FAIL + E_CANCEL))

say "summary"
{
    echo "chatd test summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit'))"
    for i in "${!STAGE_NAMES[@]}"; do
        printf '  %-34s %s\n' "${STAGE_NAMES[$i]}" "${STAGE_RESULTS[$i]}"
    done
    echo "  C unit tests: $C_PASS passed, $C_FAIL failed"
    echo "  Lua specs:    $L_PASS passed, $L_FAIL failed, $L_ERR errors, $L_PEND pending (log: artifacts/lua-specs.log)"
    echo "  end-to-end:   $E_PASS passed, $E_FAIL failed (TAP: artifacts/e2e.tap)"
    if [ "$FAILED" -eq 0 ]; then echo "  result: OK"; else echo "  result: FAILED"; fi
} | tee "$SUMMARY"
echo "total: $((C_PASS + L_PASS + E_PASS)) passed, $((C_FAIL + L_FAIL + L_ERR + E_FAIL)) failed"
exit "$FAILED"
