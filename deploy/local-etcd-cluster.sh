#!/usr/bin/env bash
# A local 3-member etcd-lite cluster on loopback, in the background.
#
#   ./deploy/local-etcd-cluster.sh [start]   install what is missing, build, start, wait for health
#   ./deploy/local-etcd-cluster.sh status    show members and health
#   ./deploy/local-etcd-cluster.sh stop      stop the members (data is kept)
#   ./deploy/local-etcd-cluster.sh clean     stop, then delete the data
#
# Environment:
#   FERROKUBE_ETCD_DIR   data, logs and pid files [${XDG_RUNTIME_DIR:-/tmp}/ferrokube-etcd]
#   ETCD_LITE_BIN        use this server binary instead of building etcd-lite
#   ETCD_LITE_STORAGE_ENGINE  redb|sled|memory (etcd-lite's --storage-engine)
#   CLIENT_PORTS / PEER_PORTS  three ports each ["12379 22379 32379" / "12380 22380 32380"];
#                        the defaults stay clear of a system etcd on 2379/2380.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${FERROKUBE_ETCD_DIR:-${XDG_RUNTIME_DIR:-/tmp}/ferrokube-etcd}"
read -r -a client_ports <<<"${CLIENT_PORTS:-12379 22379 32379}"
read -r -a peer_ports <<<"${PEER_PORTS:-12380 22380 32380}"
names=(m0 m1 m2)
health_timeout_s=60

endpoints() {
  local out=() i
  for i in 0 1 2; do out+=("127.0.0.1:${client_ports[$i]}"); done
  (IFS=,; echo "${out[*]}")
}

prog=local-etcd-cluster
# shellcheck source=deploy/lib.sh
. "$repo/deploy/lib.sh"

server_binary() {
  if [ -n "${ETCD_LITE_BIN:-}" ]; then
    [ -x "$ETCD_LITE_BIN" ] || die "ETCD_LITE_BIN=$ETCD_LITE_BIN is not an executable"
    echo "$ETCD_LITE_BIN"
    return
  fi
  command -v cargo >/dev/null || die "cargo not found: install Rust 1.85 or newer (rustup), then rerun"
  log "building etcd-lite (release)"
  (cd "$repo" && cargo build --release -p etcd-lite >&2)
  local target="${CARGO_TARGET_DIR:-$repo/target}"
  [ -x "$target/release/etcd-lite" ] || die "no binary at $target/release/etcd-lite after the build"
  echo "$target/release/etcd-lite"
}

# Pid of member $1 if it is running (and is what we started), else nothing.
running_pid() {
  local pidfile="$dir/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--name=$1 "; then
    echo "$pid"
  fi
}

healthy() {
  ETCDCTL_API=3 etcdctl --endpoints="$(endpoints)" --dial-timeout=1s --command-timeout=2s \
    endpoint health >/dev/null 2>&1
}

usage_hint() {
  local ep
  ep="$(endpoints)"
  cat <<EOF

etcd-lite is running: 3 members on loopback, data and logs in $dir

  export ETCDCTL_API=3 ENDPOINTS=$ep
  etcdctl --endpoints=\$ENDPOINTS put /hello world
  etcdctl --endpoints=\$ENDPOINTS get /hello
  etcdctl --endpoints=\$ENDPOINTS get --prefix /
  etcdctl --endpoints=\$ENDPOINTS watch --prefix /      # in another terminal, then put again
  etcdctl --endpoints=\$ENDPOINTS member list -w table
  etcdctl --endpoints=\$ENDPOINTS endpoint status -w table
  etcdctl --endpoints=\$ENDPOINTS endpoint health

Logs:  tail -f $dir/m0.log
Stop:  $0 stop      (data kept; 'clean' deletes it)
EOF
}

start() {
  install_packages protobuf-compiler etcd-client
  local all_running=1 name
  for name in "${names[@]}"; do
    [ -n "$(running_pid "$name")" ] || all_running=0
  done
  if [ "$all_running" -eq 1 ]; then
    log "already running"
  else
    local bin
    bin="$(server_binary)"
    mkdir -p "$dir"
    local initial_cluster="" i
    for i in 0 1 2; do
      initial_cluster+="${initial_cluster:+,}${names[$i]}=http://127.0.0.1:${peer_ports[$i]}"
    done
    for i in 0 1 2; do
      name="${names[$i]}"
      [ -z "$(running_pid "$name")" ] || continue
      local state=new
      # A member that already has data rejoins what it knows.
      [ -d "$dir/$name.data" ] && state=existing
      local args=(
        "--name=$name"
        "--data-dir=$dir/$name.data"
        "--listen-client-urls=http://127.0.0.1:${client_ports[$i]}"
        "--advertise-client-urls=http://127.0.0.1:${client_ports[$i]}"
        "--listen-peer-urls=http://127.0.0.1:${peer_ports[$i]}"
        "--initial-advertise-peer-urls=http://127.0.0.1:${peer_ports[$i]}"
        "--initial-cluster=$initial_cluster"
        "--initial-cluster-state=$state"
        "--initial-cluster-token=ferrokube-local"
      )
      [ -z "${ETCD_LITE_STORAGE_ENGINE:-}" ] || args+=("--storage-engine=$ETCD_LITE_STORAGE_ENGINE")
      log "starting $name (client 127.0.0.1:${client_ports[$i]}, peer 127.0.0.1:${peer_ports[$i]})"
      setsid "$bin" "${args[@]}" </dev/null >>"$dir/$name.log" 2>&1 &
      echo $! >"$dir/$name.pid"
    done
  fi

  log "waiting for 'etcdctl endpoint health' (up to ${health_timeout_s}s)"
  local deadline=$((SECONDS + health_timeout_s))
  until healthy; do
    for name in "${names[@]}"; do
      [ -n "$(running_pid "$name")" ] || die "$name is not running; last lines of $dir/$name.log:
$(tail -n 20 "$dir/$name.log" 2>/dev/null)"
    done
    [ "$SECONDS" -lt "$deadline" ] || die "not healthy after ${health_timeout_s}s; see $dir/*.log"
    sleep 0.5
  done
  usage_hint
}

stop() {
  local name pid stopped=0
  for name in "${names[@]}"; do
    pid="$(running_pid "$name")"
    if [ -n "$pid" ]; then
      kill "$pid"
      stopped=1
      local deadline=$((SECONDS + 10))
      while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      log "stopped $name (pid $pid)"
    fi
    rm -f "$dir/$name.pid"
  done
  [ "$stopped" -eq 1 ] || log "nothing running"
}

status() {
  local name pid
  for name in "${names[@]}"; do
    pid="$(running_pid "$name")"
    if [ -n "$pid" ]; then echo "$name: running (pid $pid)"; else echo "$name: stopped"; fi
  done
  if healthy; then
    ETCDCTL_API=3 etcdctl --endpoints="$(endpoints)" endpoint status -w table
  else
    echo "cluster: not healthy"
    return 1
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  clean) stop; rm -rf "$dir"; log "deleted $dir" ;;
  -h|--help|help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (start, stop, status, clean)" ;;
esac
