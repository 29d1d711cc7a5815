#!/usr/bin/env bash
# Adds object node N (1-9) to the running local cluster: starts it in the
# background on a fresh data dir with --expect 0 (it only joins, never forms
# a cluster) and --join the cluster's gossip addresses (scripts/lib.sh),
# appending its log to data/logs/nodeN.log, which the `make cluster`
# terminal follows as soon as the node runs. Then it prints how many
# replicas the join moves and waits until they have moved: every shard's
# leader reports no move in flight and the node holds every replica the
# ring gives it. Usage: add-node.sh N
#
# Environment: START_TIMEOUT (seconds for gRPC to answer, default 15),
# MOVE_TIMEOUT (seconds to wait for the moves, default 120).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

START_TIMEOUT="${START_TIMEOUT:-15}"
MOVE_TIMEOUT="${MOVE_TIMEOUT:-120}"
n="${1:-}"
node_arg "$n" add-node
name="$NAME"
grpc="$(node_grpc "$name")"

if pid="$(pid_of "$name")"; then
  die "$name is already running (pid $pid): it is in the cluster already (\`make owners\` shows it)"
fi
forget_stale_pid "$name"
if has_data "$name"; then
  die "$name already has data in $DATA/$name: it was in this cluster before. \`make restart-node N=$n\` starts it on that data; to add it as a brand-new node instead, remove $DATA/$name first"
fi
running="$(running_nodes | paste -sd ' ' -)"
[[ -n "$running" ]] || die "no cluster is running (no node has a live pid file in $PID_DIR); start one with \`make cluster\`"
poll_cluster "$name" ||
  die "the router at http://$(addr_dial "$ADMIN_ADDR")/api/cluster does not answer (or is older than this script: rebuild and restart the cluster); is the cluster running? If its admin endpoint listens elsewhere, pass ADMIN_ADDR=host:port"
[[ -x bin/objectnode ]] || die "bin/objectnode not found; build it with \`make build\`"
check_ports "$name" || die "not starting $name: a port it needs is in use (see above)"

offset="$(file_size "$LOG_DIR/$name.log")"
rm -f "$(removed_marker "$name")"
start=$(now_ms)
start_proc "$name" "add-node.sh" 0
pid="$STARTED_PID"
say "started $name (pid $pid) to join the running cluster ($running): gRPC $grpc, gossip $(node_gossip "$name"), data $DATA/$name"
say "its log goes to $LOG_DIR/$name.log (the \`make cluster\` terminal follows it within a second)"
wait_grpc "$name" "$pid" "$offset" "$START_TIMEOUT"
if wait_join_line "$name" "$pid" "$offset" 30; then
  say "$name joined cluster $JOIN_CLUSTER after $(since "$start"): $JOIN_MOVES"
else
  warn "error: $name did not join the cluster within 30s (it still runs; stop it with \`make kill-node N=$n\`). Last lines of $LOG_DIR/$name.log:"
  log_since "$name" "$offset" 20 >&2
  exit 1
fi
say "waiting up to ${MOVE_TIMEOUT}s until the replicas have moved (progress every ${PROGRESS_EVERY}s)"
wait_settled "$name" "$pid" "$MOVE_TIMEOUT" || exit 1
say "done in $(since "$start"): $name holds $HELD shard replicas, no move in flight (see \`make owners\`)"
