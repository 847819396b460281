#!/bin/bash
# The image's HEALTHCHECK: GET /healthz on chatd's own port, healthy on HTTP 200. Plain bash
# (/dev/tcp) so the image needs no curl.
port=${CHAT_LISTEN##*:}
exec 3<>"/dev/tcp/127.0.0.1/${port:-8080}" || exit 1
printf 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
read -r -t 3 _ status _ <&3 || exit 1
[ "$status" = 200 ]
