#!/usr/bin/env bash
# Builds devbound and starts it on its embedded defaults: sled and a self-signed certificate in
# ./devbound-data, HTTPS on 127.0.0.1:8443. Arguments are passed to `devbound serve`.
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
if ! command -v cargo >/dev/null; then
    echo "serve.sh: cargo is missing; install Rust from https://rustup.rs first" >&2
    exit 1
fi

cargo build --release --bin devbound
exec target/release/devbound serve "$@"
