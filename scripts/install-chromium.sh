#!/usr/bin/env bash
# Installs Debian's `chromium` package for the end-to-end tests.
# Safe to run again: it does nothing when the package is already installed.
set -euo pipefail

if dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'install ok installed'; then
    echo "chromium is already installed: $(chromium --version 2>/dev/null || echo 'version unknown')"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium

echo "installed $(chromium --version)"
