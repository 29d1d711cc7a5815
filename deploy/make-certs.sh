#!/usr/bin/env bash
# Makes the certificates deploy/k8s needs, with openssl (the commands of
# docs/security.md), and prints the kubectl commands that load them into
# Secrets. Usage:
#
#   deploy/make-certs.sh [-n NODES] [-r ROUTERS] DIR
#
# DIR keeps the CA (ca.pem and its key ca-key.pem: keep DIR private, and the
# key out of the cluster) and the gossip key, and under DIR/secrets/ one
# directory per Secret:
#
#   hellochat-node-tls/    ca.pem gossip.key hellochat-node-N.pem hellochat-node-N-key.pem (N < NODES)
#   hellochat-router-tls/  ca.pem gossip.key hellochat-router-N.pem hellochat-router-N-key.pem (N < ROUTERS)
#   hellochat-admin-tls/   ca.pem gossip.key admin.pem admin-key.pem
#
# Each certificate names its holder as docs/security.md says,
# hellochat://ROLE/ID, where ID is the pod name the holder runs as (and
# the admin's is hellochat://admin/admin, the identity `objectnode
# decommission` presents). Run it again with a larger -n or -r before
# scaling up: it keeps the CA, the gossip key and every certificate already
# in DIR and adds the missing ones. Then re-run the kubectl commands it
# prints (they replace the Secrets in place).
#
# stdout carries only the kubectl commands, so `deploy/make-certs.sh DIR | sh`
# applies them (to the current context's namespace).
set -euo pipefail

nodes=3
routers=2
usage() {
  echo "usage: $0 [-n NODES (default 3)] [-r ROUTERS (default 2)] DIR" >&2
  exit 2
}
while getopts n:r:h opt; do
  case "$opt" in
    n) nodes="$OPTARG" ;;
    r) routers="$OPTARG" ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 1 ]] || usage
[[ "$nodes" =~ ^[1-9][0-9]*$ && "$routers" =~ ^[1-9][0-9]*$ ]] || usage
command -v openssl >/dev/null || { echo "$0: openssl not found" >&2; exit 1; }

out="$1"
umask 077
mkdir -p "$out"
ca="$out/ca.pem"
ca_key="$out/ca-key.pem"
gossip="$out/gossip.key"

if [[ ! -f "$ca" ]]; then
  echo "creating the CA in $ca" >&2
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj /CN=hellochat-ca -keyout "$ca_key" -out "$ca" 2>/dev/null
fi
[[ -f "$ca_key" ]] || { echo "$0: $ca exists but $ca_key does not" >&2; exit 1; }
if [[ ! -f "$gossip" ]]; then
  echo "creating the gossip key in $gossip" >&2
  openssl rand -hex 32 >"$gossip"
fi

# issue SECRET ROLE ID FILE USAGE: FILE.pem and FILE-key.pem in the Secret's
# directory, for hellochat://ROLE/ID, unless they exist.
issue() {
  local dir="$out/secrets/$1" role="$2" id="$3" file="$4" usage="$5"
  mkdir -p "$dir"
  cp "$ca" "$dir/ca.pem"
  cp "$gossip" "$dir/gossip.key"
  [[ -f "$dir/$file.pem" && -f "$dir/$file-key.pem" ]] && return 0
  echo "issuing hellochat://$role/$id in $dir/$file.pem" >&2
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$id" \
    -keyout "$dir/$file-key.pem" -out "$dir/$file.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$file.csr" -CA "$ca" -CAkey "$ca_key" -days 825 -sha256 \
    -out "$dir/$file.pem" 2>/dev/null \
    -extfile <(printf 'subjectAltName=URI:hellochat://%s/%s\nextendedKeyUsage=%s\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' "$role" "$id" "$usage")
  rm -f "$dir/$file.csr"
}

for ((i = 0; i < nodes; i++)); do
  issue hellochat-node-tls node "hellochat-node-$i" "hellochat-node-$i" serverAuth,clientAuth
done
for ((i = 0; i < routers; i++)); do
  issue hellochat-router-tls router "hellochat-router-$i" "hellochat-router-$i" clientAuth
done
issue hellochat-admin-tls admin admin admin clientAuth

for s in hellochat-node-tls hellochat-router-tls hellochat-admin-tls; do
  printf 'kubectl create secret generic %s --from-file=%q --dry-run=client -o yaml | kubectl apply -f -\n' \
    "$s" "$out/secrets/$s"
done
