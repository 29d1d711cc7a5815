# shellcheck shell=bash
# Shared by scripts/cluster.sh, kill-node.sh, restart-node.sh and owners.sh:
# the local cluster's layout, each process's command line (one definition, so
# a restarted node gets exactly the flags `make cluster` used), and helpers.
# Sourcing it changes to the repository root. Needs bash 4.4+, coreutils and
# Linux /proc; curl is used when present.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

LOG_DIR=data/logs
PID_DIR=data/pids
HTTP_ADDR="${HTTP_ADDR:-127.0.0.1:8080}"

NODES=(node1 node2 node3)
ROUTER=router1
ALL_PROCS=("${NODES[@]}" "$ROUTER")
ROUTER_GOSSIP=127.0.0.1:7100
SEEDS=127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103

node_grpc() { echo "127.0.0.1:910${1#node}"; }   # node_grpc node2 -> 127.0.0.1:9102
node_gossip() { echo "127.0.0.1:710${1#node}"; } # node_gossip node2 -> 127.0.0.1:7102

# proc_cmd NAME sets the array CMD to the command line of process NAME.
proc_cmd() {
  case "$1" in
    node[1-3])
      CMD=("$ROOT/bin/objectnode" --id "$1" --data "./data/$1"
        --grpc-addr "$(node_grpc "$1")" --gossip-addr "$(node_gossip "$1")"
        --join "$SEEDS" --expect 3) ;;
    "$ROUTER")
      CMD=("$ROOT/bin/router" --id "$ROUTER" --http-addr "$HTTP_ADDR"
        --gossip-addr "$ROUTER_GOSSIP" --join "$SEEDS") ;;
    *) die "unknown process '$1'" ;;
  esac
}

# proc_ports NAME prints "proto addr role" for every socket NAME binds.
proc_ports() {
  case "$1" in
    node[1-3])
      echo "tcp $(node_grpc "$1") gRPC"
      echo "tcp $(node_gossip "$1") gossip"
      echo "udp $(node_gossip "$1") gossip" ;;
    "$ROUTER")
      echo "tcp $HTTP_ADDR HTTP"
      echo "tcp $ROUTER_GOSSIP gossip"
      echo "udp $ROUTER_GOSSIP gossip" ;;
  esac
}

say() { printf 'cluster | %s\n' "$*"; }
warn() { printf 'cluster | %s\n' "$*" >&2; }
die() { printf 'cluster | error: %s\n' "$*" >&2; exit 1; }

addr_port() { echo "${1##*:}"; }
# addr_dial ADDR: the host:port to connect to for a listen address (a
# wildcard host is reached through loopback).
addr_dial() {
  local host="${1%:*}"
  case "$host" in "" | 0.0.0.0 | "[::]" | "::") host=127.0.0.1 ;; esac
  echo "$host:${1##*:}"
}
# addr_url_host ADDR: host:port to show users in URLs.
addr_url_host() {
  local host="${1%:*}"
  case "$host" in "" | 0.0.0.0 | 127.0.0.1 | "[::]" | "::" | "[::1]") host=localhost ;; esac
  echo "$host:${1##*:}"
}

check_http_addr() {
  [[ "$HTTP_ADDR" == *:* && "$(addr_port "$HTTP_ADDR")" =~ ^[0-9]+$ ]] ||
    die "HTTP_ADDR must be host:port, e.g. 127.0.0.1:8081 (got '$HTTP_ADDR')"
}

# tcp_open ADDR: true if something accepts TCP connections at ADDR.
tcp_open() {
  local a
  a="$(addr_dial "$1")"
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "${a%:*}" "${a##*:}" 2>/dev/null
}

# is_running NAME PID: true if PID is alive and is hellochat process NAME (a
# pid file may outlive its process, and the pid may have been reused).
is_running() {
  local name="$1" pid="$2" stat args
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  [[ -r "/proc/$pid/stat" ]] || return 0 # no /proc: trust kill -0
  { stat="$(<"/proc/$pid/stat")"; } 2>/dev/null || return 1
  stat="${stat##*) }"
  [[ "${stat%% *}" != Z ]] || return 1 # exited, not yet reaped
  mapfile -d '' args 2>/dev/null <"/proc/$pid/cmdline" || return 1
  local IFS=' '
  [[ " ${args[*]} " == *" --id $name "* ]]
}

# pid_of NAME prints the pid of running process NAME from its pid file.
pid_of() {
  local f="$PID_DIR/$1.pid" pid
  [[ -f "$f" ]] || return 1
  { pid="$(<"$f")"; } 2>/dev/null || return 1
  is_running "$1" "$pid" || return 1
  echo "$pid"
}

# start_proc NAME WHO starts NAME in the background in its own session (so
# it survives the terminal that started it and ignores its Ctrl-C), appending
# its output to data/logs/NAME.log and its pid to data/pids/NAME.pid. Sets
# STARTED_PID.
start_proc() {
  local name="$1" who="$2" log="$LOG_DIR/$1.log"
  proc_cmd "$name"
  mkdir -p "$LOG_DIR" "$PID_DIR"
  printf '%s | ===== %s: %s starting %s\n' "$name" "$(date '+%Y-%m-%d %H:%M:%S')" "$who" "${CMD[*]}" >>"$log"
  if command -v setsid >/dev/null 2>&1; then
    # A background child of a script is not a process group leader, so
    # setsid execs in place and $! is the server's pid.
    setsid "${CMD[@]}" </dev/null >>"$log" 2>&1 &
  else
    "${CMD[@]}" </dev/null >>"$log" 2>&1 &
  fi
  STARTED_PID=$!
  echo "$STARTED_PID" >"$PID_DIR/$name.pid.tmp"
  mv -f "$PID_DIR/$name.pid.tmp" "$PID_DIR/$name.pid"
}

# file_size FILE prints its size in bytes (0 if absent).
file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

# log_since NAME OFFSET [LINES] prints the last lines NAME logged after byte
# OFFSET of its log file.
log_since() {
  local f="$LOG_DIR/$1.log"
  [[ -f "$f" ]] || return 0
  tail -c +"$(($2 + 1))" "$f" | tail -n "${3:-20}" | sed -u "/^$1 | /!s/^/$1 | /"
}

# socket_inode PROTO PORT prints the inode of a socket bound to PORT (for
# tcp: listening) on any address, from /proc/net. Fails if none.
socket_inode() {
  local proto="$1" hex f
  local -a fl
  printf -v hex '%04X' "$2"
  for f in "/proc/net/$proto" "/proc/net/${proto}6"; do
    [[ -r "$f" ]] || continue
    while read -r -a fl; do
      [[ "${fl[1]}" == *":$hex" ]] || continue
      [[ "$proto" == udp || "${fl[3]}" == 0A ]] || continue
      echo "${fl[9]}"
      return 0
    done <"$f"
  done
  return 1
}

# inode_owner INODE describes the process holding a socket, if visible.
inode_owner() {
  local p pid comm cmd
  local -a args=()
  [[ "$1" =~ ^[1-9][0-9]*$ ]] || return 1
  p="$(find /proc/[0-9]*/fd -lname "socket:\[$1\]" -print -quit 2>/dev/null)" || true
  [[ -n "$p" ]] || return 1
  pid="${p#/proc/}"
  pid="${pid%%/*}"
  comm="$(cat "/proc/$pid/comm" 2>/dev/null || echo '?')"
  mapfile -d '' args 2>/dev/null <"/proc/$pid/cmdline" || true
  local IFS=' '
  cmd="${args[*]}"
  cmd="${cmd//[$'\n\t']/ }"
  ((${#cmd} <= 70)) || cmd="${cmd:0:67}..."
  echo "pid $pid ($comm: $cmd)"
}

# check_ports NAME... fails, naming each busy port and what holds it, if any
# port NAME needs is in use.
check_ports() {
  local name proto addr role port inode holder hint busy=0
  for name in "$@"; do
    while read -r proto addr role; do
      port="$(addr_port "$addr")"
      holder=""
      if inode="$(socket_inode "$proto" "$port")"; then
        holder="$(inode_owner "$inode")" || holder="a process this user cannot see"
      elif [[ "$proto" == tcp ]] && tcp_open "$addr"; then
        holder="an unknown process"
      else
        continue
      fi
      busy=1
      if [[ "$holder" == *hellochat* || "$holder" == *objectnode* || "$holder" == *router* ]]; then
        hint="is another cluster running? stop it (Ctrl-C in its terminal)"
      else
        hint="stop that process"
      fi
      if [[ "$role" == HTTP ]]; then
        hint="$hint, or run \`make cluster HTTP_ADDR=127.0.0.1:$((port + 1))\`"
      fi
      warn "error: port $port/$proto ($name $role, $addr) is in use by $holder — $hint"
    done < <(proc_ports "$name")
  done
  return "$busy"
}

# urlencode S percent-encodes S for a query value (commas kept).
urlencode() {
  local LC_ALL=C s="$1" out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c="${s:i:1}"
    case "$c" in
      [A-Za-z0-9._~,-]) out+="$c" ;;
      *) printf -v c '%%%02X' "'$c"; out+="$c" ;;
    esac
  done
  echo "$out"
}

# http_get ADDR PATH prints the response body. Returns 0 for a 2xx answer,
# 1 for another status, 2 if nothing answered. Uses curl, or bash's /dev/tcp
# when curl is missing.
http_get() {
  local addr code body fd line status
  addr="$(addr_dial "$1")"
  if command -v curl >/dev/null 2>&1; then
    body="$(mktemp)"
    code="$(curl -s -m "${HTTP_TIMEOUT:-5}" -o "$body" -w '%{http_code}' "http://$addr$2")" || code=000
    cat "$body"
    rm -f "$body"
    [[ "$code" != 000 ]] || return 2
    [[ "$code" == 2* ]] || return 1
    return 0
  fi
  { exec {fd}<>"/dev/tcp/${addr%:*}/${addr##*:}"; } 2>/dev/null || return 2
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$2" "$addr" >&"$fd"
  if ! IFS= read -r -t "${HTTP_TIMEOUT:-5}" status <&"$fd"; then
    exec {fd}>&-
    return 2
  fi
  while IFS= read -r -t 5 line <&"$fd" && [[ "$line" != $'\r' && -n "$line" ]]; do :; done
  timeout "${HTTP_TIMEOUT:-5}" cat <&"$fd" || true
  exec {fd}>&-
  [[ "$status" =~ ^HTTP/[0-9.]+\ 2 ]] || return 1
}
