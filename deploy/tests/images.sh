#!/usr/bin/env bash
# End-to-end test of deploy/images/build.sh and deploy/containerd/containerd.sh
# against the real containerd + runc, offline, in a temporary directory:
#
#   1. two builds give byte-identical tarballs and the same manifest digests
#   2. a private containerd starts (containerd.sh start) and its CRI plugin is ok
#   3. build.sh --import tags busybox:1.36, busybox:latest and pause:3.9 there
#   4. busybox:1.36 runs `sh -c 'echo hello; id -u'` and prints "hello", "0"
#   5. pause:3.9 runs `/bin/busybox sleep 2147483647` as pid 1 and stays up
#      until it is killed
#   6. containerd.sh stop, with a task still running, leaves no containerd,
#      shim, container process or mount behind, and the directory is removable
#   7. containerd.sh start --netns NAME runs containerd inside that network
#      namespace, and containers still start there (cgroups stay visible)
#
#   sudo deploy/tests/images.sh            exit 0 when every check passed
#   KEEP=1 sudo deploy/tests/images.sh     keep the temporary directory
#
# Needs root and Debian's containerd, runc and busybox-static. Every step runs
# under `timeout`; the trap stops containerd and removes the directory on any
# failure.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$repo/deploy/images/build.sh"
ctd="$repo/deploy/containerd/containerd.sh"

step=0
log() { echo "images.sh: $*" >&2; }
ok() { step=$((step + 1)); echo "ok $step - $*"; }
fail() {
    echo "not ok $((step + 1)) - $*"
    if [ -n "${node:-}" ] && [ -f "$node/containerd.log" ]; then
        log "last lines of $node/containerd.log:"
        tail -n 15 "$node/containerd.log" >&2 || true
    fi
    exit 1
}

# Polls CMD every 0.1 s until it succeeds, at most TIMEOUT_S seconds.
wait_for() { # TIMEOUT_S CMD...
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

[ "$(id -u)" -eq 0 ] || fail "must run as root (containerd, mounts)"
for tool in containerd ctr runc busybox tar gzip sha256sum timeout ip; do
    command -v "$tool" >/dev/null ||
        fail "$tool not found: apt-get install containerd runc busybox-static iproute2"
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ferrokube-images-test.XXXXXX")"
node="$tmp/node"
netns_node="$tmp/netns-node"
netns="fk-images-$$"
cleanup() {
    local rc=$?
    local d
    for d in "$node" "$netns_node"; do
        if [ -d "$d" ]; then
            timeout 60 "$ctd" stop "$d" >/dev/null 2>&1 || log "warning: containerd.sh stop $d failed during cleanup"
        fi
    done
    if [ -e "/var/run/netns/$netns" ]; then
        ip netns delete "$netns" || log "warning: could not delete network namespace $netns"
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        log "kept $tmp"
    else
        rm -rf "$tmp" || log "warning: could not remove $tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. reproducible builds ---------------------------------------------------

timeout 120 "$build" --out "$tmp/build1" >"$tmp/build1.txt" 2>"$tmp/build1.err" ||
    fail "first build: $(cat "$tmp/build1.err")"
timeout 120 "$build" --out "$tmp/build2" >"$tmp/build2.txt" 2>"$tmp/build2.err" ||
    fail "second build: $(cat "$tmp/build2.err")"
refs1="$(cut -d' ' -f1,2 "$tmp/build1.txt")"
refs2="$(cut -d' ' -f1,2 "$tmp/build2.txt")"
[ "$refs1" = "$refs2" ] || fail "digests differ between two builds:
$refs1
---
$refs2"
for t in busybox-1.36.tar pause-3.9.tar; do
    cmp -s "$tmp/build1/$t" "$tmp/build2/$t" || fail "$t differs between two builds"
done
for ref in docker.io/library/busybox:1.36 docker.io/library/busybox:latest registry.k8s.io/pause:3.9; do
    grep -q "^$ref sha256:[0-9a-f]\{64\} " "$tmp/build1.txt" || fail "build did not report $ref"
done
ok "two builds give identical tarballs and digests:
$(sed 's/^/#   /' <<<"$refs1")"

# --- 2. private containerd ----------------------------------------------------

timeout 60 "$ctd" start "$node" 2>"$tmp/start.err" || fail "containerd.sh start: $(cat "$tmp/start.err")"
sock="$node/containerd.sock"
c() { timeout 30 ctr --address "$sock" --namespace k8s.io "$@"; }
ok "containerd.sh start: $(cat "$tmp/start.err")"

cri="$(timeout 10 ctr --address "$sock" plugins ls | awk '$1 == "io.containerd.grpc.v1" && $2 == "cri"')"
[ "$(awk '{ print $NF }' <<<"$cri")" = ok ] || fail "CRI plugin is not ok: '$cri'"
ok "CRI plugin: $cri"

# --- 3. import ----------------------------------------------------------------

timeout 120 "$build" --out "$tmp/build1" --import --address "$sock" >/dev/null 2>"$tmp/import.err" ||
    fail "build.sh --import: $(cat "$tmp/import.err")"
listing="$(c images ls)"
while read -r ref digest _; do
    grep -q "^$ref .* $digest " <<<"$listing" || fail "ctr images ls lacks $ref at $digest:
$listing"
done <"$tmp/build1.txt"
ok "ctr images ls shows the imported images:
$(grep -E '^(docker|registry)' <<<"$listing" | awk '{ print "#   " $1, $3 }')"

# --- 4. busybox runs ----------------------------------------------------------

id1="fk-images-t1-$$"
out="$(c run --rm --runc-root "$node/runc" docker.io/library/busybox:1.36 "$id1" sh -c 'echo hello; id -u' 2>&1)" ||
    fail "ctr run busybox failed: $out"
[ "$out" = "hello
0" ] || fail "ctr run busybox printed '$out', want 'hello' and '0'"
ok "ctr run busybox:1.36 sh -c 'echo hello; id -u' printed: $(tr '\n' ' ' <<<"$out")"

# --- 5. pause stays up until killed -------------------------------------------

pause1="fk-images-pause1-$$"
task_status() { c tasks ls | awk -v id="$1" '$1 == id { print $3 }'; }
is_status() { [ "$(task_status "$1")" = "$2" ]; }
c run -d --runc-root "$node/runc" registry.k8s.io/pause:3.9 "$pause1" >/dev/null || fail "ctr run -d pause failed"
wait_for 10 is_status "$pause1" RUNNING || fail "pause task is '$(task_status "$pause1")', want RUNNING"
pid1="$(c tasks exec --exec-id ps "$pause1" /bin/busybox ps -o pid,args 2>&1 | awk '$1 == 1 { $1 = ""; print substr($0, 2) }')"
[ "$pid1" = "/bin/busybox sleep 2147483647" ] || fail "pause's pid 1 is '$pid1'"
# A bounded observation window: a pause that exits would do so at once.
sleep 2
is_status "$pause1" RUNNING || fail "pause task stopped by itself: '$(task_status "$pause1")'"
c tasks kill --signal SIGKILL "$pause1" >/dev/null || fail "ctr tasks kill pause failed"
wait_for 10 is_status "$pause1" STOPPED || fail "killed pause task is '$(task_status "$pause1")', want STOPPED"
c tasks delete "$pause1" >/dev/null 2>&1 && c containers delete "$pause1" >/dev/null || fail "could not delete the pause container"
ok "pause:3.9 runs '$pid1' as pid 1, stays RUNNING, and is STOPPED once killed"

# --- 6. stop leaves nothing behind --------------------------------------------

pause2="fk-images-pause2-$$"
c run -d --runc-root "$node/runc" registry.k8s.io/pause:3.9 "$pause2" >/dev/null || fail "ctr run -d pause (2) failed"
wait_for 10 is_status "$pause2" RUNNING || fail "second pause task is not RUNNING"
ctd_pid="$(cat "$node/containerd.pid")"
task_pid="$(c tasks ls | awk -v id="$pause2" '$1 == id { print $2 }')"
timeout 60 "$ctd" stop "$node" 2>"$tmp/stop.err" || fail "containerd.sh stop: $(cat "$tmp/stop.err")"
alive() { [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
! alive "$ctd_pid" || fail "containerd (pid $ctd_pid) still runs after stop"
! alive "$task_pid" || fail "the pause container's process ($task_pid) still runs after stop"
for f in /proc/[0-9]*/cmdline; do
    if tr '\0' '\n' <"$f" 2>/dev/null | grep -qxF -- "$sock"; then
        p="${f#/proc/}"
        ! alive "${p%/cmdline}" || fail "a process still serves $sock after stop: $(tr '\0' ' ' <"$f")"
    fi
done
mounts="$(awk -v d="$node/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo)"
[ -z "$mounts" ] || fail "still mounted under $node after stop: $mounts"
rm -rf "$node" || fail "could not remove $node after stop"
ok "containerd.sh stop with a running task: no containerd, shim, container or mount left; $node removed"

# --- 7. containerd inside a network namespace -----------------------------------

ip netns add "$netns" || fail "ip netns add $netns"
node="$netns_node"
timeout 60 "$ctd" start "$node" --netns "$netns" 2>"$tmp/start-netns.err" ||
    fail "containerd.sh start --netns: $(cat "$tmp/start-netns.err")"
sock="$node/containerd.sock"
want="$(stat -L -c %i "/var/run/netns/$netns")"
got="$(stat -L -c %i "/proc/$(cat "$node/containerd.pid")/ns/net")"
[ "$want" = "$got" ] || fail "containerd runs in network namespace inode $got, want $want ($netns)"
timeout 120 "$build" --out "$tmp/build1" --import --address "$sock" >/dev/null 2>"$tmp/import-netns.err" ||
    fail "build.sh --import (netns): $(cat "$tmp/import-netns.err")"
out="$(c run --rm --runc-root "$node/runc" docker.io/library/busybox:1.36 "fk-images-t2-$$" sh -c 'echo hello; id -u' 2>&1)" ||
    fail "ctr run busybox in containerd inside $netns failed: $out"
[ "$out" = "hello
0" ] || fail "ctr run busybox (netns) printed '$out', want 'hello' and '0'"
timeout 60 "$ctd" stop "$node" 2>/dev/null || fail "containerd.sh stop (netns)"
ok "containerd.sh start --netns $netns: containerd in that namespace (inode $got), busybox runs there"

echo "# all $step checks passed"
