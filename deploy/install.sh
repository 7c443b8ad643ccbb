#!/usr/bin/env bash
# Installs (or removes) edgefleet as a systemd service on a Raspberry Pi, Jetson or any Debian-like host.
# Idempotent: running it again upgrades the package and leaves config and data alone.
#
#   sudo deploy/install.sh                      # agent from this checkout, enabled and started
#   sudo deploy/install.sh --controller         # also the controller unit and its extras
#   sudo deploy/install.sh --uninstall          # remove units and venv, keep config and data
#   sudo deploy/install.sh --uninstall --purge  # also remove /etc/edgefleet, /var/lib/edgefleet and the user
#
# --root DIR installs into a throw-away root instead of / (used by the tests; nothing is started there).
set -euo pipefail

ROOT=/
PREFIX=/opt/edgefleet
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIP_ARGS=()
PYTHON=${PYTHON:-python3}
CONTROLLER=0
UNINSTALL=0
PURGE=0
START=1
USER_NAME=edgefleet

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOT'
options:
  --root DIR         operate on an alternate filesystem root (default /)
  --prefix DIR       install prefix inside the root (default /opt/edgefleet)
  --source PATH      edgefleet source directory or wheel to install (default: this checkout)
  --pip-arg ARG      extra argument for pip install (repeatable), e.g. --pip-arg=--no-index
  --controller       also install the controller unit and the [controller] extra
  --no-start         enable the unit but do not start it
  --uninstall        remove the units and the venv; keep config and data
  --purge            with --uninstall: also remove config, data and the service user
EOT
}

die() { echo "install.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --root=*) ROOT=${1#*=}; shift ;;
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
        --prefix=*) PREFIX=${1#*=}; shift ;;
        --source) SOURCE=${2:?--source needs a path}; shift 2 ;;
        --source=*) SOURCE=${1#*=}; shift ;;
        --pip-arg) PIP_ARGS+=("${2:?--pip-arg needs a value}"); shift 2 ;;
        --pip-arg=*) PIP_ARGS+=("${1#*=}"); shift ;;
        --controller) CONTROLLER=1; shift ;;
        --no-start) START=0; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option '$1' (see the list above)" ;;
    esac
done

case "$ROOT" in /*) ;; *) die "--root must be an absolute path, got '$ROOT'" ;; esac
case "$PREFIX" in /*) ;; *) die "--prefix must be an absolute path, got '$PREFIX'" ;; esac
ROOT=${ROOT%/}
LIVE=0
[ -z "$ROOT" ] && LIVE=1
[ "$LIVE" = 1 ] && [ "$(id -u)" != 0 ] && die "run as root (sudo), or use --root DIR for a throw-away root"

VENV="$ROOT$PREFIX/venv"
ETC="$ROOT/etc/edgefleet"
STATE="$ROOT/var/lib/edgefleet"
UNIT_DIR="$ROOT/etc/systemd/system"
UNITS=(edgefleet-agent.service)
[ "$CONTROLLER" = 1 ] && UNITS+=(edgefleet-controller.service)
SYSTEMD_RUNNING=0
[ "$LIVE" = 1 ] && [ -d /run/systemd/system ] && SYSTEMD_RUNNING=1

say() { echo "==> $*"; }

systemctl_do() {
    if [ "$LIVE" = 1 ]; then
        [ "$SYSTEMD_RUNNING" = 1 ] && systemctl "$@"
    else
        command -v systemctl >/dev/null 2>&1 && systemctl --root="$ROOT" "$@" >/dev/null 2>&1
    fi
    return 0
}

user_args=()
[ "$LIVE" = 0 ] && user_args=(--prefix "$ROOT")

user_exists() { grep -q "^$USER_NAME:" "$ROOT/etc/passwd" 2>/dev/null; }

if [ "$UNINSTALL" = 1 ]; then
    for unit in edgefleet-agent.service edgefleet-controller.service; do
        if [ -f "$UNIT_DIR/$unit" ]; then
            say "disabling $unit"
            if [ "$LIVE" = 1 ]; then systemctl_do disable --now "$unit"; else systemctl_do disable "$unit"; fi
            rm -f "$UNIT_DIR/$unit"
        fi
    done
    [ "$SYSTEMD_RUNNING" = 1 ] && systemctl daemon-reload
    say "removing $ROOT$PREFIX"
    rm -rf "$ROOT$PREFIX"
    if [ "$PURGE" = 1 ]; then
        say "purging config $ETC and data $STATE"
        rm -rf "$ETC" "$STATE" "$ROOT/var/lib/edgefleet-controller"
        if user_exists; then userdel "${user_args[@]}" "$USER_NAME" || true; fi
    else
        say "kept config in $ETC and data in $STATE (add --purge to remove them)"
    fi
    exit 0
fi

# 1. The service user owns the state directory and nothing else.
mkdir -p "$ROOT/etc"
if ! user_exists; then
    say "creating system user $USER_NAME"
    [ "$LIVE" = 0 ] && touch "$ROOT/etc/passwd" "$ROOT/etc/group" "$ROOT/etc/shadow" "$ROOT/etc/gshadow"
    useradd "${user_args[@]}" --system --user-group --no-create-home \
        --home-dir /var/lib/edgefleet --shell /usr/sbin/nologin "$USER_NAME"
fi
uid=$(awk -F: -v u="$USER_NAME" '$1 == u {print $3}' "$ROOT/etc/passwd")
gid=$(awk -F: -v u="$USER_NAME" '$1 == u {print $4}' "$ROOT/etc/passwd")

# 2. A private venv, so the distribution's Python packages are never touched.
if [ ! -x "$VENV/bin/python" ]; then
    say "creating venv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
extra=""
[ "$CONTROLLER" = 1 ] && extra="[controller]"
target="$SOURCE"
[ -d "$SOURCE" ] && target="$SOURCE$extra"
say "installing edgefleet from $SOURCE"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_ARGS[@]}" "$target"
"$VENV/bin/edgefleet" --version >/dev/null || die "the installed edgefleet does not run"

# 3. Config from the shipped example, only if absent: an existing one is the operator's.
mkdir -p "$ETC"
if [ ! -f "$ETC/agent.toml" ]; then
    say "writing $ETC/agent.toml from the example"
    "$VENV/bin/edgefleet" config example > "$ETC/agent.toml.tmp" \
        || { rm -f "$ETC/agent.toml.tmp"; die "could not write the example agent config"; }
    mv "$ETC/agent.toml.tmp" "$ETC/agent.toml"
fi
if [ "$CONTROLLER" = 1 ] && [ ! -f "$ETC/controller.toml" ]; then
    say "writing $ETC/controller.toml from the example"
    "$VENV/bin/edgefleet" controller example-config > "$ETC/controller.toml.tmp" \
        || { rm -f "$ETC/controller.toml.tmp"; die "could not write the example controller config"; }
    mv "$ETC/controller.toml.tmp" "$ETC/controller.toml"
fi
chmod 0750 "$ETC"
chmod 0640 "$ETC"/*.toml
mkdir -p "$STATE"
chmod 0750 "$STATE"
if [ "$(id -u)" = 0 ]; then
    chown "root:$gid" "$ETC" "$ETC"/*.toml
    chown "$uid:$gid" "$STATE"
fi

# 4. Units, with the prefix filled in; enabled, and started on a live system.
mkdir -p "$UNIT_DIR"
changed=0
for unit in "${UNITS[@]}"; do
    rendered=$(sed "s#@PREFIX@#$PREFIX#g" "$SOURCE/deploy/systemd/$unit" 2>/dev/null \
        || sed "s#@PREFIX@#$PREFIX#g" "$(dirname "${BASH_SOURCE[0]}")/systemd/$unit")
    if [ ! -f "$UNIT_DIR/$unit" ] || [ "$(cat "$UNIT_DIR/$unit")" != "$rendered" ]; then
        say "installing $UNIT_DIR/$unit"
        printf '%s\n' "$rendered" > "$UNIT_DIR/$unit"
        chmod 0644 "$UNIT_DIR/$unit"
        changed=1
    fi
done
[ "$SYSTEMD_RUNNING" = 1 ] && [ "$changed" = 1 ] && systemctl daemon-reload
for unit in "${UNITS[@]}"; do
    systemctl_do enable "$unit"
    if [ "$SYSTEMD_RUNNING" = 1 ] && [ "$START" = 1 ]; then
        systemctl restart "$unit"
    fi
done
say "done: $("$VENV/bin/edgefleet" --version)"
if [ "$LIVE" = 1 ]; then
    echo "    status:  systemctl status edgefleet-agent; journalctl -u edgefleet-agent -f"
    echo "    results: sudo -u $USER_NAME $PREFIX/venv/bin/edgefleet results --config /etc/edgefleet/agent.toml"
fi
