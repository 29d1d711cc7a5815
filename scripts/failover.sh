#!/usr/bin/env bash
# Runs the failover experiment (cmd/failover) on its own cluster: separate
# data dir (data/failover) and free loopback ports, so it can run beside
# `make cluster`. ADDS, KILLS, PAUSES, WIPES and REMOVES set the steps;
# extra flags pass through (`make netlab` passes --netlab, its own data dir
# and the network faults).
set -euo pipefail
cd "$(dirname "$0")/.."
exec ./bin/failover --bin bin --data data/failover \
  --adds "${ADDS:-2}" --kills "${KILLS:-20}" --pauses "${PAUSES:-5}" \
  --wipes "${WIPES:-1}" --removes "${REMOVES:-2}" "$@"
