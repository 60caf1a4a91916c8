#!/usr/bin/env bash
# Installs the headless browser tests/test_browser.py drives: Debian's chromium and
# chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver). Idempotent; needs root (or sudo)
# and apt. Selenium is a Python test dependency and comes from pip, not from here.
set -euo pipefail

have() { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }

if have; then
    echo "browser_setup: chromium and chromedriver already installed"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "browser_setup: apt-get not found; install Debian's 'chromium' and 'chromium-driver' packages by hand" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "browser_setup: must run as root (or with sudo) to apt-get install chromium chromium-driver" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
install() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver; }

# Try with the package lists as they are; refresh them only when that fails (or there are none).
if ! install >/tmp/browser_setup.$$.log 2>&1; then
    echo "browser_setup: apt-get update" >&2
    if ! $SUDO apt-get update -q >>/tmp/browser_setup.$$.log 2>&1 || ! install >>/tmp/browser_setup.$$.log 2>&1; then
        tail -n 20 /tmp/browser_setup.$$.log >&2
        rm -f /tmp/browser_setup.$$.log
        echo "browser_setup: could not install chromium and chromium-driver with apt-get (see above)" >&2
        exit 1
    fi
fi
rm -f /tmp/browser_setup.$$.log

if ! have; then
    echo "browser_setup: apt-get finished but /usr/bin/chromium or /usr/bin/chromedriver is missing" >&2
    exit 1
fi
echo "browser_setup: $(/usr/bin/chromedriver --version 2>/dev/null | head -n 1)"
