#!/usr/bin/env bash
# Builds the cluster's container images as OCI image tarballs from the host's
# static busybox (Debian's busybox-static), with no registry and no network:
#
#   busybox-1.36.tar  docker.io/library/busybox:1.36 (and :latest)
#                     /bin/busybox, every applet as a symlink in /bin,
#                     /etc/passwd and /etc/group (root, nobody), /root, /tmp;
#                     Cmd ["sh"], like the upstream image
#   pause-3.9.tar     registry.k8s.io/pause:3.9
#                     /bin/busybox only; Entrypoint
#                     ["/bin/busybox", "sleep", "2147483647"]
#
# Each tarball is an OCI image layout (oci-layout, index.json, blobs/sha256)
# whose index names every tag twice: `org.opencontainers.image.ref.name` (the
# tag, per the OCI spec) and `io.containerd.image.name` (the full reference,
# which `ctr images import` uses as the image name). The two images share the
# busybox layer. Layers are reproducible: sorted entries, mtime 0, uid/gid 0,
# fixed modes, `gzip -n`. Building twice from the same busybox gives the same
# bytes and so the same digests.
#
#   deploy/images/build.sh                        build into target/images
#   deploy/images/build.sh --out DIR              build into DIR
#   deploy/images/build.sh --import --address /run/ferrokube/node1/containerd.sock
#                                                 build, then `ctr images import`
#                                                 each tarball (namespace k8s.io,
#                                                 the one the CRI plugin uses)
#
# Prints one line per tag on stdout: "<reference> <manifest digest> <tarball>".
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

usage() {
    cat <<'EOF'
Usage: deploy/images/build.sh [--out DIR] [--import --address SOCKET [--namespace NS]]

Builds OCI image tarballs from /bin/busybox (Debian busybox-static):
  DIR/busybox-1.36.tar   docker.io/library/busybox:1.36, docker.io/library/busybox:latest
  DIR/pause-3.9.tar      registry.k8s.io/pause:3.9

Options:
  -o, --out DIR          output directory (default: <repo>/target/images)
      --busybox PATH     static busybox binary to use (default: /bin/busybox)
      --import           import every tarball into containerd with
                         `ctr --address SOCKET -n NS images import`
  -a, --address SOCKET   containerd's gRPC socket (required with --import)
  -n, --namespace NS     containerd namespace for --import (default: k8s.io)
  -h, --help             show this help

Prints "<reference> <manifest digest> <tarball>" for every tag on stdout.
EOF
}

log() { echo "images: $*" >&2; }
die() { log "error: $*"; exit 1; }

out="$repo/target/images"
busybox=/bin/busybox
do_import=0
address=""
namespace=k8s.io

while [ $# -gt 0 ]; do
    case "$1" in
        -o | --out) [ $# -ge 2 ] || die "$1 needs a directory"; out="$2"; shift 2 ;;
        --busybox) [ $# -ge 2 ] || die "$1 needs a path"; busybox="$2"; shift 2 ;;
        --import) do_import=1; shift ;;
        -a | --address) [ $# -ge 2 ] || die "$1 needs a socket path"; address="$2"; shift 2 ;;
        -n | --namespace) [ $# -ge 2 ] || die "$1 needs a namespace"; namespace="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# --- checks: fail before writing anything -----------------------------------

if [ ! -x "$busybox" ]; then
    die "$busybox not found or not executable: install it with \`apt-get install busybox-static\`"
fi
# A dynamically linked busybox would need its libc inside the image.
if command -v file >/dev/null && ! file -L "$busybox" | grep -q "statically linked"; then
    die "$busybox is not statically linked: install Debian's \`busybox-static\` (not \`busybox\`)"
fi
for tool in tar gzip sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not found on PATH"
done
tar --version 2>/dev/null | grep -q "GNU tar" || die "GNU tar is needed (for --sort=name and --mtime)"
if [ "$do_import" -eq 1 ]; then
    [ -n "$address" ] || die "--import needs --address SOCKET (containerd's gRPC socket)"
    [ -S "$address" ] || die "--address $address is not a socket: is containerd running? (deploy/containerd/containerd.sh start DIR)"
    command -v ctr >/dev/null || die "ctr not found: install it with \`apt-get install containerd\`"
elif [ -n "$address" ]; then
    die "--address is only used with --import"
fi

# Applets the manifests and tests rely on; every other applet of this busybox
# is linked too.
required_applets=(sh httpd nc wget sleep cat echo ls ps id env hostname ip ping
    mkdir test true false kill grep date nslookup)
applets="$("$busybox" --list)" || die "$busybox --list failed"
for a in "${required_applets[@]}"; do
    grep -qx -- "$a" <<<"$applets" || die "$busybox has no '$a' applet: install Debian's busybox-static"
done

mkdir -p "$out" || die "cannot create output directory $out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferrokube-images.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- building blocks ----------------------------------------------------------

PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Fixed "created" time: reproducible and obviously synthetic.
CREATED="1970-01-01T00:00:00Z"

# Reproducible tar of a directory's contents: names sorted bytewise, no "./"
# prefix, owner root, mtime 0, ustar format (no pax headers carrying pids or
# atimes).
reproducible_tar() { # SRC_DIR OUT_TAR
    local src="$1" dst="$2"
    local entries
    mapfile -t entries < <(cd "$src" && LC_ALL=C ls -A | LC_ALL=C sort)
    LC_ALL=C tar --create --file="$dst" --directory="$src" \
        --sort=name --format=ustar --owner=0 --group=0 --numeric-owner \
        --mtime=@0 -- "${entries[@]}"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

# Stores FILE as a blob of LAYOUT; prints its sha256 hex.
put_blob() { # LAYOUT FILE
    local hex
    hex="$(sha256_of "$2")"
    mkdir -p "$1/blobs/sha256"
    cp "$2" "$1/blobs/sha256/$hex"
    echo "$hex"
}

# Turns a staged root filesystem into a gzip layer blob of LAYOUT.
# Sets LAYER_DIGEST (of the .tar.gz), LAYER_SIZE and LAYER_DIFF_ID (of the .tar).
make_layer() { # LAYOUT STAGE_DIR
    local layout="$1" stage="$2" tmp
    tmp="$(mktemp -d "$work/layer.XXXXXX")"
    reproducible_tar "$stage" "$tmp/layer.tar"
    gzip -n -9 -c "$tmp/layer.tar" >"$tmp/layer.tar.gz"
    LAYER_DIFF_ID="sha256:$(sha256_of "$tmp/layer.tar")"
    LAYER_DIGEST="sha256:$(put_blob "$layout" "$tmp/layer.tar.gz")"
    LAYER_SIZE="$(size_of "$tmp/layer.tar.gz")"
    rm -rf "$tmp"
}

json_str_array() { # ITEMS... -> ["a","b"] (items must not need escaping)
    local sep="" s="["
    for item in "$@"; do s+="$sep\"$item\""; sep=","; done
    echo "$s]"
}

# Writes the OCI layout into a tarball: config blob, manifest blob,
# index.json with one descriptor per reference, oci-layout.
# Uses the LAYERS_* arrays filled by the caller.
finish_image() { # LAYOUT OUT_TAR CONFIG_INNER_JSON REFS...
    local layout="$1" tarball="$2" config_inner="$3"
    shift 3
    local i diff_ids=() layers_json="" sep=""
    for i in "${!LAYERS_DIGEST[@]}"; do
        diff_ids+=("${LAYERS_DIFF_ID[$i]}")
        layers_json+="$sep{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"${LAYERS_DIGEST[$i]}\",\"size\":${LAYERS_SIZE[$i]}}"
        sep=","
    done

    printf '{"architecture":"amd64","os":"linux","created":"%s","config":%s,"rootfs":{"type":"layers","diff_ids":%s}}' \
        "$CREATED" "$config_inner" "$(json_str_array "${diff_ids[@]}")" >"$work/config.json"
    local config_hex config_size
    config_hex="$(put_blob "$layout" "$work/config.json")"
    config_size="$(size_of "$work/config.json")"

    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
        "$config_hex" "$config_size" "$layers_json" >"$work/manifest.json"
    local manifest_hex manifest_size
    manifest_hex="$(put_blob "$layout" "$work/manifest.json")"
    manifest_size="$(size_of "$work/manifest.json")"

    local ref manifests="" sep=""
    for ref in "$@"; do
        manifests+="$sep{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest_hex\",\"size\":$manifest_size,\"annotations\":{\"io.containerd.image.name\":\"$ref\",\"org.opencontainers.image.ref.name\":\"${ref##*:}\"}}"
        sep=","
    done
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' "$manifests" >"$layout/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

    reproducible_tar "$layout" "$tarball.tmp"
    mv "$tarball.tmp" "$tarball"
    for ref in "$@"; do
        echo "$ref sha256:$manifest_hex $tarball"
    done
    log "built $tarball ($*): manifest sha256:$manifest_hex"
}

# --- the layers ---------------------------------------------------------------

# Layer 1, shared by both images: /bin/busybox.
stage_busybox="$work/stage-busybox"
mkdir -p "$stage_busybox/bin"
cp "$busybox" "$stage_busybox/bin/busybox"
chmod 0755 "$stage_busybox/bin" "$stage_busybox/bin/busybox"

# Layer 2 of the busybox image: applet symlinks and a minimal /etc, /root, /tmp.
stage_userland="$work/stage-userland"
mkdir -p "$stage_userland/bin" "$stage_userland/etc" "$stage_userland/root" "$stage_userland/tmp"
while IFS= read -r applet; do
    case "$applet" in
        busybox | "" | */*) continue ;;
    esac
    ln -s busybox "$stage_userland/bin/$applet"
done <<<"$applets"
cat >"$stage_userland/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$stage_userland/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
EOF
chmod 0755 "$stage_userland/bin" "$stage_userland/etc"
chmod 0644 "$stage_userland/etc/passwd" "$stage_userland/etc/group"
chmod 0700 "$stage_userland/root"
chmod 1777 "$stage_userland/tmp"

# --- the images ---------------------------------------------------------------

# docker.io/library/busybox:1.36
layout="$work/layout-busybox"
LAYERS_DIGEST=() LAYERS_SIZE=() LAYERS_DIFF_ID=()
make_layer "$layout" "$stage_busybox"
LAYERS_DIGEST+=("$LAYER_DIGEST") LAYERS_SIZE+=("$LAYER_SIZE") LAYERS_DIFF_ID+=("$LAYER_DIFF_ID")
make_layer "$layout" "$stage_userland"
LAYERS_DIGEST+=("$LAYER_DIGEST") LAYERS_SIZE+=("$LAYER_SIZE") LAYERS_DIFF_ID+=("$LAYER_DIFF_ID")
finish_image "$layout" "$out/busybox-1.36.tar" \
    "{\"Env\":[\"$PATH_ENV\"],\"Cmd\":[\"sh\"],\"WorkingDir\":\"/\"}" \
    docker.io/library/busybox:1.36 docker.io/library/busybox:latest

# registry.k8s.io/pause:3.9
layout="$work/layout-pause"
LAYERS_DIGEST=() LAYERS_SIZE=() LAYERS_DIFF_ID=()
make_layer "$layout" "$stage_busybox"
LAYERS_DIGEST+=("$LAYER_DIGEST") LAYERS_SIZE+=("$LAYER_SIZE") LAYERS_DIFF_ID+=("$LAYER_DIFF_ID")
finish_image "$layout" "$out/pause-3.9.tar" \
    "{\"Env\":[\"$PATH_ENV\"],\"Entrypoint\":[\"/bin/busybox\",\"sleep\",\"2147483647\"],\"WorkingDir\":\"/\"}" \
    registry.k8s.io/pause:3.9

# --- import -------------------------------------------------------------------

if [ "$do_import" -eq 1 ]; then
    for tarball in "$out/busybox-1.36.tar" "$out/pause-3.9.tar"; do
        log "importing $tarball into $address (namespace $namespace)"
        ctr --address "$address" --namespace "$namespace" images import "$tarball" >&2 ||
            die "ctr images import $tarball into $address failed"
    done
fi
