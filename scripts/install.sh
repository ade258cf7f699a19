#!/usr/bin/env bash
# Installs or upgrades polygate on Debian/Ubuntu. See docs/install.md.
#
#   sudo scripts/install.sh --protocols openvpn,wireguard,cisco,l2tp
#
# Layout: the app in /opt/polygate/releases/<version>-<time>, /opt/polygate/current pointing at
# the running one; data in /var/lib/polygate; configuration in /etc/polygate/polygate.env; the
# unit /etc/systemd/system/polygate.service; the CLI /usr/local/bin/polygate.
# Re-running it upgrades: data and configuration stay, a new release is switched to, older
# releases are kept (the last three) for a rollback.
#
# --root DIR (or DESTDIR) installs under DIR instead of / and touches nothing else on the
# machine: no packages, no systemctl, no modprobe or sysctl (the test suite uses this).
set -euo pipefail
umask 022

readonly KNOWN_PROTOCOLS="openvpn wireguard cisco l2tp"
readonly NODE_MIN_MAJOR=20 NODE_MIN_MINOR=19

ROOT="${DESTDIR:-}"
PREFIX=/opt/polygate
PROTOCOLS=openvpn
NODE=""
SKIP_PACKAGES=0
SKIP_NPM=0
START=1
RESTART=1
BACKUP=1
PORT=8080
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly CONF_DIR=/etc/polygate DATA_DIR=/var/lib/polygate UNIT_DIR=/etc/systemd/system BIN_DIR=/usr/local/bin

usage() {
  cat <<'EOF'
Usage: install.sh [options]

  --protocols LIST   comma-separated: openvpn, wireguard, cisco (ocserv), l2tp (L2TP/IPsec)
                     [default: openvpn]; decides the packages and POLYGATE_PLUGINS on first install
  --port N           panel port written to a new configuration [default: 8080]
  --prefix DIR       where the app goes [default: /opt/polygate]
  --node PATH        the Node.js (>= 20.19) binary the service runs [default: node on PATH]
  --source DIR       the polygate source tree to install [default: this script's tree]
  --root DIR         install under DIR instead of / (also DESTDIR); implies --skip-packages
                     and changes nothing outside DIR (no systemctl, modprobe, sysctl)
  --skip-packages    do not apt-get install anything
  --skip-npm         do not run npm ci in the new release (node_modules must be provided)
  --no-start         do not enable or start the service on a first install
  --no-restart       upgrade: switch the release but leave the running daemon (restart later)
  --no-backup        upgrade: skip the backup taken before switching releases
  -h, --help         this text
EOF
}

die() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 1
}
say() { printf '==> %s\n' "$*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --protocols) PROTOCOLS="${2:?--protocols needs a list}"; shift 2 ;;
    --protocols=*) PROTOCOLS="${1#*=}"; shift ;;
    --port) PORT="${2:?--port needs a number}"; shift 2 ;;
    --prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
    --node) NODE="${2:?--node needs a path}"; shift 2 ;;
    --source) SOURCE="${2:?--source needs a directory}"; shift 2 ;;
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --root=*) ROOT="${1#*=}"; shift ;;
    --skip-packages) SKIP_PACKAGES=1; shift ;;
    --skip-npm) SKIP_NPM=1; shift ;;
    --no-start) START=0; shift ;;
    --no-restart) RESTART=0; shift ;;
    --no-backup) BACKUP=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

if ! [[ "$PORT" =~ ^[0-9]+$ ]] || [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then die "--port must be 1-65535, got '$PORT'"; fi
case "$PREFIX" in /*) ;; *) die "--prefix must be an absolute path" ;; esac
[[ "$PREFIX" =~ ^[A-Za-z0-9/._-]+$ ]] || die "--prefix may hold only letters, digits and / . _ -"
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT="$(cd "$ROOT" && pwd)"
  [ "$ROOT" != / ] || ROOT=""
fi
# Under --root nothing outside it may change.
if [ -n "$ROOT" ]; then SKIP_PACKAGES=1; fi
LIVE=0
if [ -z "$ROOT" ]; then LIVE=1; fi

# --- protocols -> plugins and Debian packages -------------------------------------------------
PLUGINS=()
PACKAGES=(ca-certificates openssl iproute2 nftables)
MODULES=()
IFS=',' read -r -a WANTED <<<"$PROTOCOLS"
[ "${#WANTED[@]}" -gt 0 ] || die "--protocols is empty (choose from: $KNOWN_PROTOCOLS)"
for p in "${WANTED[@]}"; do
  case "$p" in
    openvpn) PLUGINS+=(openvpn); PACKAGES+=(openvpn); MODULES+=(tun) ;;
    wireguard) PLUGINS+=(wireguard); PACKAGES+=(wireguard-tools); MODULES+=(wireguard) ;;
    cisco) PLUGINS+=(ocserv); PACKAGES+=(ocserv); MODULES+=(tun) ;;
    l2tp)
      PLUGINS+=(l2tp-ipsec)
      PACKAGES+=(strongswan-charon strongswan-swanctl libcharon-extauth-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins xl2tpd ppp)
      MODULES+=(ppp_generic l2tp_ppp)
      ;;
    *) die "unknown protocol '$p' (choose from: $KNOWN_PROTOCOLS)" ;;
  esac
done
PLUGIN_LIST="$(IFS=,; printf '%s' "${PLUGINS[*]}")"

# --- Node.js ------------------------------------------------------------------------------------
node_ok() {
  local v major minor
  v="$("$1" -p 'process.versions.node' 2>/dev/null)" || return 1
  major="${v%%.*}"
  minor="${v#*.}"
  minor="${minor%%.*}"
  [ "$major" -gt "$NODE_MIN_MAJOR" ] || { [ "$major" -eq "$NODE_MIN_MAJOR" ] && [ "$minor" -ge "$NODE_MIN_MINOR" ]; }
}

node_advice() {
  cat >&2 <<EOF
install.sh: polygate needs Node.js >= $NODE_MIN_MAJOR.$NODE_MIN_MINOR${1:+ (found: $1)}.
  Debian 13 (trixie) ships nodejs 20.19: apt-get install nodejs npm
  Debian 12 and Ubuntu 24.04 ship 18.x, too old. Use the official build from nodejs.org
  (no third-party apt repository), checked against its published SHA256SUMS:
    V=v20.19.5; A=linux-x64   # or linux-arm64
    curl -fsSLO https://nodejs.org/dist/\$V/node-\$V-\$A.tar.xz
    curl -fsSL https://nodejs.org/dist/\$V/SHASUMS256.txt | grep " node-\$V-\$A.tar.xz\$" | sha256sum -c -
    tar -xJf node-\$V-\$A.tar.xz -C /usr/local --strip-components=1
  then re-run: install.sh --node /usr/local/bin/node ...
EOF
  exit 1
}

if [ -z "$NODE" ]; then NODE="$(command -v node || true)"; fi
if [ "$SKIP_PACKAGES" -eq 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "run as root (or with --root DIR to install into a directory)"
  command -v apt-get >/dev/null || die "apt-get not found: this script is for Debian/Ubuntu (see docs/install.md for others)"
  if [ -z "$NODE" ] || ! node_ok "$NODE"; then
    # Debian's own nodejs when it is new enough; never a third-party repository.
    candidate="$(apt-cache policy nodejs 2>/dev/null | awk '/Candidate:/ {print $2}')"
    case "$candidate" in
      2[0-9].* | [3-9][0-9].*)
        if [ "${candidate%%.*}" -gt "$NODE_MIN_MAJOR" ] || [ "$(printf '%s' "$candidate" | cut -d. -f2)" -ge "$NODE_MIN_MINOR" ]; then
          PACKAGES+=(nodejs npm libnode-dev)
          NODE=/usr/bin/node
        else
          node_advice "Debian's nodejs $candidate"
        fi
        ;;
      *)
        found=""
        if [ -n "$NODE" ]; then found="$("$NODE" -v 2>/dev/null || true)"; fi
        if [ -n "$candidate" ]; then found="$found / Debian package nodejs $candidate"; fi
        node_advice "$found"
        ;;
    esac
  fi
  # node-gyp builds sqlite3 and the accounting addon at npm ci.
  PACKAGES+=(build-essential python3)
  say "installing packages: ${PACKAGES[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
else
  say "skipping system packages (--skip-packages or --root); needed on a server: ${PACKAGES[*]} build-essential python3"
fi
[ -n "$NODE" ] || node_advice ""
node_ok "$NODE" || node_advice "$("$NODE" -v 2>/dev/null || echo "$NODE")"
NODE="$(readlink -f "$NODE")"
[[ "$NODE" =~ ^[A-Za-z0-9/._+-]+$ ]] || die "the node path '$NODE' has characters a unit file cannot hold"

# --- the release ---------------------------------------------------------------------------------
[ -f "$SOURCE/package.json" ] || die "--source $SOURCE is not a polygate tree (no package.json)"
if [ ! -f "$SOURCE/dist/core/main.js" ]; then
  [ "$SKIP_NPM" -eq 0 ] || die "$SOURCE has no dist/ (run npm ci && npm run build there, or drop --skip-npm)"
  say "building $SOURCE (npm ci && npm run build)"
  (cd "$SOURCE" && npm ci && npm run build)
fi
VERSION="$("$NODE" -p 'require(process.argv[1]).version' "$SOURCE/package.json")"
[[ "$VERSION" =~ ^[0-9A-Za-z.+-]+$ ]] || die "unexpected version '$VERSION' in package.json"
RELEASES="$ROOT$PREFIX/releases"
# A left-over from an interrupted run is never a release.
rm -rf "${RELEASES:?}"/*.tmp
while :; do
  STAMP="$(date -u +%Y%m%d%H%M%S)"
  RELEASE="$VERSION-$STAMP"
  NEW="$RELEASES/$RELEASE"
  [ -e "$NEW" ] || break
  sleep 1 # two runs within one second
done
CURRENT_LINK="$ROOT$PREFIX/current"
PREVIOUS=""
if [ -L "$CURRENT_LINK" ]; then PREVIOUS="$(readlink "$CURRENT_LINK")"; fi

say "installing polygate $VERSION into $NEW"
mkdir -p "$RELEASES"
chmod 0755 "$ROOT$PREFIX" "$RELEASES"
mkdir "$NEW.tmp"
# Only what runs: the build, the manifest, the native sources (npm ci rebuilds the addon) and docs.
for item in package.json package-lock.json .npmrc binding.gyp dist native/src docs README.md; do
  if [ -e "$SOURCE/$item" ]; then
    mkdir -p "$NEW.tmp/$(dirname "$item")"
    cp -a "$SOURCE/$item" "$NEW.tmp/$item"
  fi
done
if [ "$SKIP_NPM" -eq 0 ]; then
  say "installing runtime dependencies (npm ci --omit=dev)"
  # node-gyp takes Node's headers from the install the service runs, not a download.
  (cd "$NEW.tmp" && npm_config_nodedir="$(dirname "$(dirname "$NODE")")" npm ci --omit=dev --no-audit --no-fund)
fi
chown -R 0:0 "$NEW.tmp" 2>/dev/null || true
chmod -R go-w "$NEW.tmp"
mv "$NEW.tmp" "$NEW"

# --- configuration (kept on upgrade) -------------------------------------------------------------
mkdir -p "$ROOT$CONF_DIR"
chmod 0700 "$ROOT$CONF_DIR"
ENV_FILE="$ROOT$CONF_DIR/polygate.env"
write_env() {
  cat <<EOF
# polygate settings (systemd EnvironmentFile: KEY=value, no quotes needed, # comments).
# Every setting: README.md and docs/install.md. Restart after a change:
#   systemctl restart polygate
POLYGATE_DATA_DIR=$DATA_DIR
POLYGATE_HOST=0.0.0.0
POLYGATE_PORT=$PORT
POLYGATE_PLUGINS=$PLUGIN_LIST
# The address customers' links use (subscription pages, downloads):
#POLYGATE_PUBLIC_URL=https://panel.example.com
# HTTPS without a proxy (reloaded when the files change):
#POLYGATE_TLS_CERT=/etc/polygate/tls/fullchain.pem
#POLYGATE_TLS_KEY=/etc/polygate/tls/privkey.pem
# PostgreSQL instead of SQLite in the data dir:
#POLYGATE_DATABASE_URL=postgres://polygate:secret@127.0.0.1:5432/polygate
# Webhook thresholds (docs/webhooks.md):
#POLYGATE_WEBHOOK_USAGE_PERCENTS=80,90
#POLYGATE_WEBHOOK_EXPIRING_DAYS=3,1
POLYGATE_LOG_LEVEL=info
EOF
}
if [ -e "$ENV_FILE" ]; then
  # Upgrade: the operator's file stays; the new defaults are beside it for comparison.
  write_env >"$ENV_FILE.dist"
  chmod 0600 "$ENV_FILE.dist"
  say "kept $CONF_DIR/polygate.env (new defaults in polygate.env.dist)"
else
  (umask 077 && write_env >"$ENV_FILE")
  say "wrote $CONF_DIR/polygate.env (plugins: $PLUGIN_LIST)"
fi
chmod 0600 "$ENV_FILE"

# --- data dir (never touched beyond its mode) ------------------------------------------------------
mkdir -p "$ROOT$DATA_DIR"
chmod 0700 "$ROOT$DATA_DIR"

# --- kernel: modules and forwarding, set once here so the unit can forbid changing them -------------
mkdir -p "$ROOT/etc/modules-load.d" "$ROOT/etc/sysctl.d"
printf '# Loaded at boot for polygate (install.sh); the service may not load modules itself.\n' >"$ROOT/etc/modules-load.d/polygate.conf"
printf '%s\n' "${MODULES[@]}" | sort -u >>"$ROOT/etc/modules-load.d/polygate.conf"
cat >"$ROOT/etc/sysctl.d/90-polygate.conf" <<'EOF'
# VPN clients reach the world through this server (install.sh); the service may not change sysctls.
net.ipv4.ip_forward = 1
EOF
chmod 0644 "$ROOT/etc/modules-load.d/polygate.conf" "$ROOT/etc/sysctl.d/90-polygate.conf"

# --- the unit and the CLI --------------------------------------------------------------------------
mkdir -p "$ROOT$UNIT_DIR" "$ROOT$BIN_DIR"
UNIT_FILE="$ROOT$UNIT_DIR/polygate.service"
sed -e "s|/usr/bin/node|$NODE|g" -e "s|/opt/polygate|$PREFIX|g" "$SOURCE/scripts/polygate.service" >"$UNIT_FILE.tmp"
chmod 0644 "$UNIT_FILE.tmp"
UNIT_CHANGED=1
if [ -f "$UNIT_FILE" ] && cmp -s "$UNIT_FILE" "$UNIT_FILE.tmp"; then UNIT_CHANGED=0; fi
mv "$UNIT_FILE.tmp" "$UNIT_FILE"

cat >"$ROOT$BIN_DIR/polygate.tmp" <<EOF
#!/bin/sh
# The polygate CLI with the daemon's configuration (install.sh).
exec $NODE --env-file=$CONF_DIR/polygate.env $PREFIX/current/dist/cli/main.js "\$@"
EOF
chmod 0755 "$ROOT$BIN_DIR/polygate.tmp"
mv "$ROOT$BIN_DIR/polygate.tmp" "$ROOT$BIN_DIR/polygate"

# --- switch releases -------------------------------------------------------------------------------
UPGRADE=0
if [ -n "$PREVIOUS" ]; then UPGRADE=1; fi
if [ "$LIVE" -eq 1 ] && [ "$UPGRADE" -eq 1 ] && [ "$BACKUP" -eq 1 ] && [ -f "$PREFIX/current/dist/cli/main.js" ]; then
  mkdir -p "$DATA_DIR/backups"
  say "backing up before the upgrade: $DATA_DIR/backups/pre-upgrade-$STAMP.tar.gz"
  "$NODE" --env-file="$CONF_DIR/polygate.env" "$PREFIX/current/dist/cli/main.js" backup "$DATA_DIR/backups/pre-upgrade-$STAMP.tar.gz" ||
    die "the backup failed; nothing was switched (re-run with --no-backup to upgrade anyway)"
fi
# rename(2) of a symlink is atomic: the unit sees the old tree or the new one, never neither.
ln -sfn "releases/$RELEASE" "$CURRENT_LINK.tmp"
mv -T "$CURRENT_LINK.tmp" "$CURRENT_LINK"
say "current -> releases/$RELEASE${PREVIOUS:+ (was $PREVIOUS)}"
# Keep the three newest releases (by install time, the name's suffix; the one running until the
# restart is always kept) for a rollback.
find "$RELEASES" -mindepth 1 -maxdepth 1 -type d ! -name '*.tmp' -printf '%f\n' | sed 's/^\(.*-\)\([0-9]\{14\}\)$/\2 \1\2/' | sort -r | cut -d' ' -f2 | tail -n +4 | while read -r old; do
  [ "releases/$old" = "$PREVIOUS" ] || rm -rf "${RELEASES:?}/$old"
done

# --- systemd ---------------------------------------------------------------------------------------
if [ "$LIVE" -eq 0 ]; then
  say "installed under $ROOT (no systemctl, modprobe or sysctl run)"
  exit 0
fi
if [ "${#MODULES[@]}" -gt 0 ]; then
  for m in $(printf '%s\n' "${MODULES[@]}" | sort -u); do modprobe "$m" 2>/dev/null || say "note: kernel module $m did not load (doctor will say whether it matters)"; done
fi
sysctl -q -p /etc/sysctl.d/90-polygate.conf || true
if ! command -v systemctl >/dev/null || [ ! -d /run/systemd/system ]; then
  say "systemd is not running here: start by hand with  $NODE --env-file=$CONF_DIR/polygate.env $PREFIX/current/dist/core/main.js"
  exit 0
fi
if [ "$UNIT_CHANGED" -eq 1 ]; then systemctl daemon-reload; fi
if [ "$UPGRADE" -eq 0 ]; then
  if [ "$START" -eq 1 ]; then
    systemctl enable --now polygate.service
    say "started; the admin API key is in $DATA_DIR/admin-api-key; logs: journalctl -u polygate -f"
    # What is still missing on this machine for the chosen protocols (informational).
    "$BIN_DIR/polygate" doctor || true
  else
    say "installed; start with: systemctl enable --now polygate"
  fi
elif [ "$RESTART" -eq 1 ] && systemctl is-active --quiet polygate.service; then
  # Today a restart ends every VPN session (the daemons are polygate's children); clients reconnect.
  say "restarting polygate (VPN sessions are cut for a few seconds; --no-restart to choose the moment)"
  systemctl restart polygate.service
elif systemctl is-active --quiet polygate.service; then
  say "upgraded; the running daemon keeps the old release until: systemctl restart polygate"
else
  say "upgraded; polygate is not running: systemctl start polygate"
fi
