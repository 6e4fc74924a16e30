#!/usr/bin/env bash
# A local cluster on loopback, in the background: a 3-member etcd-lite
# cluster and kube-apiserver on https://127.0.0.1:6443, with a kubeadm-style
# PKI and an admin kubeconfig for kubectl, and — as root — one node: a private
# containerd and the kubelet on this host, pods on the cni0 bridge
# (10.244.0.0/24) through cni-bridge.
#
#   ./deploy/local-cluster.sh [start]   install what is missing, build, start, wait until ready
#   ./deploy/local-cluster.sh status    show what runs
#   ./deploy/local-cluster.sh stop      stop everything (data and certificates are kept)
#   ./deploy/local-cluster.sh clean     stop, then delete data and certificates
#
# Environment:
#   FERROKUBE_DIR   certificates, kubeconfigs, logs [${XDG_RUNTIME_DIR:-/tmp}/ferrokube]
#   SECURE_PORT     kube-apiserver's --secure-port [6443]
#   NODE_NAME       the node's name [local-node]
#   NO_NODE=1       control plane only (also the case when not root)
#   (and those of ./deploy/local-etcd-cluster.sh for the etcd-lite members)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${FERROKUBE_DIR:-${XDG_RUNTIME_DIR:-/tmp}/ferrokube}"
port="${SECURE_PORT:-6443}"
kubeconfig="$dir/kubernetes/admin.conf"
node_name="${NODE_NAME:-local-node}"
node_dir="$dir/node"
ready_timeout_s=60
export FERROKUBE_ETCD_DIR="${FERROKUBE_ETCD_DIR:-$dir/etcd}"

prog=local-cluster
# shellcheck source=deploy/lib.sh
. "$repo/deploy/lib.sh"

with_node() {
  [ "${NO_NODE:-0}" != 1 ] && [ "$(id -u)" -eq 0 ]
}

build() {
  command -v cargo >/dev/null || die "cargo not found: install Rust 1.85 or newer (rustup), then rerun"
  local crates=(-p etcd-lite -p kube-apiserver)
  with_node && crates+=(-p kubelet)
  log "building ${crates[*]//-p /} (release)"
  (cd "$repo" && cargo build --release "${crates[@]}" >&2)
  target="${CARGO_TARGET_DIR:-$repo/target}/release"
  if with_node; then
    # Linked statically, as installed on nodes (the alias is in .cargo/config.toml).
    log "building cni-bridge (release, static)"
    (cd "$repo" && cargo build-cni-bridge >&2)
    cni_bridge="${CARGO_TARGET_DIR:-$repo/target}/x86_64-unknown-linux-gnu/release/cni-bridge"
  fi
}

pid_of() { # NAME: the pid in $dir/NAME.pid if that process still runs NAME
  local pid
  [ -f "$dir/$1.pid" ] || return 0
  pid="$(cat "$dir/$1.pid")"
  if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$1"; then
    echo "$pid"
  fi
}

# The node: containerd (own root, state and socket under $node_dir), the test
# images imported, the kubelet with cni-bridge as the CNI plugin.
start_node() {
  install_packages containerd runc busybox-static iptables iproute2
  mkdir -p "$node_dir/cni-bin" "$node_dir/manifests"
  ln -sf "$cni_bridge" "$node_dir/cni-bin/cni-bridge"
  ln -sf "$cni_bridge" "$node_dir/cni-bin/loopback"
  "$repo/deploy/containerd/containerd.sh" start "$node_dir/containerd" \
    --cni-bin-dir "$node_dir/cni-bin" --cni-conf-dir "$node_dir/net.d" >/dev/null
  "$repo/deploy/images/build.sh" --out "$dir/images" --import \
    --address "$node_dir/containerd/containerd.sock" >/dev/null
  if [ -n "$(pid_of kubelet)" ]; then
    log "kubelet already running"
    return
  fi
  cat >"$node_dir/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
podCIDR: 10.244.0.0/24
clusterDNS: [10.96.0.10]
cgroupDriver: cgroupfs
staticPodPath: $node_dir/manifests
podLogsDir: $node_dir/pod-logs
authentication:
  x509:
    clientCAFile: $dir/kubernetes/pki/ca.crt
YAML
  log "starting the kubelet (node $node_name)"
  setsid "$target/kubelet" \
    "--config=$node_dir/kubelet.yaml" \
    "--kubeconfig=$dir/kubernetes/kubelet.conf" \
    "--hostname-override=$node_name" \
    "--node-ip=127.0.0.1" \
    "--root-dir=$node_dir/root" \
    "--container-runtime-endpoint=unix://$node_dir/containerd/containerd.sock" \
    "--cni-conf-dir=$node_dir/net.d" \
    "--cni-bin-dir=$node_dir/cni-bin" \
    </dev/null >>"$dir/kubelet.log" 2>&1 &
  echo $! >"$dir/kubelet.pid"
}

node_ready() {
  kubectl --kubeconfig "$kubeconfig" --request-timeout=2s get node "$node_name" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True
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
  "$repo/deploy/pki.sh" -d "$dir/kubernetes" -s "https://127.0.0.1:$port" -n "$node_name" >/dev/null
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
      "--kubelet-client-certificate=$dir/kubernetes/pki/apiserver-kubelet-client.crt" \
      "--kubelet-client-key=$dir/kubernetes/pki/apiserver-kubelet-client.key" \
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local" \
      "--service-account-signing-key-file=$dir/kubernetes/pki/sa.key" \
      "--service-account-key-file=$dir/kubernetes/pki/sa.pub" \
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
  if with_node; then
    start_node
    log "waiting for node $node_name to be Ready (up to ${ready_timeout_s}s)"
    deadline=$((SECONDS + ready_timeout_s))
    until node_ready; do
      [ -n "$(pid_of kubelet)" ] || die "the kubelet exited; last lines of $dir/kubelet.log:
$(tail -n 20 "$dir/kubelet.log" 2>/dev/null)"
      [ "$SECONDS" -lt "$deadline" ] || die "node not Ready after ${ready_timeout_s}s; see $dir/kubelet.log"
      sleep 0.5
    done
    cat <<EOF

The cluster is running: etcd-lite (3 members), kube-apiserver on
https://127.0.0.1:$port and node $node_name (containerd + kubelet on this
host, pods on cni0, 10.244.0.0/24). Certificates and kubeconfigs are in
$dir/kubernetes. There is no scheduler yet: a pod runs when it names the node.

  export KUBECONFIG=$kubeconfig
  kubectl get nodes -o wide
  kubectl run web --image=busybox:1.36 --overrides='{"spec":{"nodeName":"$node_name"}}' -- httpd -f -v -p 8080
  kubectl get pods -o wide
  kubectl exec web -- wget -qO- http://127.0.0.1:8080/   # 404 from busybox httpd: it answers
  kubectl logs web
  etcdctl --endpoints=127.0.0.1:12379 get /registry --prefix --keys-only

Static pods: put manifests in $node_dir/manifests.
Logs:  tail -f $dir/kube-apiserver.log $dir/kubelet.log
Stop:  $0 stop      (data kept; 'clean' deletes it)
EOF
    return
  fi
  cat <<EOF

The control plane is running: etcd-lite (3 members) and kube-apiserver on
https://127.0.0.1:$port. Certificates and kubeconfigs are in $dir/kubernetes.

  export KUBECONFIG=$kubeconfig
  kubectl get namespaces
  kubectl create deployment web --image=busybox:1.36 --replicas=2
  kubectl get deployments -o wide
  kubectl api-resources
  etcdctl --endpoints=127.0.0.1:12379 get /registry --prefix --keys-only

No node was started (that needs root; NO_NODE=1 skips it), so objects are
stored and served but no pod runs.
Logs:  tail -f $dir/kube-apiserver.log
Stop:  $0 stop      (data kept; 'clean' deletes it)
EOF
}

# terminate NAME PID: SIGTERM, SIGKILL after 10 s, then drop NAME's pid file.
terminate() {
  if [ -n "$2" ]; then
    kill "$2"
    local deadline=$((SECONDS + 10))
    while kill -0 "$2" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    kill -0 "$2" 2>/dev/null && kill -9 "$2"
    log "stopped $1 (pid $2)"
  fi
  rm -f "$dir/$1.pid"
}

stop() {
  terminate kubelet "$(pid_of kubelet)"
  if [ -e "$node_dir/containerd/containerd.pid" ]; then
    "$repo/deploy/containerd/containerd.sh" stop "$node_dir/containerd" >/dev/null
  fi
  terminate kube-apiserver "$(apiserver_pid)"
  "$repo/deploy/local-etcd-cluster.sh" stop
}

status() {
  local pid
  pid="$(apiserver_pid)"
  if [ -n "$pid" ]; then echo "kube-apiserver: running (pid $pid)"; else echo "kube-apiserver: stopped"; fi
  pid="$(pid_of kubelet)"
  if [ -n "$pid" ]; then echo "kubelet: running (pid $pid)"; else echo "kubelet: stopped"; fi
  "$repo/deploy/local-etcd-cluster.sh" status
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  clean)
    stop
    "$repo/deploy/local-etcd-cluster.sh" clean
    # Volumes the kubelet mounted (tmpfs) go before the files.
    grep -o " $dir/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$dir"
    log "deleted $dir"
    ;;
  -h|--help|help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (start, stop, status, clean)" ;;
esac
