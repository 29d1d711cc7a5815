#!/usr/bin/env bash
# Starts object node N of the local cluster again, in the background, with
# the flags `make cluster` uses (scripts/lib.sh), appending to the same log
# file (which the `make cluster` terminal follows). Waits until its gRPC port
# accepts connections. Usage: restart-node.sh N
#
# Environment: START_TIMEOUT (seconds, default 15).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

START_TIMEOUT="${START_TIMEOUT:-15}"
n="${1:-}"
[[ "$n" =~ ^[1-3]$ ]] || die "usage: make restart-node N=<1|2|3> (got N='$n')"
name="node$n"
grpc="$(node_grpc "$name")"

if pid="$(pid_of "$name")"; then
  die "$name is already running (pid $pid); stop it first with \`make kill-node N=$n\`"
fi
rm -f "$PID_DIR/$name.pid"
[[ -x bin/objectnode ]] || die "bin/objectnode not found; build it with \`make build\`"
check_ports "$name" || die "not starting $name: a port it needs is in use (see above)"

offset="$(file_size "$LOG_DIR/$name.log")"
start_proc "$name" "restart-node.sh"
pid="$STARTED_PID"
say "started $name (pid $pid), waiting up to ${START_TIMEOUT}s for gRPC on $grpc"

deadline=$((SECONDS + START_TIMEOUT))
until tcp_open "$grpc"; do
  if ! is_running "$name" "$pid"; then
    rm -f "$PID_DIR/$name.pid"
    warn "error: $name exited during startup; last lines of $LOG_DIR/$name.log:"
    log_since "$name" "$offset" 20 >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    warn "error: $name (pid $pid) did not accept gRPC connections on $grpc within ${START_TIMEOUT}s; stopping it. Last lines of $LOG_DIR/$name.log:"
    log_since "$name" "$offset" 20 >&2
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do is_running "$name" "$pid" || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$PID_DIR/$name.pid"
    exit 1
  fi
  sleep 0.2
done
say "done: $name is up again (pid $pid, gRPC $grpc); its log goes to $LOG_DIR/$name.log (followed by the \`make cluster\` terminal)"
