#!/usr/bin/env bash
# Installs the Debian packages chatd needs that are missing. Sourced by run.sh and test.sh.
#   chat_install_deps build   # what building and running chatd needs
#   chat_install_deps test    # plus the test tools and services
chat_build_packages=(build-essential cmake ninja-build pkg-config
    liblua5.4-dev lua5.4 lua-cjson libuv1-dev libwebsockets-dev libwebsockets-evlib-uv
    libhiredis-dev libmongoc-dev libbson-dev libjwt-dev libjansson-dev libsqlite3-dev
    libcrypt-dev libssl-dev)
chat_test_packages=(lua-busted redis-server nginx valgrind curl ca-certificates chromium)

chat_install_deps() {
    local want=("${chat_build_packages[@]}") missing=() p
    if [ "${1:-build}" = test ]; then
        want+=("${chat_test_packages[@]}")
        command -v node >/dev/null && command -v npm >/dev/null || want+=(nodejs npm)
    fi
    for p in "${want[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing missing packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq || { echo "apt-get update failed" >&2; return 1; }
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}
