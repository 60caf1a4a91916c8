#!/bin/sh
# Install Debian's postfix package for bench/send.py, which needs only its two test programs:
# smtp-sink (a loopback SMTP sink that discards what it receives) and smtp-source (a fast SMTP
# client). The postfix mail daemon itself is never started, and no mail is ever relayed.
#
#     sh bench/setup-postfix.sh
#
# Idempotent: does nothing when smtp-sink is already there. Exits 0 with a message when postfix
# cannot be installed (not root, no apt-get, no package), so bench/send.py falls back to aiosmtpd.

PATH="$PATH:/usr/sbin:/usr/lib/postfix/sbin"
export PATH

if command -v smtp-sink >/dev/null 2>&1 && command -v smtp-source >/dev/null 2>&1; then
    echo "setup-postfix: smtp-sink and smtp-source already installed ($(command -v smtp-sink))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-postfix: no apt-get on this machine; cannot install postfix (bench/send.py will use aiosmtpd)"
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "setup-postfix: must run as root to install postfix; skipped (bench/send.py will use aiosmtpd)"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive

# Answer postfix's configuration question up front: no mail configuration at all.
if command -v debconf-set-selections >/dev/null 2>&1; then
    printf '%s\n' \
        "postfix postfix/main_mailer_type select No configuration" \
        "postfix postfix/mailname string localhost" | debconf-set-selections 2>/dev/null || true
fi

# Keep the package's scripts from starting the postfix daemon: policy-rc.d exit 101 means
# "do not start services". Use an existing one as it is; otherwise add one for the install only.
added_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && added_policy=1
fi
cleanup() { [ -n "$added_policy" ] && rm -f /usr/sbin/policy-rc.d; }

install_postfix() {
    apt-get install -y -q --no-install-recommends postfix >/tmp/setup-postfix.$$.log 2>&1
}

status=0
if ! apt-cache show postfix >/dev/null 2>&1; then
    echo "setup-postfix: package lists have no postfix yet; running apt-get update"
    apt-get update -q >/dev/null 2>&1 || true
fi
if ! install_postfix; then
    echo "setup-postfix: first install attempt failed; running apt-get update and trying again"
    apt-get update -q >/dev/null 2>&1 || true
    install_postfix || status=$?
fi
cleanup

if [ "$status" != "0" ]; then
    echo "setup-postfix: apt-get install postfix failed (exit $status); last lines of its log:"
    tail -n 5 /tmp/setup-postfix.$$.log 2>/dev/null | sed 's/^/    /'
    rm -f /tmp/setup-postfix.$$.log
    echo "setup-postfix: continuing without postfix (bench/send.py will use aiosmtpd)"
    exit 0
fi
rm -f /tmp/setup-postfix.$$.log

# The package's scripts must not have left a daemon running: stop it if they did (postfix's own
# command, only when its master process is up; never a broad kill).
if command -v postfix >/dev/null 2>&1 && postfix status >/dev/null 2>&1; then
    postfix stop >/dev/null 2>&1 || true
fi

if command -v smtp-sink >/dev/null 2>&1 && command -v smtp-source >/dev/null 2>&1; then
    echo "setup-postfix: installed postfix; smtp-sink is $(command -v smtp-sink), smtp-source is $(command -v smtp-source)"
else
    echo "setup-postfix: postfix installed but smtp-sink/smtp-source not found (bench/send.py will use aiosmtpd)"
fi
exit 0
