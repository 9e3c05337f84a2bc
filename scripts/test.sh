#!/usr/bin/env bash
# Installs what the tests need (Debian's Chromium, swtpm and tpm2-tools) and runs the whole test
# suite: lints, unit tests, integration tests over HTTPS on loopback, the end-to-end test in
# headless Chromium, and the TPM tests (also with `--features tpm`) against a freshly provisioned
# swtpm. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cc >/dev/null; then
    apt-get update
    apt-get install -y --no-install-recommends build-essential
fi
# webauthn-rs-core verifies attestation certificates with OpenSSL.
if ! dpkg -s libssl-dev pkg-config >/dev/null 2>&1; then
    apt-get update
    apt-get install -y --no-install-recommends libssl-dev pkg-config
fi
scripts/install-chromium.sh
scripts/swtpm.sh install

# A software TPM with an EK certificate from a CA made for this run only, on a free port.
swtpm_dir=$(mktemp -d)
cleanup() {
    scripts/swtpm.sh stop "$swtpm_dir" >/dev/null 2>&1 || true
    rm -rf "$swtpm_dir"
}
trap cleanup EXIT
scripts/swtpm.sh provision "$swtpm_dir" >/dev/null
swtpm_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
scripts/swtpm.sh start "$swtpm_dir" "$swtpm_port"
DEVBOUND_SWTPM_TCTI=$(scripts/swtpm.sh tcti "$swtpm_port")
export DEVBOUND_SWTPM_TCTI DEVBOUND_SWTPM_TRUST_DIR="$swtpm_dir/trust" DEVBOUND_REQUIRE_SWTPM=1

cargo fmt --check
# The default build must not need the TPM libraries: tss-esapi is only behind feature `tpm`.
# (The tree is read whole before grep runs, so that an early grep exit cannot hide a match.)
default_tree=$(cargo tree --locked --edges normal)
if grep -q tss-esapi <<<"$default_tree"; then
    echo "the default build depends on tss-esapi" >&2
    exit 1
fi
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --all-targets --locked --features tpm -- -D warnings
cargo test --all-targets --locked
# The TPM client (feature `tpm`): its unit tests, and enrollment, 2,000 TPM-signed refreshes and
# revocation through the real `devbound device` client against the swtpm started above, and
# agents whose sessions live on that TPM-enrolled device.
cargo test --locked --features tpm --lib --bins --test device_tpm --test agent_tpm
