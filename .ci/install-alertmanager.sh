#!/usr/bin/env bash
# Install Debian's prometheus-alertmanager (0.25 on bookworm) for tests/test_alertmanager.py.
# Idempotent and quick when already installed; the package's service is not started (tests run their own).
set -euo pipefail

BINARY=/usr/bin/prometheus-alertmanager
TEMPLATE=/usr/share/prometheus/alertmanager/default.tmpl  # without it the binary dies at start

if [[ -x "$BINARY" && -f "$TEMPLATE" ]]; then
    echo "prometheus-alertmanager already installed: $("$BINARY" --version 2>&1 | head -n1)"
    exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    SUDO=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt does not know the package yet (fresh container).
if ! apt-cache show prometheus-alertmanager >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -qq
fi
# policy-rc.d: keep the packaged service from starting where the image allows services (exit 101 = deny).
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod +x /usr/sbin/policy-rc.d
    trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
fi
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
echo "installed: $("$BINARY" --version 2>&1 | head -n1)"
