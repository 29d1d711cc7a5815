#!/usr/bin/env bash
# Starts object node N (1-9) of the local cluster again, in the background,
# with the flags `make cluster` uses (scripts/lib.sh), appending to the same
# log file (which the `make cluster` terminal follows). Waits until its gRPC
# port accepts connections. Usage: restart-node.sh N
#
# On its data dir the node picks up where it stopped. Without one (the disk
# was wiped: `make kill-node N=3; rm -rf data/node3; make restart-node N=3`)
# it joins the cluster as a new replica: the shards' leaders add it, copy
# their data to it and drop its old incarnation (shown as node3(old) by
# `make owners`); the script then waits, like add-node.sh, until no move is
# in flight.
#
# Environment: START_TIMEOUT (seconds for gRPC to answer, default 15),
# MOVE_TIMEOUT (seconds to wait for the moves, default 120).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

START_TIMEOUT="${START_TIMEOUT:-15}"
MOVE_TIMEOUT="${MOVE_TIMEOUT:-120}"
n="${1:-}"
node_arg "$n" restart-node
name="$NAME"
grpc="$(node_grpc "$name")"

if pid="$(pid_of "$name")"; then
  die "$name is already running (pid $pid); stop it first with \`make kill-node N=$n\`"
fi
forget_stale_pid "$name"
fresh=""
has_data "$name" || fresh=1
# A node without a data dir that is no founder and never logged here was
# never part of this cluster: that is add-node's job.
if [[ -n "$fresh" ]] && ((n > FOUNDERS)) && [[ ! -s "$LOG_DIR/$name.log" ]]; then
  die "$name was never part of this cluster (no $DATA/$name, no $LOG_DIR/$name.log); add it with \`make add-node N=$n\`"
fi
[[ -x bin/objectnode ]] || die "bin/objectnode not found; build it with \`make build\`"
check_ports "$name" || die "not starting $name: a port it needs is in use (see above)"

offset="$(file_size "$LOG_DIR/$name.log")"
if [[ -f "$(removed_marker "$name")" ]]; then
  say "$name left the cluster earlier (make remove-node): it joins again as a new node, like \`make add-node N=$n\`"
  rm -f "$(removed_marker "$name")"
fi
start=$(now_ms)
start_proc "$name" "restart-node.sh"
pid="$STARTED_PID"
if [[ -n "$fresh" ]]; then
  say "started $name (pid $pid) on an empty data dir ($DATA/$name): it joins the cluster as a new replica"
else
  say "started $name (pid $pid) on its data dir $DATA/$name"
fi
say "waiting up to ${START_TIMEOUT}s for gRPC on $grpc"
wait_grpc "$name" "$pid" "$offset" "$START_TIMEOUT"
say "$name is up (pid $pid, gRPC $grpc) after $(since "$start"); its log goes to $LOG_DIR/$name.log (followed by the \`make cluster\` terminal)"
[[ -n "$fresh" ]] || exit 0

if ! poll_cluster "$name"; then
  say "the router's admin endpoint http://$(addr_dial "$ADMIN_ADDR")/ does not answer: not waiting for the replicas to move (\`make owners\` shows them once it does)"
  exit 0
fi
if wait_join_line "$name" "$pid" "$offset" 30; then
  say "$name joined cluster $JOIN_CLUSTER: $JOIN_MOVES"
else
  warn "$name did not log \"joining cluster\" within 30s; last lines of $LOG_DIR/$name.log:"
  log_since "$name" "$offset" 10 >&2
fi
say "waiting up to ${MOVE_TIMEOUT}s until no move is in flight (progress every ${PROGRESS_EVERY}s)"
wait_settled "$name" "$pid" "$MOVE_TIMEOUT" || exit 1
say "done in $(since "$start"): $name holds $HELD shard replicas, no move in flight (see \`make owners\`)"
