#!/usr/bin/env bash
# Removes object node N (1-9) from the running local cluster for good:
# `bin/objectnode decommission` asks it to leave the ring; the shards'
# leaders move every replica it holds to other nodes, and then it exits by
# itself. This script waits for that (showing the replicas it still holds),
# removes its pid file and, once the node has logged that it holds no
# replica, its data dir (a node restarted on it would only leave again;
# `make add-node N=N` adds it back as a new node). Usage: remove-node.sh N
#
# It refuses when the ring would keep fewer nodes than the replication
# factor (3): nodes still leaving, or left, count as gone. FORCE=1 goes
# ahead anyway (the node's decommission endpoint enforces the same rule and
# takes --force): every shard then runs on fewer replicas, and one more
# failure can stop it.
#
# Environment: MOVE_TIMEOUT (seconds to wait for the node to leave, default
# 120; on timeout it goes on leaving in the background), FORCE (1: below
# the replication factor too).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MOVE_TIMEOUT="${MOVE_TIMEOUT:-120}"
FORCE="${FORCE:-}"
[[ "$FORCE" == "" || "$FORCE" == 0 || "$FORCE" == 1 ]] || die "FORCE must be 1 (or empty), got '$FORCE'"
n="${1:-}"
node_arg "$n" remove-node
name="$NAME"
grpc="$(node_grpc "$name")"

if ! pid="$(pid_of "$name")"; then
  forget_stale_pid "$name"
  if has_data "$name"; then
    die "$name is not running; it must run to hand its replicas over: \`make restart-node N=$n\`, then \`make remove-node N=$n\`"
  fi
  running="$(running_nodes | paste -sd ' ' -)"
  die "$name is not part of this cluster (not running, no $DATA/$name); running nodes: ${running:-none}"
fi
others="$(running_nodes | grep -vx "$name" | paste -sd ' ' -)" || true
[[ -n "$others" ]] || die "$name is the only running node: there is nowhere to move its replicas"
[[ -x bin/objectnode ]] || die "bin/objectnode not found; build it with \`make build\`"
force_args=()
if ring_view "$name"; then
  stay=$(wc -w <<<"$RING_STAY")
  if ((stay < REPLICATION_FACTOR)); then
    why="the ring would keep $stay node(s) (${RING_STAY:-none}) for a replication factor of $REPLICATION_FACTOR"
    [[ -z "$RING_GONE" ]] || why+="; leaving or left, counted as gone: $RING_GONE"
    if [[ "$FORCE" != 1 ]]; then
      die "refusing to remove $name: $why. Every shard would run on $stay replica(s), and one more failure would stop shards. Add a node first (\`make add-node N=<k>\`), or force it: \`make remove-node N=$n FORCE=1\`"
    fi
    warn "WARNING: FORCE=1: removing $name although $why."
    warn "WARNING: every shard will run on $stay replica(s); one more failure can stop shards until a node is added."
    force_args=(--force)
  fi
else
  # The node checks the same rule itself; this only loses the early word.
  warn "the router at http://$(addr_dial "$ADMIN_ADDR")/api/cluster did not answer: cannot count the ring here; $name checks the replication factor itself"
  [[ "$FORCE" != 1 ]] || force_args=(--force)
fi

offset="$(file_size "$LOG_DIR/$name.log")"
marker="$(removed_marker "$name")"
mkdir -p "$PID_DIR"
: >"$marker" # before it exits, so that cluster.sh reports a removal, not a crash
start=$(now_ms)
say "asking $name (pid $pid, gRPC $grpc) to leave the cluster: bin/objectnode decommission ${force_args[*]:+${force_args[*]} }--dev-pki $DATA/pki $grpc"
if ! out="$("$ROOT/bin/objectnode" decommission "${force_args[@]}" --dev-pki "$DATA/pki" "$grpc" 2>&1)"; then
  rm -f "$marker"
  printf '%s\n' "$out" >&2
  die "decommission of $name failed (above); it keeps running"
fi
say "$out"
say "waiting up to ${MOVE_TIMEOUT}s for $name to hand over its replicas and exit (progress every ${PROGRESS_EVERY}s)"

begin=$SECONDS
last=$SECONDS # the decommission answer just said how many it holds
deadline=$((SECONDS + MOVE_TIMEOUT))
while ! pid_gone "$pid"; do
  if ((SECONDS >= deadline)); then
    progress=""
    if poll_cluster "$name"; then progress=" (it holds $HELD replicas; $MOVES of $PARTITIONS shards moving)"; fi
    warn "error: $name is still leaving after ${MOVE_TIMEOUT}s$progress; it goes on in the background and stops by itself once it holds no replica: watch \`make owners\`"
    exit 1
  fi
  if ((SECONDS - last >= PROGRESS_EVERY)); then
    last=$SECONDS
    if poll_cluster "$name"; then
      say "  $((SECONDS - begin))s: $name ($STATE) still holds $HELD shard replicas; $MOVES of $PARTITIONS shards moving"
    else
      say "  $((SECONDS - begin))s: $name is still running (the router at http://$(addr_dial "$ADMIN_ADDR")/api/cluster did not answer)"
    fi
  fi
  sleep 0.2
done
took="$(since "$start")"
forget_pid "$name" "$pid" || true # gone: the loop above saw to it
if tail -c +"$((offset + 1))" "$LOG_DIR/$name.log" 2>/dev/null | grep -q 'msg="decommissioned: '; then
  rm -rf "${DATA:?}/$name"
  say "done in $took: $name holds no replica and has exited; removed its data dir $DATA/$name"
  say "the others keep it in their member list as \"left\"; \`make add-node N=$n\` adds it back as a new node"
else
  rm -f "$marker"
  warn "error: $name exited after $took without logging that it holds no replica; kept $DATA/$name. Last lines of $LOG_DIR/$name.log:"
  log_since "$name" "$offset" 20 >&2
  exit 1
fi
