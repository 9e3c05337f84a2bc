#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for FUZZ_SECONDS seconds (default 60), one at a time in
# one process, and installs cargo-fuzz first when it is missing. Safe to run again: the corpus
# in fuzz/corpus/<target> keeps growing, and crashing inputs go to fuzz/artifacts/<target>.
#
# cargo-fuzz passes nightly-only compiler flags (-Zsanitizer=address), which the stable
# toolchain accepts only with RUSTC_BOOTSTRAP=1. Exits non-zero if any target crashed.
set -euo pipefail

cd "$(dirname "$0")/.."
fuzz_seconds="${FUZZ_SECONDS:-60}"
targets=(dbsc_headers compact_jws jwk dbsc_proof cookie_header passkey_client_data passkey_credential_key)

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
failed=()
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    echo "fuzzing $target for ${fuzz_seconds}s"
    # -max_len is above the 8 KiB limits of the header and JWS parsers, so the length checks
    # are reached. fuzz/seeds/<target> is read as extra corpus and never written to.
    if ! cargo fuzz run --jobs 1 "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$fuzz_seconds" -max_len=9000 -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]} > 0)); then
    echo "fuzz targets that failed: ${failed[*]}; inputs are in fuzz/artifacts/" >&2
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${fuzz_seconds}s without a crash"
