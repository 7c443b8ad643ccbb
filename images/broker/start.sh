#!/bin/sh
# Start Mosquitto with the secure configuration, or say exactly what is missing. Never falls
# back to an open broker. The two variables exist for the tests; the image uses the defaults.
set -eu
certs="${EDGEFLEET_BROKER_CERTS:-/etc/mosquitto/certs}"
conf="${EDGEFLEET_BROKER_CONF:-/mosquitto/config/mosquitto.conf}"
missing=""
for f in ca.crt ca.crl broker.crt broker.key controllers.passwd; do
    [ -s "$certs/$f" ] || missing="$missing $f"
done
if [ -n "$missing" ]; then
    echo "edgefleet broker: missing in $certs:$missing" >&2
    echo "hint: provision them on the broker-certs volume (docs/security.md, 'balena')" >&2
    exit 78
fi
exec mosquitto -c "$conf"
