#!/usr/bin/env bash
# Asks the router which node owns which shards and rooms, and which members
# are alive or down. Usage: owners.sh [ROOM,ROOM...]  (or ROOMS=a,b)
# Environment: ADMIN_ADDR (the router's admin address, default 127.0.0.1:8081).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

rooms="${1:-${ROOMS:-}}"
check_http_addr
path="/api/cluster?format=text"
[[ -z "$rooms" ]] || path+="&rooms=$(urlencode "$rooms")"

if body="$(http_get "$ADMIN_ADDR" "$path")"; then
  printf '%s\n' "$body"
else
  case $? in
    2) die "the router's admin endpoint http://$(addr_dial "$ADMIN_ADDR")/ is not reachable — is the cluster running (\`make cluster\`)? If it listens elsewhere, pass ADMIN_ADDR=host:port" ;;
    *) printf '%s\n' "$body" >&2
       die "the router at http://$(addr_dial "$ADMIN_ADDR")/ answered with an error (above)" ;;
  esac
fi
