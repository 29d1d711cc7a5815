#!/usr/bin/env bash
# Runs the failover experiment (cmd/failover) on its own cluster: separate
# data dir (data/failover) and free loopback ports, so it can run beside
# `make cluster`. KILLS and PAUSES set the cycles; extra flags pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
exec ./bin/failover --bin bin --data data/failover \
  --kills "${KILLS:-20}" --pauses "${PAUSES:-5}" "$@"
