#!/usr/bin/env bash
# promtool (from Debian's prometheus package, 2.42 on bookworm) for tests/test_contrib.py: it checks
# contrib/prometheus/itsm-connector.rules.yml and runs its unit tests. Only the promtool binary is
# taken (to /usr/local/bin): no Prometheus server is installed or started. Optional: without it
# those checks are skipped. Idempotent and quick when promtool is already there.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    echo "promtool already installed: $(promtool --version 2>&1 | head -n1)"
    exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    SUDO=(sudo)
fi

if ! apt-cache show prometheus >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -qq
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work"  # apt-get download runs as _apt where it can
(cd "$work" && apt-get download -qq prometheus 2>/dev/null)
dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
"${SUDO[@]}" install -m 0755 "$work/x/usr/bin/promtool" /usr/local/bin/promtool
echo "installed: $(promtool --version 2>&1 | head -n1)"
