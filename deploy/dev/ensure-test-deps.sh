#!/usr/bin/env bash
# Installs the system programs the test suite drives for real: Mosquitto (broker fixtures)
# and Chromium (dashboard browser tests). Missing ones are installed from the distribution's
# packages when we are root with apt; otherwise the affected tests skip and say why.
set -u
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing from the distribution's packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } \
        || echo "warning: could not install ${missing[*]}; tests that need them will be skipped" >&2
else
    echo "warning: ${missing[*]} missing and cannot be installed here (need root and apt-get); tests that need them will be skipped" >&2
fi
exit 0
