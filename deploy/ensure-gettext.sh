#!/bin/sh
# Makes sure GNU gettext (xgettext, msgmerge, msgfmt) is installed: `manage.py
# makemessages` and `compilemessages` need it, and tests/test_languages.py runs
# makemessages to check that the catalogs cover every marked string. The compiled
# catalogs (locale/*/LC_MESSAGES/django.mo) are committed, so the image and the running
# site never need it. Idempotent: does nothing when it is there. Needs root to install.
set -eu

if command -v xgettext >/dev/null 2>&1 && command -v msgfmt >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -n "$0" "$@"
    fi
    echo "ensure-gettext: GNU gettext is missing and installing it needs root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends gettext >/dev/null

if ! command -v xgettext >/dev/null 2>&1; then
    echo "ensure-gettext: apt installed gettext but xgettext is still missing" >&2
    exit 1
fi
echo "ensure-gettext: installed $(xgettext --version | head -n 1)"
