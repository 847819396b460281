#!/usr/bin/env bash
# Installs what is missing, builds chatd and runs it on its embedded default (SQLite in
# ./data, in-process pub/sub). Configure with CHAT_* variables or flags: chatd --help.
#   tools/run.sh [--option=value | --option value ...]
# CHATD_BIN=path/to/chatd runs that binary instead of building build/chatd.
set -euo pipefail
cd "$(dirname "$0")/.."

# The address chatd will listen on, as chatd itself decides it: the last --listen flag
# (either form), else CHAT_LISTEN, else the default.
listen=${CHAT_LISTEN:-127.0.0.1:8080}
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[$i]} in
    --listen=*) listen=${args[$i]#--listen=} ;;
    --listen) [ $((i + 1)) -lt ${#args[@]} ] && listen=${args[$((i + 1))]} ;;
    esac
done

bin=${CHATD_BIN:-}
if [ -z "$bin" ]; then
    . tools/deps.sh
    chat_install_deps build
    echo "==> building (build/)"
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build
    bin=build/chatd
fi
echo "==> starting chatd on $listen (Ctrl-C stops it)"
exec "$bin" "$@"
