#!/usr/bin/env bash
# Refreshes the Socket.IO browser client that the web page loads, examples/web/vendor/, from
# the socket.io-client npm package: socket.io.min.js, its source map and the package's licence.
# The version is the one the end-to-end tests pin in spec/e2e/package.json, or the argument:
#   tools/update-web-client.sh            # the version in spec/e2e/package.json
#   tools/update-web-client.sh 4.8.4      # a given version (update package.json to match)
# npm pack checks the tarball against the registry's integrity hash. The files are committed,
# so using the page needs no Node.js; only refreshing them does.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=${1:-$(sed -n 's/.*"socket\.io-client": *"\([^"]*\)".*/\1/p' spec/e2e/package.json)}
[ -n "$version" ] || { echo "no socket.io-client version in spec/e2e/package.json" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is needed to fetch socket.io-client" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tgz=$(cd "$tmp" && npm pack --silent "socket.io-client@$version")
tar -xzf "$tmp/$tgz" -C "$tmp" package/dist/socket.io.min.js package/dist/socket.io.min.js.map \
    package/LICENSE package/package.json
got=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$tmp/package/package.json" | head -1)
[ "$got" = "$version" ] || { echo "npm gave socket.io-client $got, not $version" >&2; exit 1; }

dest=examples/web/vendor
mkdir -p "$dest"
install -m 0644 "$tmp/package/dist/socket.io.min.js" "$tmp/package/dist/socket.io.min.js.map" "$dest/"
install -m 0644 "$tmp/package/LICENSE" "$dest/socket.io-client.LICENSE"
echo "socket.io-client $version from npm" >"$dest/VERSION"
(cd "$dest" && sha256sum socket.io.min.js socket.io.min.js.map) >>"$dest/VERSION"
cat "$dest/VERSION"
