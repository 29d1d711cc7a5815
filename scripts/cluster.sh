#!/usr/bin/env bash
# Runs a local hellochat cluster in the foreground: NODES object nodes
# (node1..nodeNODES, default 3, at most 9) and one router on localhost, with
# every process's log lines followed in this terminal. It also starts any
# other node that has a data dir (one added by add-node.sh in an earlier
# run: the cluster's shards need it), and follows the logs of nodes that
# restart-node.sh or add-node.sh start later. Ctrl-C stops everything,
# including those. Usually run as `make cluster [NODES=n]`.
# Usage: cluster.sh [NODES]
#
# Environment: CLUSTER_DATA (data, logs and pids; default ./data),
# HTTP_ADDR (router address, default 127.0.0.1:8080), ADMIN_ADDR (its admin
# endpoints, default 127.0.0.1:8081),
# HEALTH_TIMEOUT (seconds to wait for the router, default 15),
# STOP_TIMEOUT (seconds to wait before SIGKILL, default 10). HELLOCHAT_*
# variables reach the processes, e.g. HELLOCHAT_DEBUG=true.
set -euo pipefail

# Bash cannot trap a signal that was already ignored when it started, and
# commands that a script starts in the background (`make cluster &`) start
# with SIGINT ignored. Restore SIGINT through perl (always on Debian) so that
# `kill -INT` stops the cluster there too. Ctrl-C in a terminal needs none of
# this.
if [[ -z "${_CLUSTER_SH_REEXEC:-}" && -r /proc/$$/status ]] && command -v perl >/dev/null 2>&1; then
  sigign="$(sed -n 's/^SigIgn:[[:space:]]*//p' "/proc/$$/status")"
  if ((0x${sigign:-0} & 2)); then
    export _CLUSTER_SH_REEXEC=1
    exec perl -e '$SIG{INT} = "DEFAULT"; exec @ARGV or die "cluster.sh: exec: $!\n"' bash "$0" "$@"
  fi
fi
unset _CLUSTER_SH_REEXEC

source "$(dirname "$0")/lib.sh"

founders="${1:-3}"
[[ "$founders" =~ ^[1-9]$ ]] || die "usage: make cluster NODES=<1-9> (got NODES='$founders')"
FOUNDERS="$founders" # proc_cmd: --expect and --join of the founders

# START: the founders, then every other node with a data dir.
START=()
for name in "${NODES[@]}"; do
  if ((${name#node} <= FOUNDERS)) || has_data "$name"; then START+=("$name"); fi
done
START_PROCS=("${START[@]}" "$ROUTER")

HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-15}"
STOP_TIMEOUT="${STOP_TIMEOUT:-10}"

declare -A PIDS=()     # name -> pid this script started
declare -A OFFSET=()   # name -> log size before this run
declare -A FOLLOWED=() # name -> 1 once its log is followed
TAIL_PIDS=()
SED_PIDS=()
SLEEP_PID=""
STOPPING=""

# start_follower NAME copies NAME's log from this run's start, and whatever
# is appended later (also by a restarted node), to stdout with NAME's prefix
# on lines that lack it (panics, flag errors).
start_follower() {
  local name="$1" fd
  FOLLOWED[$name]=1
  exec {fd}> >(trap '' INT HUP; exec sed -u "/^$name | /!s/^/$name | /")
  SED_PIDS+=("$!")
  (trap '' INT HUP; exec tail -c +"$((OFFSET[$name] + 1))" -F "$LOG_DIR/$name.log" 2>/dev/null) >&"$fd" &
  TAIL_PIDS+=("$!")
  exec {fd}>&-
}

stop_followers() {
  local i p alive
  ((${#TAIL_PIDS[@]} + ${#SED_PIDS[@]})) || return 0
  sleep 0.5 # let tail pass on the last lines
  kill "${TAIL_PIDS[@]}" 2>/dev/null || true
  sleep 0.2
  kill "${SED_PIDS[@]}" 2>/dev/null || true
  for ((i = 0; i < 10; i++)); do
    alive=""
    for p in "${TAIL_PIDS[@]}" "${SED_PIDS[@]}"; do
      if kill -0 "$p" 2>/dev/null; then alive=1; fi
    done
    [[ -n "$alive" ]] || break
    sleep 0.1
  done
  TAIL_PIDS=() SED_PIDS=()
}

# stop_all stops every process that has a pid file (so also nodes started by
# restart-node.sh and add-node.sh) or that this script started: SIGTERM,
# then SIGKILL after STOP_TIMEOUT seconds.
stop_all() {
  [[ -z "$STOPPING" ]] || return 0
  STOPPING=1
  set +e # clean up as much as possible, whatever fails
  [[ -z "$SLEEP_PID" ]] || kill "$SLEEP_PID" 2>/dev/null || true
  local name pid i
  local -a names=() left=()
  local -A stop=()
  for name in "${ALL_PROCS[@]}"; do
    if pid="$(pid_of "$name")"; then
      stop[$name]="$pid"
    elif [[ -n "${PIDS[$name]:-}" ]] && started_alive "$name" "${PIDS[$name]}"; then
      stop[$name]="${PIDS[$name]}"
    else
      continue
    fi
    names+=("$name")
    kill -TERM "${stop[$name]}" 2>/dev/null || true
  done
  if ((${#names[@]})); then
    say "stopping ${names[*]} (SIGTERM, up to ${STOP_TIMEOUT}s)"
    for ((i = 0; ; i++)); do
      left=()
      for name in "${names[@]}"; do
        if ! pid_gone "${stop[$name]}"; then left+=("$name"); fi
      done
      ((${#left[@]})) || break
      if ((i >= STOP_TIMEOUT * 5)); then
        warn "still running after ${STOP_TIMEOUT}s: ${left[*]}; sending SIGKILL"
        for name in "${left[@]}"; do kill -KILL "${stop[$name]}" 2>/dev/null || true; done
        sleep 0.2
        break
      fi
      sleep 0.2
    done
  fi
  for name in "${ALL_PROCS[@]}"; do
    forget_pid "$name" || warn "$name: kept $PID_DIR/$name.pid: pid $KEPT_PID still runs"
  done
  stop_followers
  if ((${#names[@]})); then say "stopped ${names[*]}"; fi
}

on_signal() {
  if [[ -n "$STOPPING" ]]; then return 0; fi
  echo
  say "got SIG$1, stopping the cluster"
  stop_all
  exit 0
}

# fail_startup NAME reports that NAME exited while the cluster was starting.
fail_startup() {
  local name="$1"
  warn "error: $name (pid ${PIDS[$name]}) exited during startup"
  stop_all
  warn "last lines of $LOG_DIR/$name.log:"
  log_since "$name" "${OFFSET[$name]}" 20 >&2
  die "the cluster did not start; see $LOG_DIR/$name.log"
}

for f in bin/objectnode bin/router; do
  [[ -x "$f" ]] || die "$f not found; build it with \`make build\` (or use \`make cluster\`)"
done
check_http_addr
for name in "${ALL_PROCS[@]}"; do
  if pid="$(pid_of "$name")"; then
    die "$name is already running (pid $pid, $PID_DIR/$name.pid) — is another cluster running? stop it first (Ctrl-C in its terminal, or kill $pid)"
  fi
  forget_stale_pid "$name"
  rm -f "$(removed_marker "$name")"
done
check_ports "${START_PROCS[@]}" || die "not starting anything: a port is in use (see above)"

mkdir -p "$DATA"
printf '# written by scripts/cluster.sh: node1..nodeN formed this cluster (--expect N)\nFOUNDERS=%d\n' "$FOUNDERS" >"$CLUSTER_ENV.tmp"
mv -f "$CLUSTER_ENV.tmp" "$CLUSTER_ENV"

extra=""
((${#START[@]} == FOUNDERS)) || extra=" (${START[*]:FOUNDERS}: data dir from an earlier run)"
say "starting hellochat: ${#START[@]} object nodes$extra and 1 router (data in $DATA, logs in $LOG_DIR, pids in $PID_DIR)"
say "  $(printf '%-8s  %-15s  %-23s  %-15s  %s' PROCESS GRPC 'GOSSIP (TCP+UDP)' ADMIN HTTP)"
for name in "${START[@]}"; do
  say "  $(printf '%-8s  %-15s  %-23s  %-15s  %s' "$name" "$(node_grpc "$name")" "$(node_gossip "$name")" "$(node_admin "$name")" -)"
done
say "  $(printf '%-8s  %-15s  %-23s  %-15s  %s' "$ROUTER" - "$ROUTER_GOSSIP" "$ADMIN_ADDR" "$HTTP_ADDR")"

for name in "${ALL_PROCS[@]}"; do
  OFFSET[$name]="$(file_size "$LOG_DIR/$name.log")"
done
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP
trap 'rc=$?; stop_all; exit $rc' EXIT

for name in "${START_PROCS[@]}"; do
  start_proc "$name" "make cluster"
  PIDS[$name]="$STARTED_PID"
  disown "$STARTED_PID" # no "Killed" job notices from bash; stop_all uses the pids
done
for name in "${START_PROCS[@]}"; do
  start_follower "$name"
done

health_url="http://$(addr_dial "$ADMIN_ADDR")/healthz"
say "waiting up to ${HEALTH_TIMEOUT}s for $health_url"
deadline=$((SECONDS + HEALTH_TIMEOUT))
health=""
ready=""
healthy_since=""
while :; do
  for name in "${START_PROCS[@]}"; do
    started_alive "$name" "${PIDS[$name]}" || fail_startup "$name"
  done
  if health="$(HTTP_TIMEOUT=1 http_get "$ADMIN_ADDR" /healthz 2>/dev/null)"; then
    # Healthy means every shard has a leader; give gossip up to 3s more to
    # report every node started ("ok: 3 of 3 ...") so "ready" means ready.
    healthy_since="${healthy_since:-$SECONDS}"
    ready="$health"
    if [[ ! "$health" =~ ^ok:\ ([0-9]+)\ of ]] || ((BASH_REMATCH[1] >= ${#START[@]} || SECONDS - healthy_since >= 3)); then
      break
    fi
  fi
  if ((SECONDS >= deadline)) && [[ -n "$healthy_since" ]]; then
    break
  fi
  if ((SECONDS >= deadline)); then
    warn "error: the router was not healthy at $health_url within ${HEALTH_TIMEOUT}s${health:+ (last answer: ${health//$'\n'/ })}"
    stop_all
    for name in "${START_PROCS[@]}"; do
      warn "last lines of $LOG_DIR/$name.log:"
      log_since "$name" "${OFFSET[$name]}" 10 >&2
    done
    die "the cluster did not start"
  fi
  sleep 0.25
done

url="http://$(addr_url_host "$HTTP_ADDR")/"
say ""
say "ready (${ready//$'\n'/ })"
say "open $url"
say "watch the cluster live: http://$(addr_url_host "$ADMIN_ADDR")/cluster (metrics: /metrics on every ADMIN address)"
tries=("make owners ROOMS=lobby")
((${#START[@]} < 2)) || tries+=("make kill-node N=2" "make restart-node N=2")
next=$((${START[-1]#node} + 1))
((next > MAX_NODES)) || tries+=("make add-node N=$next")
((${#START[@]} < 2)) || tries+=("make remove-node N=${START[-1]#node}")
tries+=("Ctrl-C here stops everything")
say "try: $(printf '%s · ' "${tries[@]:0:${#tries[@]}-1}")${tries[-1]}"
say ""

# Follow the logs until a signal; report processes that go away or come
# back, and follow the log of a node first started by another script from
# where it stood when this script started (nothing it logged is missed).
declare -A LAST=()
for name in "${ALL_PROCS[@]}"; do LAST[$name]="${PIDS[$name]:-}"; done
while :; do
  sleep 1 &
  SLEEP_PID=$!
  wait "$SLEEP_PID" || true
  SLEEP_PID=""
  for name in "${ALL_PROCS[@]}"; do
    cur="$(pid_of "$name")" || cur=""
    [[ "$cur" != "${LAST[$name]}" ]] || continue
    if [[ -z "$cur" ]]; then
      if [[ -f "$(removed_marker "$name")" ]]; then
        say "$name (pid ${LAST[$name]}) left the cluster (make remove-node); \`make add-node N=${name#node}\` adds it back as a new node"
      else
        hint=""
        [[ "$name" != node* ]] || hint="; \`make restart-node N=${name#node}\` starts it again"
        say "$name (pid ${LAST[$name]}) is no longer running$hint"
      fi
    else
      [[ -n "${FOLLOWED[$name]:-}" ]] || start_follower "$name"
      say "$name is running (pid $cur)"
    fi
    LAST[$name]="$cur"
  done
done
