#!/usr/bin/env bash
# Provisions, starts and stops software TPMs (swtpm 0.7) for the TPM tests, and captures the
# fixture files in fixtures/tpm/. Every command is safe to run twice.
#
#   scripts/swtpm.sh install                 install swtpm, swtpm-tools, tpm2-tools, libtss2-dev
#   scripts/swtpm.sh provision DIR [--no-ek-cert]
#                                            create DIR/ca (a local CA for this run only) and
#                                            DIR/state (a TPM 2 whose EK certificates that CA
#                                            signed); DIR/trust gets the CA's certificates as PEM
#   scripts/swtpm.sh start DIR PORT          serve DIR/state on 127.0.0.1:PORT, control on PORT+1
#   scripts/swtpm.sh stop DIR                stop the swtpm that `start DIR` started
#   scripts/swtpm.sh tcti PORT               print the TCTI string for tpm2-tools and tss-esapi
#   scripts/swtpm.sh capture-fixtures OUT PORT
#                                            provision three TPMs in a temporary directory and
#                                            write the fixture files into OUT (uses PORT, PORT+1)
set -euo pipefail

PACKAGES=(swtpm swtpm-tools tpm2-tools libtss2-dev pkg-config)

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

install_packages() {
    local missing=()
    for package in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$package")
        fi
    done
    if ((${#missing[@]} > 0)); then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

# Writes the swtpm_setup and swtpm_localca configuration files that keep the CA inside DIR.
write_configs() {
    local dir=$1
    cat >"$dir/swtpm_setup.conf" <<EOF
create_certs_tool = /usr/bin/swtpm_localca
create_certs_tool_config = $dir/swtpm-localca.conf
create_certs_tool_options = $dir/swtpm-localca.options
active_pcr_banks = sha256
EOF
    cat >"$dir/swtpm-localca.conf" <<EOF
statedir = $dir/ca
signingkey = $dir/ca/signkey.pem
issuercert = $dir/ca/issuercert.pem
certserial = $dir/ca/certserial
EOF
    cat >"$dir/swtpm-localca.options" <<EOF
--platform-manufacturer devbound
--platform-version 2.1
--platform-model swtpm
EOF
}

provision() {
    local dir=$1 ek_cert=yes
    if [[ ${2:-} == --no-ek-cert ]]; then
        ek_cert=no
    elif [[ -n ${2:-} ]]; then
        usage
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -e $dir/state/tpm2-00.permall ]]; then
        echo "swtpm state in $dir/state already exists; leaving it as it is"
        return
    fi

    mkdir -p "$dir/ca" "$dir/state" "$dir/trust"
    write_configs "$dir"
    local flags=(--tpm2 --tpmstate "$dir/state" --config "$dir/swtpm_setup.conf"
        --logfile "$dir/swtpm_setup.log" --overwrite)
    if [[ $ek_cert == yes ]]; then
        flags+=(--create-ek-cert --create-platform-cert)
    else
        flags+=(--createek)
    fi
    swtpm_setup "${flags[@]}"

    if [[ $ek_cert == yes ]]; then
        cp "$dir/ca/swtpm-localca-rootca-cert.pem" "$dir/trust/swtpm-localca-root.pem"
        cp "$dir/ca/issuercert.pem" "$dir/trust/swtpm-localca-issuer.pem"
    fi
    echo "provisioned $dir (EK certificate: $ek_cert)"
}

# Prints the pid in DIR/swtpm.pid if that process is a running swtpm serving DIR/state.
running_pid() {
    local dir=$1 pid
    [[ -r $dir/swtpm.pid ]] || return 1
    pid=$(<"$dir/swtpm.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    local command_line
    command_line=$(tr '\0' ' ' <"/proc/$pid/cmdline")
    [[ $command_line == "swtpm socket "* && $command_line == *" dir=$dir/state "* ]] || return 1
    echo "$pid"
}

start() {
    local dir port
    dir=$(cd "$1" && pwd)
    port=$2
    [[ $port =~ ^[0-9]+$ ]] || usage
    if pid=$(running_pid "$dir"); then
        echo "swtpm for $dir is already running (pid $pid)"
        return
    fi
    swtpm socket --tpm2 \
        --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
        --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
        --tpmstate "dir=$dir/state" \
        --flags not-need-init,startup-clear \
        --pid "file=$dir/swtpm.pid" \
        --log "file=$dir/swtpm.log" \
        --daemon

    # The daemon writes its pid file once it listens; allow it about 2 s.
    for _ in $(seq 40); do
        if pid=$(running_pid "$dir"); then
            echo "swtpm for $dir listens on 127.0.0.1:$port (pid $pid)"
            return
        fi
        sleep 0.05
    done
    echo "swtpm for $dir did not start; see $dir/swtpm.log" >&2
    exit 1
}

stop() {
    local dir pid
    dir=$(cd "$1" && pwd)
    if ! pid=$(running_pid "$dir"); then
        echo "no swtpm is running for $dir"
        rm -f "$dir/swtpm.pid"
        return
    fi
    kill "$pid"
    for _ in $(seq 40); do
        [[ -e /proc/$pid ]] || break
        sleep 0.05
    done
    rm -f "$dir/swtpm.pid"
    echo "stopped swtpm pid $pid"
}

tcti() {
    echo "swtpm:host=127.0.0.1,port=$1"
}

# Runs one tpm2-tools command against the swtpm at PORT, with warnings about expected failures
# silenced. swtpm has 3 transient object slots and no resource manager, so the objects and
# sessions the command leaves loaded are flushed after it. The context files stay usable.
tpm() {
    local tcti status=0
    tcti=$(tcti "$PORT")
    TPM2TOOLS_TCTI=$tcti TSS2_LOG=all+NONE "$@" || status=$?
    TPM2TOOLS_TCTI=$tcti TSS2_LOG=all+NONE tpm2_flushcontext --transient-object
    TPM2TOOLS_TCTI=$tcti TSS2_LOG=all+NONE tpm2_flushcontext --loaded-session
    return "$status"
}

# Loads a DER certificate from NV index INDEX of the swtpm at PORT into FILE.
read_nv_certificate() {
    local index=$1 file=$2 size
    size=$(tpm tpm2_nvreadpublic "$index" | awk '/size:/ {print $2}')
    tpm tpm2_nvread "$index" --size "$size" --output "$file"
}

# Persistent handles for the AKs and the key being certified while capturing fixtures.
AK_HANDLE=0x81000100
RSA_AK_HANDLE=0x81000102
KEY_HANDLE=0x81000101
CERTIFY_NONCE=devbound-certify-nonce-fixture-1

# Sends TPM2_Certify (TPM 2.0 Part 3, command code 0x148) for the key at KEY_HANDLE, signed by the
# AK at handle SIGNER with the AK's own scheme and CERTIFY_NONCE as qualifyingData. tpm2_certify
# 5.4 cannot set qualifyingData, so the command is built by hand. Writes the TPMS_ATTEST and the
# TPMT_SIGNATURE from the response.
send_certify() {
    local signer=$1 attest=$2 signature=$3 password_session
    password_session='\x40\x00\x00\x09\x00\x00\x00\x00\x00'
    {
        # Header: TPM_ST_SESSIONS, 76 bytes, TPM_CC_Certify.
        printf '\x80\x02\x00\x00\x00\x4c\x00\x00\x01\x48'
        printf '%s' "${KEY_HANDLE#0x}${signer#0x}" | xxd -revert -plain
        # Two empty password sessions (TPM_RS_PW), 18 bytes in all.
        printf '\x00\x00\x00\x12'"$password_session$password_session"
        printf '\x00\x20%s' "$CERTIFY_NONCE"
        # inScheme TPM_ALG_NULL: sign with the scheme in the AK's public area.
        printf '\x00\x10'
    } >certify-command.bin
    tpm tpm2_send --output certify-response.bin <certify-command.bin

    local code parameters attest_size
    code=$(xxd -skip 6 -len 4 -plain certify-response.bin)
    if [[ $code != 00000000 ]]; then
        echo "TPM2_Certify failed with response code 0x$code" >&2
        exit 1
    fi
    parameters=$((0x$(xxd -skip 10 -len 4 -plain certify-response.bin)))
    attest_size=$((0x$(xxd -skip 14 -len 2 -plain certify-response.bin)))
    tail -c +17 certify-response.bin | head -c "$attest_size" >"$attest"
    tail -c +$((17 + attest_size)) certify-response.bin |
        head -c $((parameters - 2 - attest_size)) >"$signature"
}

# Creates a P-256 signing key with ATTRIBUTES under PARENT and writes its TPM2B_PUBLIC to
# PUBLIC; the key stays at KEY_HANDLE until remove_key.
create_key() {
    local parent=$1 attributes=$2 public=$3
    tpm tpm2_create --parent-context "$parent" --key-algorithm ecc256:ecdsa-sha256 \
        --attributes "$attributes" --public key.pub --private key.priv
    tpm tpm2_load --parent-context "$parent" --public key.pub --private key.priv \
        --key-context key.ctx
    tpm tpm2_evictcontrol --hierarchy o --object-context key.ctx "$KEY_HANDLE"
    cp key.pub "$public"
}

remove_key() {
    tpm tpm2_evictcontrol --hierarchy o --object-context "$KEY_HANDLE"
}

cleanup_capture() {
    for tpm_dir in trusted untrusted no-ek-cert; do
        if [[ -d $CAPTURE_DIR/$tpm_dir ]]; then
            stop "$CAPTURE_DIR/$tpm_dir" >/dev/null || true
        fi
    done
    rm -rf "$CAPTURE_DIR"
}

capture_fixtures() {
    local out work
    out=$(mkdir -p "$1" && cd "$1" && pwd)
    PORT=$2
    work=$(mktemp -d)
    CAPTURE_DIR=$work
    trap cleanup_capture EXIT

    provision "$work/trusted"
    provision "$work/untrusted"
    provision "$work/no-ek-cert" --no-ek-cert
    mkdir -p "$out/trust"
    cp "$work/trusted/trust/swtpm-localca-root.pem" "$out/trust/swtpm-localca-root.pem"
    cp "$work/trusted/trust/swtpm-localca-issuer.pem" "$out/trust/swtpm-localca-issuer.pem"
    # A test-only key: the tests sign edited copies of the EK certificate with it.
    cp "$work/trusted/ca/signkey.pem" "$out/swtpm-localca-issuer-key.pem"
    printf '%s' "$CERTIFY_NONCE" >"$out/certify-nonce.bin"

    start "$work/untrusted" "$PORT"
    read_nv_certificate 0x01c00002 "$out/swtpm-ek-rsa-untrusted-ca.der"
    stop "$work/untrusted"

    start "$work/no-ek-cert" "$PORT"
    if tpm tpm2_nvreadpublic 0x01c00002 >/dev/null 2>&1; then
        echo "swtpm provisioned without an EK certificate has NV index 0x01c00002" >&2
        exit 1
    fi
    stop "$work/no-ek-cert"

    start "$work/trusted" "$PORT"
    cd "$work"
    read_nv_certificate 0x01c00002 "$out/swtpm-ek-rsa.der"
    read_nv_certificate 0x01c00016 "$out/swtpm-ek-ecc-p384.der"
    # swtpm_setup made the ECC EK persistent; its certificate is for that P-384 key.
    tpm tpm2_readpublic --object-context 0x81010016 --format tss \
        --output "$out/swtpm-ek-ecc-p384-public.bin" >/dev/null

    # The RSA EK from the default template (TCG EK Credential Profile, template L-1).
    tpm tpm2_createek --ek-context ek.ctx --key-algorithm rsa --public ek.pub --format tss
    cp ek.pub "$out/swtpm-ek-public.bin"

    # An ECC P-256 AK and an RSA-2048 AK under that EK, as tpm2_createak makes them.
    tpm tpm2_createak --ek-context ek.ctx --ak-context ak.ctx --key-algorithm ecc \
        --hash-algorithm sha256 --signing-algorithm ecdsa --public ak.pub --format tss \
        --ak-name ak.name
    cp ak.pub "$out/ak-ecc-public.bin"
    cp ak.name "$out/ak-ecc-name.bin"
    tpm tpm2_createak --ek-context ek.ctx --ak-context ak-rsa.ctx --key-algorithm rsa \
        --hash-algorithm sha256 --signing-algorithm rsassa --public ak-rsa.pub --format tss
    cp ak-rsa.pub "$out/ak-rsa-public.bin"

    # A P-256 signing key under an ECC primary, certified with a fixed nonce by the ECC AK and by
    # the RSA AK.
    tpm tpm2_createprimary --hierarchy o --key-algorithm ecc256 --key-context primary.ctx
    tpm tpm2_evictcontrol --hierarchy o --object-context ak.ctx "$AK_HANDLE"
    tpm tpm2_evictcontrol --hierarchy o --object-context ak-rsa.ctx "$RSA_AK_HANDLE"
    create_key primary.ctx 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign' \
        "$out/session-key-public.bin"
    send_certify "$AK_HANDLE" "$out/certify-attest.bin" "$out/certify-signature.bin"
    send_certify "$RSA_AK_HANDLE" "$out/rsa-ak-certify-attest.bin" \
        "$out/rsa-ak-certify-signature.bin"
    remove_key

    # A key without fixedTPM and fixedParent, certified the same way by the ECC AK.
    create_key primary.ctx 'sensitivedataorigin|userwithauth|sign' "$out/movable-key-public.bin"
    send_certify "$AK_HANDLE" "$out/movable-certify-attest.bin" \
        "$out/movable-certify-signature.bin"
    remove_key
    stop "$work/trusted"

    # The TPM's state, with the AKs persistent at AK_HANDLE and RSA_AK_HANDLE and the EK at
    # 0x81010001, so that credentials for the fixture AK can be activated later.
    rm -rf "$out/swtpm-state"
    mkdir -p "$out/swtpm-state"
    cp "$work/trusted/state/tpm2-00.permall" "$out/swtpm-state/"
    chmod 644 "$out"/*.* "$out"/trust/* "$out"/swtpm-state/*
    echo "fixtures written to $out"
}

command=${1:-}
case $command in
install) install_packages ;;
provision) [[ $# -ge 2 ]] || usage; install_packages; provision "$2" "${3:-}" ;;
start) [[ $# -eq 3 ]] || usage; start "$2" "$3" ;;
stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
tcti) [[ $# -eq 2 ]] || usage; tcti "$2" ;;
capture-fixtures) [[ $# -eq 3 ]] || usage; install_packages; capture_fixtures "$2" "$3" ;;
*) usage ;;
esac
