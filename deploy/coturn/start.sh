#!/bin/sh
# coturn's entrypoint in deploy/docker-compose.yml: the shared secret, the realm and the
# addresses come from the environment (deploy/.env), so they are written to a file in the
# container's /tmp at start, never into the repository's turnserver.conf or onto a command line.
# tests/test_deploy.py runs this very script (with TURN_CONF and TURN_RUN pointing elsewhere).
set -eu
: "${TURN_SECRET:?set RUANG_TURN_SECRET in deploy/.env}"
: "${TURN_REALM:?set TURN_REALM in deploy/.env}"
src=${TURN_CONF:-/etc/coturn/turnserver.conf}
run=${TURN_RUN:-/tmp}
conf="$run/turnserver.conf"
umask 077
{
  cat "$src"
  printf '\n# --- from the environment (deploy/coturn/start.sh) ---\n'
  printf 'static-auth-secret=%s\n' "$TURN_SECRET"
  printf 'realm=%s\n' "$TURN_REALM"
  if [ -n "${TURN_LISTEN_IP:-}" ]; then
    printf 'listening-ip=%s\nrelay-ip=%s\n' "$TURN_LISTEN_IP" "$TURN_LISTEN_IP"
  fi
  if [ -n "${TURN_EXTERNAL_IP:-}" ]; then
    printf 'external-ip=%s\n' "$TURN_EXTERNAL_IP"
  fi
  printf 'pidfile=%s\nuserdb=%s\n' "$run/turnserver.pid" "$run/turndb"
} > "$conf"
exec turnserver -c "$conf"
