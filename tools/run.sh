#!/usr/bin/env bash
# Installs what is missing, builds chatd and runs it on its embedded default (SQLite in
# ./data, in-process pub/sub). Configure with CHAT_* variables or flags: chatd --help.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/deps.sh
chat_install_deps build
echo "==> building (build/)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build
echo "==> starting chatd on ${CHAT_LISTEN:-127.0.0.1:8080} (Ctrl-C stops it)"
exec build/chatd "$@"
