#!/usr/bin/env bash
# Runs the whole suite inside a network namespace made for this run (lo up, a veth pair with
# both ends inside, addresses in 198.18.0.0/15), so nothing a test starts (WebRTC gathers
# candidates on every interface) can send traffic outside. Without root it says so and runs the
# suite in the host namespace; tests that carry media then skip themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p test-artifacts
if [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null && ip netns add "ruang-probe-$$" 2>/dev/null; then
  ip netns del "ruang-probe-$$"
  NS="ruang-test-$$"
  cleanup() { ip netns del "$NS" 2>/dev/null || true; }
  trap cleanup EXIT
  ip netns add "$NS"
  ip -n "$NS" link set lo up
  ip -n "$NS" link add veth-a type veth peer name veth-b
  ip -n "$NS" addr add 198.18.0.1/24 dev veth-a
  ip -n "$NS" addr add 198.18.0.2/24 dev veth-b
  ip -n "$NS" link set veth-a up
  ip -n "$NS" link set veth-b up
  echo "run-tests: inside network namespace $NS" >&2
  set +e
  ip netns exec "$NS" env RUANG_TEST_NETNS="$NS" "$PY" -m pytest "$@"
  rc=$?
  set -e
else
  echo "run-tests: no root or no 'ip netns': running without a namespace (media tests skip)" >&2
  set +e
  "$PY" -m pytest "$@"
  rc=$?
  set -e
fi
exit $rc
