#!/usr/bin/env bash
# True (exit 0) when GET URL answers 200. Plain HTTP to HOST:PORT only, over bash's /dev/tcp,
# so the scripts that wait for a server need no curl.
#
# usage: scripts/http-ok.sh http://HOST:PORT/PATH
set -euo pipefail

url=${1:?usage: $0 http://HOST:PORT/PATH}
rest=${url#http://}
hostport=${rest%%/*}
path=/${rest#*/}
[ "$rest" != "$hostport" ] || path=/
host=${hostport%:*}
port=${hostport##*:}

{ exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || exit 1
printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$hostport" >&3
IFS= read -r -t 5 status <&3 || exit 1
[[ $status == HTTP/1.?' 200'* ]]
