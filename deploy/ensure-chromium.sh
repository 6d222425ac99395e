#!/bin/sh
# Makes sure Debian's Chromium is at /usr/bin/chromium, for the web UI's browser test
# (tests/test_web_ui_browser.py drives it with Playwright, which never downloads its own).
# Idempotent: does nothing when Chromium is already there. Needs root to install.
set -eu

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -n "$0" "$@"
    fi
    echo "ensure-chromium: $CHROMIUM is missing and installing it needs root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null

if [ ! -x "$CHROMIUM" ]; then
    echo "ensure-chromium: apt installed chromium but $CHROMIUM is still missing" >&2
    exit 1
fi
echo "ensure-chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
