#!/usr/bin/env bash
# Forgets object node N (1-9) of the running local cluster: for a machine
# that is gone for good (killed, never decommissioned), which otherwise
# keeps its place in every ring and its replicas in every shard it was in.
# `bin/objectnode forget` signs a tombstone of the node's current
# incarnation with the admin certificate of the development PKI and hands
# it to a running node; every member drops the node from its ring and
# refuses it from then on, and the shards' leaders move its replicas to
# the nodes that remain. This script waits for that (every shard's leader
# answering, no move in flight, the node gone from the router's member
# table), then removes the node's data dir: a node started on it would be
# refused by every member. `make add-node N=N` adds it back as a new node.
# Usage: forget-node.sh N
#
# It refuses while node N runs: kill it first (`make kill-node N=N`), or
# decommission it instead (`make remove-node N=N`), which loses nothing
# either way. FORCE=1 forgets a running node anyway: every member refuses
# it and it stops.
#
# Environment: MOVE_TIMEOUT (seconds to wait for the moves, default 120;
# on timeout they go on in the background), FORCE (1: even while it runs).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MOVE_TIMEOUT="${MOVE_TIMEOUT:-120}"
FORCE="${FORCE:-}"
[[ "$FORCE" == "" || "$FORCE" == 0 || "$FORCE" == 1 ]] || die "FORCE must be 1 (or empty), got '$FORCE'"
n="${1:-}"
node_arg "$n" forget-node
name="$NAME"

force_args=()
if pid="$(pid_of "$name")"; then
  if [[ "$FORCE" != 1 ]]; then
    die "$name is running (pid $pid): forget is for a machine that is gone for good. Kill it first (\`make kill-node N=$n\`), decommission it instead (\`make remove-node N=$n\`), or force it: \`make forget-node N=$n FORCE=1\`"
  fi
  warn "WARNING: FORCE=1: forgetting $name while it runs (pid $pid); every member will refuse it and it stops"
  force_args=(--force)
  mkdir -p "$PID_DIR"
  : >"$(removed_marker "$name")" # so that cluster.sh reports a removal, not a crash
else
  forget_stale_pid "$name"
fi
via="$(running_nodes | grep -vx "$name" | head -n 1)" || true
[[ -n "$via" ]] || die "no other object node is running to take the tombstone"
[[ -x bin/objectnode ]] || die "bin/objectnode not found; build it with \`make build\`"
grpc="$(node_grpc "$via")"

# A node just killed is still alive by gossip for a second or two, and
# the node taking the tombstone refuses a live one: wait until it is seen
# down (bounded; the forget call below is then refused with the reason).
if [[ "$FORCE" != 1 ]]; then
  down_deadline=$((SECONDS + 15))
  while poll_cluster "$name" && [[ "$STATE" == alive ]] && ((SECONDS < down_deadline)); do
    sleep 0.2
  done
fi

start=$(now_ms)
say "forgetting $name through $via: bin/objectnode forget ${force_args[*]:+${force_args[*]} }--dev-pki $DATA/pki $grpc $name"
if ! out="$("$ROOT/bin/objectnode" forget "${force_args[@]}" --dev-pki "$DATA/pki" "$grpc" "$name" 2>&1)"; then
  rm -f "$(removed_marker "$name")"
  printf '%s\n' "$out" >&2
  die "forget of $name failed (above); nothing changed"
fi
say "$out"
say "waiting up to ${MOVE_TIMEOUT}s for its replicas to move to the other nodes (progress every ${PROGRESS_EVERY}s)"

begin=$SECONDS
last=$SECONDS
deadline=$((SECONDS + MOVE_TIMEOUT))
while :; do
  progress="no answer from the router's http://$(addr_dial "$ADMIN_ADDR")/api/cluster"
  if poll_cluster "$name"; then
    if [[ -z "$STATE" ]] && ((REPORTED == PARTITIONS && MOVES == 0)); then
      break
    fi
    progress="$MOVES of $PARTITIONS shards moving"
    ((REPORTED == PARTITIONS)) || progress+="; leaders answered for $REPORTED of $PARTITIONS shards"
    [[ -z "$STATE" ]] || progress+="; the router still lists $name ($STATE)"
  fi
  if ((SECONDS >= deadline)); then
    warn "error: $name is forgotten but its replicas are still moving after ${MOVE_TIMEOUT}s ($progress); they go on in the background: watch \`make owners\`"
    exit 1
  fi
  if ((SECONDS - last >= PROGRESS_EVERY)); then
    last=$SECONDS
    say "  $((SECONDS - begin))s: $progress"
  fi
  sleep 0.5
done
if [[ "$FORCE" == 1 ]] && pid="$(pid_of "$name")"; then
  say "$name (pid $pid) still runs; every member refuses it, and it stops once it hears it was forgotten"
else
  rm -rf "${DATA:?}/$name"
  say "removed $name's data dir $DATA/$name (its incarnation is forgotten: a node started on it would be refused)"
fi
say "done in $(since "$start"): $name is forgotten and every shard is back on the ring's nodes; \`make add-node N=$n\` adds it back as a new node"
