#!/usr/bin/env bash
# Removes what scripts/install.sh installed. The data (/var/lib/polygate: database, secret.key,
# PKI, backups) and the configuration (/etc/polygate) stay unless --purge is given; system
# packages (openvpn, ocserv, strongswan …) stay: they may serve other things.
#
#   sudo scripts/uninstall.sh            # keeps data and configuration
#   sudo scripts/uninstall.sh --purge    # removes them too (no undo: back up first)
#
# --root DIR (or DESTDIR) works under DIR only, as install.sh does.
set -euo pipefail

ROOT="${DESTDIR:-}"
PREFIX=/opt/polygate
PURGE=0
readonly CONF_DIR=/etc/polygate DATA_DIR=/var/lib/polygate UNIT=/etc/systemd/system/polygate.service CLI=/usr/local/bin/polygate

usage() {
  cat <<'EOF'
Usage: uninstall.sh [--purge] [--prefix DIR] [--root DIR]

  --purge        also delete /var/lib/polygate (database, secret.key, PKI, backups) and /etc/polygate
  --prefix DIR   where the app was installed [default: /opt/polygate]
  --root DIR     work under DIR instead of / (also DESTDIR); no systemctl is run
EOF
}
die() {
  printf 'uninstall.sh: %s\n' "$*" >&2
  exit 1
}
say() { printf '==> %s\n' "$*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --purge) PURGE=1; shift ;;
    --prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --root=*) ROOT="${1#*=}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done
case "$PREFIX" in /?*) ;; *) die "--prefix must be an absolute path other than /" ;; esac
if [ -n "$ROOT" ]; then
  [ -d "$ROOT" ] || die "--root $ROOT does not exist"
  ROOT="$(cd "$ROOT" && pwd)"
  [ "$ROOT" != / ] || ROOT=""
fi

if [ -z "$ROOT" ]; then
  [ "$(id -u)" -eq 0 ] || die "run as root"
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now polygate.service 2>/dev/null || true
  fi
  # polygate leaves its VPN daemons running when it stops (a restart cuts no session); an
  # uninstall ends them: each runs under a keeper whose pid files sit beside .polygate-keeper.sh.
  if [ -d "$DATA_DIR" ]; then
    find "$DATA_DIR" -name .polygate-keeper.sh -type f -print0 2>/dev/null | while IFS= read -r -d '' keeper; do
      for pidfile in "$(dirname "$keeper")"/*.pid; do
        [ -f "$pidfile" ] || continue
        pid="$(head -c 16 "$pidfile" | tr -cd '0-9')"
        if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then say "stopped VPN daemon $pid ($(basename "$pidfile" .pid))"; fi
      done
    done || true
  fi
fi

# The app must look like ours before a recursive delete.
if [ -d "$ROOT$PREFIX/releases" ] || [ -L "$ROOT$PREFIX/current" ]; then
  rm -rf "$ROOT$PREFIX/releases" "$ROOT$PREFIX/current"
  rmdir "$ROOT$PREFIX" 2>/dev/null || say "left $PREFIX: it holds files install.sh did not put there"
  say "removed $PREFIX"
elif [ -e "$ROOT$PREFIX" ]; then
  say "left $PREFIX: it is not an install.sh layout (no releases/ or current)"
fi
rm -f "$ROOT$UNIT" "$ROOT$CLI" "$ROOT/etc/modules-load.d/polygate.conf" "$ROOT/etc/sysctl.d/90-polygate.conf"
if [ -z "$ROOT" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl reset-failed polygate.service 2>/dev/null || true
fi
say "removed the unit, the CLI and the kernel settings (ip_forward stays on until the next boot)"

if [ "$PURGE" -eq 1 ]; then
  rm -rf "$ROOT$DATA_DIR" "$ROOT$CONF_DIR"
  say "purged $DATA_DIR and $CONF_DIR"
else
  say "kept $DATA_DIR (database, secret.key, PKI, backups) and $CONF_DIR; --purge removes them"
fi
say "system packages were left installed; remove them with apt-get purge if nothing else uses them"
