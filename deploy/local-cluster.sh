#!/usr/bin/env bash
# A local control plane on loopback, in the background: a 3-member etcd-lite
# cluster and kube-apiserver on https://127.0.0.1:6443, with a kubeadm-style
# PKI and an admin kubeconfig for kubectl.
#
#   ./deploy/local-cluster.sh [start]   install what is missing, build, start, wait until ready
#   ./deploy/local-cluster.sh status    show what runs
#   ./deploy/local-cluster.sh stop      stop everything (data and certificates are kept)
#   ./deploy/local-cluster.sh clean     stop, then delete data and certificates
#
# Environment:
#   FERROKUBE_DIR   certificates, kubeconfigs, logs [${XDG_RUNTIME_DIR:-/tmp}/ferrokube]
#   SECURE_PORT     kube-apiserver's --secure-port [6443]
#   (and those of ./deploy/local-etcd-cluster.sh for the etcd-lite members)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${FERROKUBE_DIR:-${XDG_RUNTIME_DIR:-/tmp}/ferrokube}"
port="${SECURE_PORT:-6443}"
kubeconfig="$dir/kubernetes/admin.conf"
ready_timeout_s=60
export FERROKUBE_ETCD_DIR="${FERROKUBE_ETCD_DIR:-$dir/etcd}"

prog=local-cluster
# shellcheck source=deploy/lib.sh
. "$repo/deploy/lib.sh"

build() {
  command -v cargo >/dev/null || die "cargo not found: install Rust 1.85 or newer (rustup), then rerun"
  log "building etcd-lite and kube-apiserver (release)"
  (cd "$repo" && cargo build --release -p etcd-lite -p kube-apiserver >&2)
  target="${CARGO_TARGET_DIR:-$repo/target}/release"
}

apiserver_pid() {
  local pid
  [ -f "$dir/kube-apiserver.pid" ] || return 0
  pid="$(cat "$dir/kube-apiserver.pid")"
  if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--secure-port=$port "; then
    echo "$pid"
  fi
}

ready() {
  kubectl --kubeconfig "$kubeconfig" --request-timeout=2s get --raw /readyz >/dev/null 2>&1
}

start() {
  install_packages protobuf-compiler etcd-client openssl
  command -v kubectl >/dev/null || die "kubectl not found: install kubectl 1.32, then rerun"
  build
  ETCD_LITE_BIN="$target/etcd-lite" "$repo/deploy/local-etcd-cluster.sh" start >/dev/null
  local endpoints="http://127.0.0.1:12379,http://127.0.0.1:22379,http://127.0.0.1:32379"
  if [ -n "${CLIENT_PORTS:-}" ]; then
    read -r -a ports <<<"$CLIENT_PORTS"
    endpoints="http://127.0.0.1:${ports[0]},http://127.0.0.1:${ports[1]},http://127.0.0.1:${ports[2]}"
  fi
  mkdir -p "$dir"
  "$repo/deploy/pki.sh" -d "$dir/kubernetes" -s "https://127.0.0.1:$port" >/dev/null
  if [ -n "$(apiserver_pid)" ]; then
    log "kube-apiserver already running"
  else
    log "starting kube-apiserver on https://127.0.0.1:$port"
    setsid "$target/kube-apiserver" \
      "--etcd-servers=$endpoints" \
      "--bind-address=127.0.0.1" \
      "--secure-port=$port" \
      "--tls-cert-file=$dir/kubernetes/pki/apiserver.crt" \
      "--tls-private-key-file=$dir/kubernetes/pki/apiserver.key" \
      "--client-ca-file=$dir/kubernetes/pki/ca.crt" \
      </dev/null >>"$dir/kube-apiserver.log" 2>&1 &
    echo $! >"$dir/kube-apiserver.pid"
  fi
  log "waiting for /readyz (up to ${ready_timeout_s}s)"
  local deadline=$((SECONDS + ready_timeout_s))
  until ready; do
    [ -n "$(apiserver_pid)" ] || die "kube-apiserver exited; last lines of $dir/kube-apiserver.log:
$(tail -n 20 "$dir/kube-apiserver.log" 2>/dev/null)"
    [ "$SECONDS" -lt "$deadline" ] || die "not ready after ${ready_timeout_s}s; see $dir/kube-apiserver.log"
    sleep 0.5
  done
  cat <<EOF

The control plane is running: etcd-lite (3 members) and kube-apiserver on
https://127.0.0.1:$port. Certificates and kubeconfigs are in $dir/kubernetes.

  export KUBECONFIG=$kubeconfig
  kubectl get namespaces
  kubectl create deployment web --image=busybox:1.36 --replicas=2
  kubectl get deployments -o wide
  kubectl api-resources
  etcdctl --endpoints=127.0.0.1:12379 get /registry --prefix --keys-only

No node joins this cluster yet (the kubelet is not part of it; the scheduler
and controllers come later), so objects are stored and served but no pod runs.
Logs:  tail -f $dir/kube-apiserver.log
Stop:  $0 stop      (data kept; 'clean' deletes it)
EOF
}

stop() {
  local pid
  pid="$(apiserver_pid)"
  if [ -n "$pid" ]; then
    kill "$pid"
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    log "stopped kube-apiserver (pid $pid)"
  fi
  rm -f "$dir/kube-apiserver.pid"
  "$repo/deploy/local-etcd-cluster.sh" stop
}

status() {
  local pid
  pid="$(apiserver_pid)"
  if [ -n "$pid" ]; then echo "kube-apiserver: running (pid $pid)"; else echo "kube-apiserver: stopped"; fi
  "$repo/deploy/local-etcd-cluster.sh" status
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  clean) stop; "$repo/deploy/local-etcd-cluster.sh" clean; rm -rf "$dir"; log "deleted $dir" ;;
  -h|--help|help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (start, stop, status, clean)" ;;
esac
