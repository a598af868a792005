#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver and etcd) from Go modules into
# bin/. The build is pinned by hack/controlplane/go.mod and go.sum; a stamp file
# holding a hash of those pins lets a second run skip the (about 8 minute) build.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="${BIN_DIR:-$root/bin}"
src="$root/hack/controlplane"
mkdir -p "$bin"

want=$(cat "$src/go.mod" "$src/go.sum" "$src/etcd/main.go" | sha256sum | cut -c1-16)
stamp="$bin/.controlplane-$want"
if [[ -x "$bin/kube-apiserver" && -x "$bin/etcd" && -f "$stamp" ]]; then
  echo "control plane: kube-apiserver and etcd already built in $bin (pins $want)"
  exit 0
fi

start=$(date +%s)
# Print elapsed time while the long build runs, so a first run never looks hung.
( while sleep 30; do echo "  ... still building the control plane ($(( $(date +%s) - start ))s elapsed)"; done ) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT

cd "$src"
echo "control plane: building etcd (go.etcd.io/etcd/server/v3) into $bin"
go build -trimpath -o "$bin/etcd.tmp" ./etcd
mv "$bin/etcd.tmp" "$bin/etcd"
echo "control plane: etcd built after $(( $(date +%s) - start ))s"
echo "control plane: building kube-apiserver (k8s.io/kubernetes, first time takes about 8 minutes on 2 cores)"
go build -trimpath -ldflags="-s -w" -o "$bin/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$bin/kube-apiserver.tmp" "$bin/kube-apiserver"
rm -f "$bin"/.controlplane-*
touch "$stamp"
echo "control plane: done in $(( $(date +%s) - start ))s"
