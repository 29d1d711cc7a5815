// Package deploy holds no code: it is the home of the container image
// (Dockerfile), the compose file, the Kubernetes manifests (k8s/, ops/) and
// make-certs.sh, and its tests check them offline: the manifests decode
// strictly into the Kubernetes API types, every command line uses only
// flags the binaries accept, and the certificates make-certs.sh issues are
// the ones the manifests read and the security package accepts. See
// README.md in this directory.
package deploy
