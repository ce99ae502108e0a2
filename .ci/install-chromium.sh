#!/usr/bin/env bash
# Install Debian's chromium for the board's browser tests (tests/test_board_browser.py drives it with
# Playwright's Python package through executable_path; no browser is ever downloaded by Playwright).
# Idempotent and quick when already installed.
set -euo pipefail

BINARY=/usr/bin/chromium

if [[ -x "$BINARY" ]]; then
    echo "chromium already installed: $("$BINARY" --version 2>/dev/null | head -n1)"
    exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    SUDO=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt does not know the package yet (fresh container).
if ! apt-cache show chromium >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -qq
fi
# fonts-noto-cjk: the board's fixed text is also Korean; without a CJK font it renders as boxes.
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk >/dev/null
echo "installed: $("$BINARY" --version 2>/dev/null | head -n1)"
