#!/usr/bin/env bash
# Asks the router which node owns which shards and rooms, and which members
# are alive or down. Usage: owners.sh [ROOM,ROOM...]  (or ROOMS=a,b)
# Environment: HTTP_ADDR (router address, default 127.0.0.1:8080).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

rooms="${1:-${ROOMS:-}}"
check_http_addr
path="/api/cluster?format=text"
[[ -z "$rooms" ]] || path+="&rooms=$(urlencode "$rooms")"

if body="$(http_get "$HTTP_ADDR" "$path")"; then
  printf '%s\n' "$body"
else
  case $? in
    2) die "the router at http://$(addr_dial "$HTTP_ADDR")/ is not reachable — is the cluster running (\`make cluster\`)? If it listens elsewhere, pass HTTP_ADDR=host:port" ;;
    *) printf '%s\n' "$body" >&2
       die "the router at http://$(addr_dial "$HTTP_ADDR")/ answered with an error (above)" ;;
  esac
fi
