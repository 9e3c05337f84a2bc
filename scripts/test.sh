#!/usr/bin/env bash
# Installs what the tests need (Debian's Chromium) and runs the whole test suite: lints, unit
# tests, integration tests over HTTPS on loopback, and the end-to-end test in headless Chromium.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cc >/dev/null; then
    apt-get update
    apt-get install -y --no-install-recommends build-essential
fi
scripts/install-chromium.sh

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
