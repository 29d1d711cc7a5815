# shellcheck shell=bash
# Shared by scripts/cluster.sh, kill-node.sh, restart-node.sh, add-node.sh,
# remove-node.sh and owners.sh: the local cluster's layout, each process's
# command line (one definition, so a restarted or added node gets the flags
# `make cluster` uses), and helpers. Sourcing it changes to the repository
# root. Needs bash 4.4+, coreutils and Linux /proc; curl is used when
# present.

# A command that fails where set -e ends the script says so, with where:
# some fail without a word of their own, and a script that exits 1 in
# silence leaves its user nothing to go on. Only under -e (command
# substitutions run without it, and a check that fails there is no error).
set -E
on_err() {
  [[ $- == *e* ]] || return 0
  printf 'cluster | error: %s:%s: `%s` failed (exit %d)\n' "${3#"${ROOT:-}"/}" "$4" "$2" "$1" >&2
}
trap 'on_err $? "$BASH_COMMAND" "${BASH_SOURCE[0]}" "$LINENO"' ERR

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# CLUSTER_DATA holds each node's data dir, the logs and the pid files
# (default ./data; relative to the repository root). Another directory keeps
# a second cluster's data apart, but the ports below are fixed: run one
# local cluster at a time.
DATA="${CLUSTER_DATA:-data}"
[[ "$DATA" == / ]] || DATA="${DATA%/}"
LOG_DIR="$DATA/logs"
PID_DIR="$DATA/pids"
CLUSTER_ENV="$DATA/cluster.env"
HTTP_ADDR="${HTTP_ADDR:-127.0.0.1:8080}"
# The router's admin endpoints (/api/cluster, the detailed /healthz): on
# loopback, apart from the public HTTP_ADDR.
ADMIN_ADDR="${ADMIN_ADDR:-127.0.0.1:8081}"
PARTITIONS=64 # cluster.Partitions
# REPLICATION_FACTOR is how many replicas each shard has: objectnode's
# --replicas default, which proc_cmd keeps. remove-node.sh refuses to leave
# fewer nodes than this in the ring (the node's decommission endpoint
# refuses too).
REPLICATION_FACTOR=3

# NODES lists every object node the local cluster can run: node1..node9,
# node N on gRPC 127.0.0.1:910N, gossip 127.0.0.1:710N and its admin
# endpoints (/metrics, /readyz, /livez) on 127.0.0.1:918N. `make cluster
# NODES=n` starts node1..noden; add-node starts others later.
MAX_NODES=9
NODES=()
for ((_i = 1; _i <= MAX_NODES; _i++)); do NODES+=("node$_i"); done
unset _i
ROUTER=router1
ALL_PROCS=("${NODES[@]}" "$ROUTER")
ROUTER_GOSSIP=127.0.0.1:7100

node_grpc() { echo "127.0.0.1:910${1#node}"; }   # node_grpc node2 -> 127.0.0.1:9102
node_gossip() { echo "127.0.0.1:710${1#node}"; } # node_gossip node2 -> 127.0.0.1:7102
node_admin() { echo "127.0.0.1:918${1#node}"; }  # node_admin node2 -> 127.0.0.1:9182

# FOUNDERS is how many nodes formed the cluster: `make cluster NODES=n`
# starts node1..noden with --expect n and writes FOUNDERS=n to
# $CLUSTER_ENV, so that restart-node and add-node, run later from another
# shell, know it too. Without that file (a cluster started by an older
# script) it is 3, the default.
FOUNDERS=3
if [[ -r "$CLUSTER_ENV" ]]; then
  _f="$(sed -n 's/^FOUNDERS=\([1-9]\)$/\1/p' "$CLUSTER_ENV" | tail -n 1)"
  FOUNDERS="${_f:-3}"
  unset _f
fi

# node_expect NAME prints the --expect a node starts with: a founder waits
# for the other founders to form the cluster (on a data dir that already
# belongs to one, or when a cluster exists, it joins instead: --expect only
# matters on a fresh disk, and a fresh founder joins an existing cluster as
# a new replica); any other node only joins (0).
node_expect() {
  local k="${1#node}"
  if ((k <= FOUNDERS)); then echo "$FOUNDERS"; else echo 0; fi
}

# join_list prints the --join addresses (gossip) for a process starting now:
# the founders' addresses, where a new cluster forms, plus those of every
# node running now (a live pid file). The founders alone would fail once
# they have all been removed or are down; the running nodes alone would be
# empty when `make cluster` starts. One reachable address is enough: after
# the first contact, each node persists the members it has seen and rejoins
# them by itself.
join_list() {
  local -a addrs=()
  local k name
  for ((k = 1; k <= FOUNDERS; k++)); do addrs+=("$(node_gossip "node$k")"); done
  for name in "${NODES[@]}"; do
    ((${name#node} > FOUNDERS)) || continue
    if pid_of "$name" >/dev/null; then addrs+=("$(node_gossip "$name")"); fi
  done
  local IFS=,
  echo "${addrs[*]}"
}

# proc_cmd NAME [EXPECT] sets the array CMD to the command line of process
# NAME; EXPECT overrides a node's --expect (add-node passes 0).
proc_cmd() {
  case "$1" in
    node[1-9])
      CMD=("$ROOT/bin/objectnode" --id "$1" --data "$DATA/$1"
        --grpc-addr "$(node_grpc "$1")" --gossip-addr "$(node_gossip "$1")" --admin-addr "$(node_admin "$1")"
        --join "$(join_list)" --expect "${2:-$(node_expect "$1")}" --dev-pki "$DATA/pki") ;;
    "$ROUTER")
      CMD=("$ROOT/bin/router" --id "$ROUTER" --http-addr "$HTTP_ADDR"
        --admin-addr "$ADMIN_ADDR" --gossip-addr "$ROUTER_GOSSIP" --join "$(join_list)" --dev-pki "$DATA/pki") ;;
    *) die "unknown process '$1'" ;;
  esac
}

# proc_ports NAME prints "proto addr role" for every socket NAME binds.
proc_ports() {
  case "$1" in
    node[1-9])
      echo "tcp $(node_grpc "$1") gRPC"
      echo "tcp $(node_gossip "$1") gossip"
      echo "udp $(node_gossip "$1") gossip"
      echo "tcp $(node_admin "$1") admin" ;;
    "$ROUTER")
      echo "tcp $HTTP_ADDR HTTP"
      echo "tcp $ADMIN_ADDR admin"
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
    die "HTTP_ADDR must be host:port, e.g. 127.0.0.1:8080 (got '$HTTP_ADDR')"
  [[ "$ADMIN_ADDR" == *:* && "$(addr_port "$ADMIN_ADDR")" =~ ^[0-9]+$ ]] ||
    die "ADMIN_ADDR must be host:port, e.g. 127.0.0.1:8081 (got '$ADMIN_ADDR')"
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

# proc_start_ticks PID prints when PID started (field 22 of
# /proc/PID/stat, clock ticks since boot): with the pid, it names one
# process for good, whatever the process execs and whatever later reuses
# the pid. Fails if PID is gone or there is no /proc.
proc_start_ticks() {
  local stat
  local -a f
  { stat="$(<"/proc/$1/stat")"; } 2>/dev/null || return 1
  read -ra f <<<"${stat##*) }" # fields 3.. (comm, field 2, may hold spaces)
  [[ "${f[19]:-}" =~ ^[0-9]+$ ]] || return 1
  echo "${f[19]}"
}

# pid_gone PID: true once PID no longer runs (kill -0 fails, or it exited
# and waits to be reaped). The only test under which a pid file goes.
pid_gone() {
  local stat
  [[ "$1" =~ ^[0-9]+$ ]] || return 0
  kill -0 "$1" 2>/dev/null || return 0
  { stat="$(<"/proc/$1/stat")"; } 2>/dev/null || return 1
  stat="${stat##*) }"
  [[ "${stat%% *}" == Z ]]
}

# forget_pid NAME [PID] removes NAME's pid file if the process it names is
# gone (and, with PID, only if it still names PID: a newer start may have
# replaced it). A pid file whose process still runs stays, even if that
# process does not look like NAME (it may be between fork and exec, or a
# reused pid): dropping a live node's pid file would hide it from
# kill-node, remove-node and cluster.sh's Ctrl-C. Returns 1 if it kept a
# pid file, and sets KEPT_PID.
forget_pid() {
  local f="$PID_DIR/$1.pid" pid
  KEPT_PID=""
  [[ -f "$f" ]] || return 0
  { pid="$(<"$f")"; } 2>/dev/null || return 0
  [[ -z "${2:-}" || "$pid" == "$2" ]] || return 0
  if [[ "$pid" =~ ^[0-9]+$ ]] && ! pid_gone "$pid"; then
    KEPT_PID="$pid"
    return 1
  fi
  rm -f "$f"
}

# forget_stale_pid NAME: forget_pid for a script about to start or act on
# NAME, which pid_of says is not running; dies if the pid file names a
# live process after all.
forget_stale_pid() {
  forget_pid "$1" ||
    die "$PID_DIR/$1.pid names pid $KEPT_PID, which runs but is not (yet) $1: if $1 is starting, wait a few seconds and try again; if that pid is another program, remove the pid file"
}

# pid_of NAME prints the pid of running process NAME from its pid file.
pid_of() {
  local f="$PID_DIR/$1.pid" pid
  [[ -f "$f" ]] || return 1
  { pid="$(<"$f")"; } 2>/dev/null || return 1
  is_running "$1" "$pid" || return 1
  echo "$pid"
}

# start_proc NAME WHO [EXPECT] starts NAME in the background in its own
# session (so it survives the terminal that started it and ignores its
# Ctrl-C), appending its output to $LOG_DIR/NAME.log and its pid to
# $PID_DIR/NAME.pid. EXPECT overrides a node's --expect. Sets STARTED_PID.
start_proc() {
  local name="$1" who="$2" log="$LOG_DIR/$1.log"
  proc_cmd "$name" "${3:-}"
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
  # Until the child has exec'd the binary, its command line is this
  # script's, and is_running does not recognize it; the start time names
  # it from the fork on (started_alive). Already reaped: it is gone.
  STARTED_AT[$STARTED_PID]="$(proc_start_ticks "$STARTED_PID")" || STARTED_AT[$STARTED_PID]=gone
  echo "$STARTED_PID" >"$PID_DIR/$name.pid.tmp"
  mv -f "$PID_DIR/$name.pid.tmp" "$PID_DIR/$name.pid"
}

# STARTED_AT maps each pid start_proc started to its start time.
declare -A STARTED_AT=()

# started_alive NAME PID: true while PID runs. For a process this script
# started it trusts the pid and start time only, so a start slower than
# the first checks is never taken for an exit; for any other it is
# is_running.
started_alive() {
  local want="${STARTED_AT[$2]:-}" now
  [[ -n "$want" ]] || { is_running "$1" "$2"; return; }
  [[ "$want" != gone ]] || return 1
  ! pid_gone "$2" || return 1
  now="$(proc_start_ticks "$2")" || return 1
  [[ "$now" == "$want" ]]
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
  printf -v hex '%04X' "$2"
  for f in "/proc/net/$proto" "/proc/net/${proto}6"; do
    [[ -r "$f" ]] || continue
    # awk, not a bash read loop: under load (thousands of WebSockets) these
    # files have tens of thousands of lines.
    awk -v port=":$hex" -v proto="$proto" '
      substr($2, length($2) - 4) == port && (proto == "udp" || $4 == "0A") { print $10; found = 1; exit }
      END { exit !found }' "$f" && return 0
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
        hint="$hint, or run \`make cluster HTTP_ADDR=127.0.0.1:$((port + 10))\`"
      elif [[ "$role" == admin && "$name" == "$ROUTER" ]]; then
        hint="$hint, or run \`make cluster ADMIN_ADDR=127.0.0.1:$((port + 10))\`"
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

# ---- helpers of the node scripts (kill, restart, add, remove) ----

PROGRESS_EVERY="${PROGRESS_EVERY:-5}" # seconds between progress lines

# node_arg N TARGET sets NAME to nodeN, or dies with the usage of `make
# TARGET`.
node_arg() {
  [[ "$1" =~ ^[1-9]$ ]] || die "usage: make $2 N=<1-9> (got N='$1')"
  NAME="node$1"
}

# has_data NAME: true if NAME's data dir exists and is not empty.
has_data() {
  [[ -d "$DATA/$1" && -n "$(ls -A "$DATA/$1" 2>/dev/null)" ]]
}

# running_nodes prints the object nodes running now (live pid files).
running_nodes() {
  local name
  for name in "${NODES[@]}"; do
    if pid_of "$name" >/dev/null; then echo "$name"; fi
  done
}

# removed_marker NAME is the file remove-node.sh leaves while NAME leaves
# the cluster for good, so that cluster.sh reports its exit as such.
removed_marker() { echo "$PID_DIR/$1.removed"; }

now_ms() { date +%s%3N; }
# since START_MS prints the time since START_MS (from now_ms), e.g. 12.3s.
since() {
  local d=$(($(now_ms) - $1))
  printf '%d.%ds' $((d / 1000)) $((d % 1000 / 100))
}

# wait_grpc NAME PID OFFSET TIMEOUT waits until NAME (pid PID, started by
# this script) accepts gRPC connections. If it exits first it prints
# NAME's last log lines (after byte OFFSET) and exits 1. If TIMEOUT
# seconds pass it exits 1 too, but leaves NAME running and its pid file in
# place: a node slow to start under load is still starting, and one that
# hangs is for the operator to look at (make kill-node stops it).
wait_grpc() {
  local name="$1" pid="$2" offset="$3" timeout="$4" grpc deadline
  grpc="$(node_grpc "$name")"
  deadline=$((SECONDS + timeout))
  until tcp_open "$grpc"; do
    if ! started_alive "$name" "$pid"; then
      forget_pid "$name" "$pid" || true
      warn "error: $name (pid $pid) exited during startup; last lines of $LOG_DIR/$name.log:"
      log_since "$name" "$offset" 20 >&2
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      warn "error: $name (pid $pid) did not accept gRPC connections on $grpc within ${timeout}s; it keeps running (pid file $PID_DIR/$name.pid): watch its log, or stop it with \`make kill-node N=${name#node}\`. Last lines of $LOG_DIR/$name.log:"
      log_since "$name" "$offset" 20 >&2
      exit 1
    fi
    sleep 0.2
  done
}

# wait_join_line NAME PID OFFSET TIMEOUT waits (up to TIMEOUT seconds) for
# the line a fresh node logs when it joins the cluster, after byte OFFSET of
# its log, and sets JOIN_CLUSTER and JOIN_MOVES ("48 of 192 shard replicas
# move to reach this node") from it. Returns 1 without one.
wait_join_line() {
  local name="$1" pid="$2" offset="$3" deadline=$((SECONDS + $4)) line
  JOIN_CLUSTER="" JOIN_MOVES=""
  while :; do
    line="$(tail -c +"$((offset + 1))" "$LOG_DIR/$name.log" 2>/dev/null | grep -m1 'msg="joining cluster"')" || line=""
    if [[ -n "$line" ]]; then
      [[ ! "$line" =~ cluster=([^ ]+) ]] || JOIN_CLUSTER="${BASH_REMATCH[1]}"
      [[ ! "$line" =~ moves=\"([^\"]*)\" ]] || JOIN_MOVES="${BASH_REMATCH[1]}"
      return 0
    fi
    started_alive "$name" "$pid" || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# poll_cluster NAME reads the router's text view (what `make owners` shows)
# and sets MOVES (shards with a move in flight), REPORTED (shards whose
# leader answered) and, from NAME's row of the member table, STATE (alive,
# leaving, DOWN, DOWN,leaving or left), HELD (replicas NAME holds by its own
# count; ? if it did not answer) and WANTS (shards whose leader's ring
# names NAME). Returns 1 if the router did not answer (or is too old to
# report moves).
poll_cluster() {
  local body line re
  MOVES="" REPORTED="" STATE="" HELD="" WANTS=""
  body="$(HTTP_TIMEOUT=5 http_get "$ADMIN_ADDR" "/api/cluster?format=text" 2>/dev/null)" || return 1
  re='moves in flight: ([0-9]+) of [0-9]+ shards[^'$'\n'']*leaders answered for ([0-9]+) of'
  [[ "$body" =~ $re ]] || return 1
  MOVES="${BASH_REMATCH[1]}" REPORTED="${BASH_REMATCH[2]}"
  line="$(awk -v n="$1" '$1 == n && $2 == "node" { print $4, $(NF - 1), $NF; exit }' <<<"$body")"
  if [[ -n "$line" ]]; then
    read -r STATE HELD WANTS <<<"$line"
    WANTS="${WANTS//[()]/}"
  fi
  return 0
}

# ring_view NAME reads the router's member table and sets RING_STAY (object
# nodes other than NAME that keep their place in the ring: alive or DOWN,
# not leaving) and RING_GONE (nodes leaving or left, which hold no place
# any more, whether or not they still run), each space-separated. Returns
# 1 if the router did not answer.
ring_view() {
  local body id role state
  RING_STAY="" RING_GONE=""
  body="$(HTTP_TIMEOUT=5 http_get "$ADMIN_ADDR" "/api/cluster?format=text" 2>/dev/null)" || return 1
  [[ "$body" == MEMBER* ]] || return 1
  while read -r id role _ state _; do
    [[ "$role" == node && "$id" != "$1" ]] || continue
    case "$state" in
      alive | DOWN) RING_STAY+="${RING_STAY:+ }$id" ;;
      *) RING_GONE+="${RING_GONE:+ }$id" ;;
    esac
  done < <(awk 'NR > 1 && NF == 0 { exit } NR > 1' <<<"$body")
  return 0
}

# wait_settled NAME PID TIMEOUT waits until the replicas have moved to
# NAME: every shard's leader answers, none reports a move in flight, and
# NAME is alive and holds as many replicas as the leaders' rings give it
# (more than none, so the leaders have seen it join). Prints progress every
# PROGRESS_EVERY seconds. Returns 1 if NAME exits or TIMEOUT seconds pass.
wait_settled() {
  local name="$1" pid="$2" timeout="$3" start="$SECONDS" last=-9999 progress
  local deadline=$((SECONDS + timeout))
  while :; do
    if ! started_alive "$name" "$pid"; then
      warn "error: $name (pid $pid) is no longer running; see $LOG_DIR/$name.log"
      return 1
    fi
    if poll_cluster "$name"; then
      if ((REPORTED == PARTITIONS && MOVES == 0)) && [[ "$STATE" == alive && "$HELD" =~ ^[0-9]+$ && "$WANTS" =~ ^[1-9][0-9]*$ ]] &&
        ((HELD == WANTS)); then
        return 0
      fi
      progress="$MOVES of $PARTITIONS shards moving; $name holds ${HELD:-?} of the ${WANTS:-?} replicas the ring gives it"
      ((REPORTED == PARTITIONS)) || progress+="; leaders answered for $REPORTED of $PARTITIONS shards"
    else
      progress="no answer from the router's http://$(addr_dial "$ADMIN_ADDR")/api/cluster"
    fi
    if ((SECONDS - last >= PROGRESS_EVERY)); then
      say "  $((SECONDS - start))s: $progress"
      last=$SECONDS
    fi
    if ((SECONDS >= deadline)); then
      warn "error: replicas still moving after ${timeout}s ($progress); they go on moving in the background: watch \`make owners\`"
      return 1
    fi
    sleep 1
  done
}
