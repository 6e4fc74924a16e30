#!/usr/bin/env bash
# Runs a private containerd (Debian's 1.6.x + runc) for one ferrokube node,
# with everything it owns under one directory, so several can run side by side
# (one per node network namespace) next to — and apart from — a system one.
#
#   deploy/containerd/containerd.sh config DIR [options]   write DIR/config.toml only
#   deploy/containerd/containerd.sh start  DIR [options]   write the config, start
#                                                          containerd in the background,
#                                                          wait until it answers
#   deploy/containerd/containerd.sh status DIR             is it running, is CRI ok
#   deploy/containerd/containerd.sh stop   DIR             delete its tasks, stop it,
#                                                          unmount what it left under DIR
#
# Layout of DIR:
#   config.toml          containerd config (version 2), from config.toml.tmpl
#   containerd.sock      gRPC socket: `ctr --address DIR/containerd.sock ...`,
#                        kubelet --container-runtime-endpoint=unix://DIR/containerd.sock
#   containerd.pid       pid of the running containerd
#   containerd.log       its log
#   root/ state/ runc/   containerd's persistent data, runtime state, runc state
#   net.d/               CNI config directory (default; the kubelet writes it)
#
# The CRI plugin runs with `restrict_oom_score_adj = true` (without it runc
# fails on these machines with "can't get final child's PID from pipe: EOF"),
# the sandbox image registry.k8s.io/pause:3.9 (built and imported by
# deploy/images/build.sh; nothing is ever pulled), runc with cgroupfs, overlayfs,
# and pod network namespaces pinned under DIR/state so `stop` can remove them.
#
# With --netns NAME containerd is started inside /var/run/netns/NAME with
# `nsenter --net=...` (network namespace only). `ip netns exec` must not be
# used: it remounts /sys in a new mount namespace, hiding the cgroup mounts, and
# runc then fails with "no cgroup mount found in mountinfo".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
template="$here/config.toml.tmpl"
ready_timeout_s=30
stop_timeout_s=15

usage() {
    cat <<'EOF'
Usage: deploy/containerd/containerd.sh config|start|status|stop DIR [options]

Commands:
  config DIR    write DIR/config.toml and print its path
  start DIR     write DIR/config.toml, start containerd in the background and
                wait (at most 30 s) until `ctr version` answers on DIR/containerd.sock;
                does nothing if it already runs
  status DIR    show the pid, whether the socket answers and the CRI plugin's status
  stop DIR      delete every task (all namespaces), stop containerd, stop any shim
                it left, unmount everything mounted under DIR; DIR can then be removed

Options (config, start):
  --netns NAME          start containerd inside /var/run/netns/NAME (nsenter --net)
  --cni-bin-dir DIR     CNI plugin binaries (default /opt/cni/bin)
  --cni-conf-dir DIR    CNI config directory (default DIR/net.d)
  --sandbox-image REF   pause image (default registry.k8s.io/pause:3.9)
  --log-level LEVEL     containerd log level (default info)
  -h, --help            show this help
EOF
}

log() { echo "containerd.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in
    -h | --help) usage; exit 0 ;;
    config | start | status | stop) cmd="$1" ;;
    *) usage >&2; die "unknown command: $1" ;;
esac
shift
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || die "$cmd needs a directory (DIR)"
dir="$1"
shift

netns=""
cni_bin_dir=/opt/cni/bin
cni_conf_dir=""
sandbox_image=registry.k8s.io/pause:3.9
log_level=info
while [ $# -gt 0 ]; do
    case "$1" in
        --netns) [ $# -ge 2 ] || die "$1 needs a name"; netns="$2"; shift 2 ;;
        --cni-bin-dir) [ $# -ge 2 ] || die "$1 needs a directory"; cni_bin_dir="$2"; shift 2 ;;
        --cni-conf-dir) [ $# -ge 2 ] || die "$1 needs a directory"; cni_conf_dir="$2"; shift 2 ;;
        --sandbox-image) [ $# -ge 2 ] || die "$1 needs an image reference"; sandbox_image="$2"; shift 2 ;;
        --log-level) [ $# -ge 2 ] || die "$1 needs a level"; log_level="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

if [ -n "$netns" ] && [ ! -e "/var/run/netns/$netns" ]; then
    die "network namespace $netns not found (/var/run/netns/$netns); create it with \`ip netns add $netns\`"
fi
case "$dir" in
    *[[:space:]\"\\]*) die "DIR must not contain spaces, quotes or backslashes: $dir" ;;
esac
if [ "$cmd" = config ] || [ "$cmd" = start ]; then
    mkdir -p "$dir" || die "cannot create $dir"
fi
if [ "$cmd" = stop ] && [ ! -e "$dir" ]; then
    log "$dir does not exist: nothing to stop"
    exit 0
fi
[ -d "$dir" ] || die "$dir is not a directory"
dir="$(cd "$dir" && pwd -P)"
[ "$dir" != / ] || die "DIR must not be /"
cni_conf_dir="${cni_conf_dir:-$dir/net.d}"
socket="$dir/containerd.sock"
pidfile="$dir/containerd.pid"
config="$dir/config.toml"
logfile="$dir/containerd.log"

# Unix socket paths are limited to 108 bytes; ".ttrpc" is appended for ttrpc.
[ "${#socket}" -le 100 ] || die "DIR is too long for a unix socket path (${#socket} > 100 bytes): $socket"

ctr_() { timeout 10 ctr --address "$socket" "$@"; }

# Prints the pid of the containerd started for DIR, if it still runs.
running_pid() {
    local pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "$config"; then
        echo "$pid"
    fi
}

answers() { timeout 5 ctr --address "$socket" version >/dev/null 2>&1; }

write_config() {
    [ -f "$template" ] || die "config template $template is missing"
    mkdir -p "$dir/root" "$dir/state" "$dir/runc" "$dir/opt" "$cni_conf_dir"
    local s
    s="$(cat "$template")"
    s="${s//@DIR@/$dir}"
    s="${s//@SOCKET@/$socket}"
    s="${s//@CNI_BIN_DIR@/$cni_bin_dir}"
    s="${s//@CNI_CONF_DIR@/$cni_conf_dir}"
    s="${s//@SANDBOX_IMAGE@/$sandbox_image}"
    s="${s//@LOG_LEVEL@/$log_level}"
    printf '%s\n' "$s" >"$config.tmp"
    mv "$config.tmp" "$config"
}

start() {
    local pid
    pid="$(running_pid)"
    if [ -n "$pid" ]; then
        log "already running (pid $pid), socket $socket"
        return 0
    fi
    command -v containerd >/dev/null || die "containerd not found: install it with \`apt-get install containerd runc\`"
    command -v runc >/dev/null || die "runc not found: install it with \`apt-get install runc\`"
    command -v ctr >/dev/null || die "ctr not found: install it with \`apt-get install containerd\`"
    [ "$(id -u)" -eq 0 ] || die "containerd needs root"
    local prefix=()
    if [ -n "$netns" ]; then
        prefix=(nsenter "--net=/var/run/netns/$netns" --)
    fi
    write_config
    rm -f "$socket" "$socket.ttrpc"
    # nsenter execs containerd, so $! is containerd's pid either way.
    "${prefix[@]}" containerd --config "$config" </dev/null >>"$logfile" 2>&1 &
    pid=$!
    echo "$pid" >"$pidfile"
    local deadline=$((SECONDS + ready_timeout_s))
    until answers; do
        if ! alive "$pid"; then
            rm -f "$pidfile"
            tail -n 20 "$logfile" >&2 || true
            die "containerd exited during startup; see $logfile"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$logfile" >&2 || true
            die "containerd (pid $pid) did not answer on $socket within ${ready_timeout_s}s; see $logfile (it is still running: containerd.sh stop $dir)"
        fi
        sleep 0.2
    done
    log "running (pid $pid${netns:+, netns $netns}), socket $socket, log $logfile"
}

status() {
    local pid
    pid="$(running_pid)"
    if [ -z "$pid" ]; then
        echo "stopped"
        return 3
    fi
    echo "running: pid $pid, socket $socket"
    if answers; then
        ctr_ plugins ls | awk 'NR == 1 || /grpc.v1.*cri|error/'
    else
        echo "the socket does not answer"
        return 1
    fi
}

# Direct children of a process.
children_of() { # PID
    local stat rest ppid pid
    for stat in /proc/[0-9]*/stat; do
        rest="$(cat "$stat" 2>/dev/null)" || continue
        # "pid (comm) state ppid ...": comm may hold spaces, so cut after ") ".
        rest="${rest##*) }"
        read -r _ ppid _ <<<"$rest"
        if [ "$ppid" = "$1" ]; then
            pid="${stat#/proc/}"
            echo "${pid%/stat}"
        fi
    done
}

# Shims serving this containerd, as "pid namespace id": argv[0] is
# containerd-shim*, and they run with "-namespace NS -id ID -address <socket>".
our_shims() {
    local f pid argv
    for f in /proc/[0-9]*/cmdline; do
        mapfile -t argv < <(tr '\0' '\n' <"$f" 2>/dev/null) || continue
        [ "${#argv[@]}" -gt 0 ] || continue
        case "${argv[0]##*/}" in containerd-shim*) ;; *) continue ;; esac
        local i ns="" id="" addr=""
        for ((i = 1; i + 1 < ${#argv[@]}; i++)); do
            case "${argv[$i]}" in
                -namespace) ns="${argv[$((i + 1))]}" ;;
                -id) id="${argv[$((i + 1))]}" ;;
                -address) addr="${argv[$((i + 1))]}" ;;
            esac
        done
        if [ "$addr" = "$socket" ]; then
            pid="${f#/proc/}"
            echo "${pid%/cmdline} $ns $id"
        fi
    done
}

# A zombie has exited; only its parent can reap it.
alive() { # PID
    [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

stop() {
    local pid ns id
    pid="$(running_pid)"
    if [ -n "$pid" ] && answers; then
        # Deleting a task kills its processes, removes its cgroup and unmounts
        # its rootfs; killing containerd alone would leave them running.
        for ns in $(ctr_ namespaces ls -q); do
            for id in $(ctr_ -n "$ns" tasks ls -q); do
                ctr_ -n "$ns" tasks delete --force "$id" >/dev/null 2>&1 ||
                    log "warning: could not delete task $ns/$id"
            done
        done
    fi
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + stop_timeout_s))
        while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        if alive "$pid"; then
            log "containerd (pid $pid) ignored SIGTERM for ${stop_timeout_s}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped containerd (pid $pid)"
    else
        log "containerd for $dir is not running"
    fi
    rm -f "$pidfile"

    # Shims whose tasks could not be deleted: kill what they run, then them,
    # and remove the socket each one had under /run/containerd/s (containerd
    # names it sha256("<grpc address>/<namespace>/<id>")).
    local shim ns id child hash
    while read -r shim ns id; do
        [ -n "$shim" ] || continue
        for child in $(children_of "$shim"); do
            kill -KILL "$child" 2>/dev/null || true
        done
        kill -KILL "$shim" 2>/dev/null || true
        hash="$(printf '%s' "$socket/$ns/$id" | sha256sum | cut -d' ' -f1)"
        rm -f "/run/containerd/s/$hash"
        log "killed leftover shim of task $ns/$id (pid $shim)"
    done < <(our_shims)

    # Everything still mounted under DIR (rootfs overlays, sandbox shm, pinned
    # pod network namespaces), deepest first.
    local mp n=0
    while IFS= read -r mp; do
        umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "warning: could not unmount $mp"
        n=$((n + 1))
    done < <(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | LC_ALL=C sort -r)
    [ "$n" -eq 0 ] || log "unmounted $n mount(s) under $dir"
}

case "$cmd" in
    config) write_config; echo "$config" ;;
    start) start ;;
    status) status ;;
    stop) stop ;;
esac
