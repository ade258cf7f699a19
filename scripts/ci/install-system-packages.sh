#!/usr/bin/env bash
# Debian packages the daemon and its test suite use. --no-install-recommends keeps apt from
# pulling a kernel image. Safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  postgresql            # storage suite on a real PostgreSQL server
  openvpn easy-rsa      # OpenVPN plugin and its end-to-end tests
  wireguard-tools wireguard-go  # WireGuard plugin (wireguard-go: this kernel has no WireGuard module)
  openssl               # the panel's CA (core/pki)
  ocserv openconnect gnutls-bin  # Cisco AnyConnect plugin (ocserv) and its real client
  nftables              # Firewall service (own table inet polygate)
  strongswan strongswan-swanctl libcharon-extra-plugins libcharon-extauth-plugins
  libstrongswan-extra-plugins libstrongswan-standard-plugins  # L2TP/IPsec + IKEv2 (standard plugins: without them charon cannot negotiate; extra: gcrypt's MD4/DES for MSCHAPv2)
  xl2tpd ppp            # L2TP LNS and pppd's hook contract
  prometheus            # promtool check metrics
  shellcheck systemd    # install script lint; systemd-analyze verify of the unit (no systemd runs here)
  iproute2              # network namespaces and veth pairs for integration tests
  openssh-server sudo   # real sshd for node preflight and SshHost tests; sudo: nodes added with a sudo login
  chromium              # headless browser check of /docs
  iputils-ping          # pings through VPN tunnels in end-to-end tests
  socat ca-certificates procps
)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
mkdir -p /run/sshd
