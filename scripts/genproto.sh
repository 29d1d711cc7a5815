#!/usr/bin/env bash
# Regenerates the committed gRPC code from proto/**.proto with pinned
# generator versions, so `make proto` gives byte-identical output anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_WANT="3.21.12"            # Debian bookworm's protobuf-compiler
PROTOC_GEN_GO="v1.36.12"         # google.golang.org/protobuf
PROTOC_GEN_GO_GRPC="v1.5.1"      # google.golang.org/grpc/cmd/protoc-gen-go-grpc

if ! command -v protoc >/dev/null; then
  echo "genproto: protoc not found; install it with: apt-get install protobuf-compiler" >&2
  exit 1
fi
have="$(protoc --version | awk '{print $2}')"
if [[ "$have" != "$PROTOC_WANT" ]]; then
  echo "genproto: warning: protoc $have, pinned $PROTOC_WANT; output may differ" >&2
fi

gobin="$(pwd)/bin/protoc-plugins"
mkdir -p "$gobin"
GOBIN="$gobin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO}"
GOBIN="$gobin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC}"

PATH="$gobin:$PATH" protoc -I proto \
  --go_out=proto --go_opt=paths=source_relative \
  --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
  proto/roompb/room.proto proto/roompb/raft.proto proto/roompb/objects.proto
echo "genproto: regenerated proto/roompb"
