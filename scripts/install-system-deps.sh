#!/usr/bin/env bash
# Debian packages the test suite needs: Chromium for browser tests, zbar to decode QR codes,
# iproute2 for the test network namespace, coturn (turnserver) for the TURN tests, redis-server,
# PostgreSQL and nginx for the scale-out tests; the tests start their own instances of each on
# loopback. Installs only what is missing.
set -euo pipefail
packages=(chromium zbar-tools iproute2 nftables coturn redis-server postgresql nginx-light)
missing=()
# Node runs the JS crypto and ladder tests (node --test); Debian's nodejs if none is installed.
command -v node >/dev/null || missing+=(nodejs)
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: missing ${missing[*]}; run as root or install them by hand" >&2
  echo "install-system-deps: tests that need them will be skipped" >&2
  exit 0
fi
echo "install-system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian enables coturn's system service on install; the tests need none running (and an
# unconfigured relay must not listen on this machine).
# The same for Redis, PostgreSQL and nginx: the tests start their own, on loopback.
for service in coturn redis-server postgresql nginx; do
  if command -v systemctl >/dev/null; then
    systemctl disable --now "$service" >/dev/null 2>&1 || true
  fi
  if command -v service >/dev/null; then
    service "$service" stop >/dev/null 2>&1 || true
  fi
done
