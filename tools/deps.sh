#!/usr/bin/env bash
# Installs the Debian packages chatd needs that are missing. Sourced by run.sh and test.sh.
#   chat_install_deps build   # what building and running chatd needs
#   chat_install_deps test    # plus the test tools and services
chat_build_packages=(build-essential cmake ninja-build pkg-config
    liblua5.4-dev lua5.4 lua-cjson libuv1-dev libwebsockets-dev libwebsockets-evlib-uv
    libhiredis-dev libmongoc-dev libbson-dev libjwt-dev libjansson-dev libsqlite3-dev
    libcrypt-dev libssl-dev libcurl4-openssl-dev
    libjemalloc-dev) # chatd's allocator (CMakeLists.txt, CHAT_JEMALLOC)
chat_test_packages=(lua-busted redis-server nginx valgrind curl ca-certificates chromium
    prometheus) # prometheus: promtool checks /metrics and the alert rules
# the web page's emoji (attach, reactions) in the browser test's screenshots and docs/screenshot.png
chat_test_packages+=(fonts-noto-color-emoji)
# the fuzz stage: clang with libFuzzer (Debian ships it in libclang-rt-14-dev)
chat_test_packages+=(clang-14 libclang-rt-14-dev)

# apt-get as root (or through sudo), waiting up to 10 minutes for another apt (unattended
# upgrades, a second run of this script) to let go of its locks instead of failing at once.
# DPkg::Lock::Timeout covers dpkg's lock; apt-get update's lists lock is not covered by it,
# so a "Could not get lock" failure is retried.
chat_apt() {
    local sudo="" out deadline=$((SECONDS + 600))
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    while :; do
        if out=$($sudo apt-get -o DPkg::Lock::Timeout=600 "$@" 2>&1); then
            [ -z "$out" ] || printf '%s\n' "$out"
            return 0
        fi
        if grep -q 'Could not get lock' <<<"$out" && [ "$SECONDS" -lt "$deadline" ]; then
            echo "==> another apt holds its lock; waiting for it ($(grep -m1 -o 'held by process.*' <<<"$out" || true))" >&2
            sleep 5
            continue
        fi
        printf '%s\n' "$out" >&2
        return 1
    done
}

chat_install_deps() {
    local want=("${chat_build_packages[@]}") missing=() p
    if [ "${1:-build}" = test ]; then
        want+=("${chat_test_packages[@]}")
        command -v node >/dev/null && command -v npm >/dev/null || want+=(nodejs npm)
        # python-socketio, an e2e client, goes into a venv (spec/e2e/.venv)
        python3 -m venv --help >/dev/null 2>&1 || want+=(python3 python3-venv)
    fi
    for p in "${want[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing missing packages: ${missing[*]}"
    chat_apt update -qq || { echo "apt-get update failed" >&2; return 1; }
    DEBIAN_FRONTEND=noninteractive chat_apt install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}
