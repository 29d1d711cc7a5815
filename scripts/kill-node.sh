#!/usr/bin/env bash
# Kills object node N (1-9) of the local cluster with SIGKILL (a crash, not a
# clean shutdown), to watch the cluster move its rooms. Its data dir stays;
# `rm -rf data/nodeN` afterwards stands for a lost disk (restart-node.sh then
# starts it as a new replica). Usage: kill-node.sh N
set -euo pipefail
source "$(dirname "$0")/lib.sh"

n="${1:-}"
node_arg "$n" kill-node
name="$NAME"
pidfile="$PID_DIR/$name.pid"

if ! pid="$(pid_of "$name")"; then
  if [[ -f "$pidfile" ]]; then
    forget_stale_pid "$name"
    die "$name is not running (its pid file $pidfile was stale; removed it)"
  fi
  if has_data "$name"; then
    die "$name is not running (no $pidfile); \`make restart-node N=$n\` starts it again"
  fi
  running="$(running_nodes | paste -sd ' ' -)"
  die "$name is not running and has no data dir ($DATA/$name); running nodes: ${running:-none}"
fi

kill -KILL "$pid"
for ((i = 0; i < 50; i++)); do
  ! pid_gone "$pid" || break
  sleep 0.1
done
forget_pid "$name" "$pid" || die "sent SIGKILL to $name (pid $pid) but it is still running (kept $pidfile)"
say "killed $name (pid $pid) with SIGKILL; the others notice within a few seconds (watch \`make owners\`)"
say "start it again with: make restart-node N=$n  (after \`rm -rf $DATA/$name\` it comes back as a new replica, like a replaced disk)"
