#!/usr/bin/env bash
# Kills object node N of the local cluster with SIGKILL (a crash, not a clean
# shutdown), to watch the cluster move its rooms. Usage: kill-node.sh N
set -euo pipefail
source "$(dirname "$0")/lib.sh"

n="${1:-}"
[[ "$n" =~ ^[1-3]$ ]] || die "usage: make kill-node N=<1|2|3> (got N='$n')"
name="node$n"
pidfile="$PID_DIR/$name.pid"

if ! pid="$(pid_of "$name")"; then
  if [[ -f "$pidfile" ]]; then
    rm -f "$pidfile"
    die "$name is not running (its pid file $pidfile was stale; removed it)"
  fi
  die "$name is not running (no $pidfile); \`make cluster\` starts the cluster, \`make restart-node N=$n\` a killed node"
fi

kill -KILL "$pid"
for ((i = 0; i < 50; i++)); do
  is_running "$name" "$pid" || break
  sleep 0.1
done
is_running "$name" "$pid" && die "sent SIGKILL to $name (pid $pid) but it is still running"
rm -f "$pidfile"
say "killed $name (pid $pid) with SIGKILL; the others notice within a few seconds (watch \`make owners\`)"
say "start it again with: make restart-node N=$n"
