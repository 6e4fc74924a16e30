#!/usr/bin/env bash
# Creates a kubeadm-style PKI and the components' kubeconfigs with openssl
# and kubectl. Idempotent: existing keys, certificates and kubeconfigs are
# kept (kubeconfigs only get their server URL updated); when the CA itself is
# (re)created, every certificate and kubeconfig is reissued from it.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: pki.sh [options] [DIR]

Writes into DIR (default $KUBERNETES_DIR, else /etc/kubernetes):
  pki/ca.{crt,key}               cluster CA (CN=kubernetes)
  pki/apiserver.{crt,key}        serving certificate for kube-apiserver
  pki/apiserver-kubelet-client.{crt,key}
                                 kube-apiserver's client certificate for the
                                 kubelets (CN=kube-apiserver-kubelet-client)
  pki/sa.{key,pub}               service-account token signing key pair
  admin.conf                     CN=kubernetes-admin, O=system:masters
  scheduler.conf                 CN=system:kube-scheduler
  controller-manager.conf        CN=system:kube-controller-manager
  kubelet.conf                   CN=system:node:<node name>, O=system:nodes
  kube-proxy.conf                CN=system:kube-proxy

Options:
  -d, --dir DIR            output directory (same as the DIR argument)
  -s, --server URL         apiserver URL in the kubeconfigs
                           (default $APISERVER_URL, else https://127.0.0.1:6443)
  -n, --node-name NAME     node name for kubelet.conf (default: hostname)
      --service-cidr CIDR  add the first address of this IPv4 CIDR to the
                           apiserver certificate (10.96.0.1 is always added)
      --san NAME|IP        extra subject alternative name (repeatable)
      --cluster-name NAME  cluster name in the kubeconfigs (default kubernetes)
  -h, --help               show this help

The apiserver certificate's SANs: 127.0.0.1, 10.96.0.1, the service CIDR's
first address, the host's addresses and hostname, kubernetes,
kubernetes.default, kubernetes.default.svc,
kubernetes.default.svc.cluster.local, and any --san.
EOF
}

die() {
    echo "pki.sh: $*" >&2
    exit 1
}

DIR="${KUBERNETES_DIR:-/etc/kubernetes}"
SERVER="${APISERVER_URL:-https://127.0.0.1:6443}"
NODE_NAME="$(hostname)"
SERVICE_CIDR=""
CLUSTER_NAME="kubernetes"
EXTRA_SANS=()
KUBECTL="${KUBECTL:-kubectl}"

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        -d | --dir) DIR="${2:?--dir needs a value}"; shift 2 ;;
        -s | --server) SERVER="${2:?--server needs a value}"; shift 2 ;;
        -n | --node-name) NODE_NAME="${2:?--node-name needs a value}"; shift 2 ;;
        --service-cidr) SERVICE_CIDR="${2:?--service-cidr needs a value}"; shift 2 ;;
        --san) EXTRA_SANS+=("${2:?--san needs a value}"); shift 2 ;;
        --cluster-name) CLUSTER_NAME="${2:?--cluster-name needs a value}"; shift 2 ;;
        -*) usage >&2; die "unknown option $1" ;;
        *) DIR="$1"; shift ;;
    esac
done

command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
command -v "$KUBECTL" >/dev/null || die "kubectl not found (set KUBECTL=/path/to/kubectl)"
[[ "$SERVER" == https://* ]] || die "--server must be an https:// URL, got $SERVER"


# The first usable address of an IPv4 CIDR (network + 1).
first_address() {
    local cidr="$1" ip prefix a b c d n mask
    [[ "$cidr" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)/([0-9]+)$ ]] ||
        die "--service-cidr must be an IPv4 CIDR like 10.96.0.0/12, got $cidr"
    a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]} c=${BASH_REMATCH[3]} d=${BASH_REMATCH[4]}
    prefix=${BASH_REMATCH[5]}
    ((a < 256 && b < 256 && c < 256 && d < 256 && prefix <= 30)) ||
        die "--service-cidr $cidr is not a valid IPv4 CIDR with room for addresses"
    n=$(((a << 24) | (b << 16) | (c << 8) | d))
    mask=$(((0xffffffff << (32 - prefix)) & 0xffffffff))
    n=$(((n & mask) + 1))
    ip="$(((n >> 24) & 255)).$(((n >> 16) & 255)).$(((n >> 8) & 255)).$((n & 255))"
    echo "$ip"
}

# Checked before anything is written, so bad input changes nothing.
SERVICE_IP=""
if [[ -n "$SERVICE_CIDR" ]]; then
    SERVICE_IP="$(first_address "$SERVICE_CIDR")"
fi

# Generates an RSA 2048 key unless it exists; returns 1 when it was kept.
ensure_key() {
    local key="$1"
    if [[ -s "$key" ]]; then
        return 1
    fi
    (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$key" 2>/dev/null)
    echo "pki.sh: generated $key"
    return 0
}

# sign KEY CERT SUBJECT EXTFILE: issues CERT for KEY, signed by the CA.
sign() {
    local key="$1" cert="$2" subject="$3" ext="$4"
    openssl req -new -key "$key" -subj "$subject" -out "$WORK/req.csr"
    openssl x509 -req -in "$WORK/req.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days 365 \
        -extfile "$ext" -out "$cert" 2>/dev/null
    chmod 644 "$cert"
    echo "pki.sh: issued $cert ($subject)"
}

PKI="$DIR/pki"
mkdir -p "$PKI"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# --- CA ---------------------------------------------------------------
CA_NEW=0
if ensure_key "$PKI/ca.key" || [[ ! -s "$PKI/ca.crt" ]]; then
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=kubernetes" -days 3650 \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$PKI/ca.crt"
    chmod 644 "$PKI/ca.crt"
    echo "pki.sh: issued $PKI/ca.crt"
    CA_NEW=1
fi

# --- apiserver serving certificate ------------------------------------
SANS=("IP:127.0.0.1" "IP:10.96.0.1")
if [[ -n "$SERVICE_IP" ]]; then
    SANS+=("IP:$SERVICE_IP")
fi
for ip in $(hostname -I 2>/dev/null || true); do
    SANS+=("IP:$ip")
done
SANS+=("DNS:$(hostname)" "DNS:kubernetes" "DNS:kubernetes.default"
    "DNS:kubernetes.default.svc" "DNS:kubernetes.default.svc.cluster.local")
for san in "${EXTRA_SANS[@]}"; do
    if [[ "$san" =~ ^[0-9.]+$ || "$san" == *:* ]]; then
        SANS+=("IP:$san")
    else
        SANS+=("DNS:$san")
    fi
done
# Deduplicate, keeping order.
declare -A seen=()
UNIQUE=()
for san in "${SANS[@]}"; do
    if [[ -z "${seen[$san]:-}" ]]; then
        seen[$san]=1
        UNIQUE+=("$san")
    fi
done
SAN_LIST="$(
    IFS=,
    echo "${UNIQUE[*]}"
)"

cat >"$WORK/serving.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
authorityKeyIdentifier=keyid
subjectAltName=$SAN_LIST
EOF
cat >"$WORK/client.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid
EOF

KEY_NEW=0
ensure_key "$PKI/apiserver.key" && KEY_NEW=1
if ((CA_NEW || KEY_NEW)) || [[ ! -s "$PKI/apiserver.crt" ]]; then
    sign "$PKI/apiserver.key" "$PKI/apiserver.crt" "/CN=kube-apiserver" "$WORK/serving.ext"
else
    echo "pki.sh: keeping $PKI/apiserver.crt"
fi

# --- kube-apiserver's client certificate for the kubelets -------------
KEY_NEW=0
ensure_key "$PKI/apiserver-kubelet-client.key" && KEY_NEW=1
if ((CA_NEW || KEY_NEW)) || [[ ! -s "$PKI/apiserver-kubelet-client.crt" ]]; then
    sign "$PKI/apiserver-kubelet-client.key" "$PKI/apiserver-kubelet-client.crt" \
        "/O=system:masters/CN=kube-apiserver-kubelet-client" "$WORK/client.ext"
else
    echo "pki.sh: keeping $PKI/apiserver-kubelet-client.crt"
fi

# --- service-account key pair -----------------------------------------
ensure_key "$PKI/sa.key" || true
if [[ ! -s "$PKI/sa.pub" ]] || ! cmp -s <(openssl pkey -in "$PKI/sa.key" -pubout) "$PKI/sa.pub"; then
    openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
    chmod 644 "$PKI/sa.pub"
    echo "pki.sh: wrote $PKI/sa.pub"
fi

# --- kubeconfigs ------------------------------------------------------
# kubeconfig FILE USER [ORGANIZATION]
kubeconfig() {
    local conf="$DIR/$1" user="$2" org="${3:-}" subject context
    context="$user@$CLUSTER_NAME"
    if [[ -s "$conf" ]] && ((!CA_NEW)); then
        "$KUBECTL" config set-cluster "$CLUSTER_NAME" --server="$SERVER" --kubeconfig="$conf" >/dev/null
        echo "pki.sh: keeping $conf (server $SERVER)"
        return
    fi
    subject="/CN=$user"
    [[ -n "$org" ]] && subject="/O=$org$subject"
    (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/client.key" 2>/dev/null)
    sign "$WORK/client.key" "$WORK/client.crt" "$subject" "$WORK/client.ext" >/dev/null
    rm -f "$conf"
    (
        umask 077
        "$KUBECTL" config set-cluster "$CLUSTER_NAME" --server="$SERVER" \
            --certificate-authority="$PKI/ca.crt" --embed-certs=true --kubeconfig="$conf"
        "$KUBECTL" config set-credentials "$user" --client-certificate="$WORK/client.crt" \
            --client-key="$WORK/client.key" --embed-certs=true --kubeconfig="$conf"
        "$KUBECTL" config set-context "$context" --cluster="$CLUSTER_NAME" --user="$user" \
            --kubeconfig="$conf"
        "$KUBECTL" config use-context "$context" --kubeconfig="$conf"
    ) >/dev/null
    chmod 600 "$conf"
    rm -f "$WORK/client.key" "$WORK/client.crt"
    echo "pki.sh: wrote $conf ($subject)"
}

kubeconfig admin.conf kubernetes-admin system:masters
kubeconfig scheduler.conf system:kube-scheduler
kubeconfig controller-manager.conf system:kube-controller-manager
kubeconfig kubelet.conf "system:node:$NODE_NAME" system:nodes
kubeconfig kube-proxy.conf system:kube-proxy

echo "pki.sh: done; kubectl --kubeconfig $DIR/admin.conf get nodes"
