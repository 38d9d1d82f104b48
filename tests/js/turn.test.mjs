// turn.js: call credentials pushed over /ws (`call_servers`) are used as they are, with no
// fetch on the call-setup path; a fetch happens only when none are fresh.
import assert from "node:assert/strict";
import { test } from "node:test";

import { TurnCredentials } from "../../web/static/js/turn.js";

const PUSHED = {
  iceServers: [
    { urls: ["turn:turn.example.test:3478?transport=udp"], username: "1767225600:abcdefghijkl", credential: "c2VjcmV0" },
    { urls: ["stun:turn.example.test:3478"] },
  ],
  ttl: 600,
  expires: 1_767_225_600,
};

function credentials(now) {
  const calls = { authorize: 0, fetch: 0 };
  globalThis.fetch = async () => {
    calls.fetch += 1;
    return { status: 200, json: async () => ({ iceServers: [{ urls: ["stun:fetched.example.test"] }] }) };
  };
  const creds = new TurnCredentials({
    authorize: async () => {
      calls.authorize += 1;
      return { Authorization: "Bearer t" };
    },
    relay: false,
    now: () => now.ms,
  });
  return { creds, calls };
}

test("pushed credentials serve the next peer connections without a fetch", async () => {
  const now = { ms: (PUSHED.expires - 600) * 1000 };
  const { creds, calls } = credentials(now);
  assert.deepEqual(creds.offer({ ...PUSHED }), PUSHED.iceServers);
  assert.deepEqual(await creds.config(), { iceServers: PUSHED.iceServers });
  now.ms += 400_000; // 200 s left of 600: still more than a quarter
  assert.deepEqual(await creds.config(), { iceServers: PUSHED.iceServers });
  assert.deepEqual(calls, { authorize: 0, fetch: 0 });
  now.ms += 100_000; // 100 s left: running low, so the next round fetches
  assert.deepEqual(await creds.config(), { iceServers: [{ urls: ["stun:fetched.example.test"] }] });
  assert.deepEqual(calls, { authorize: 1, fetch: 1 });
});

test("without TURN the pushed empty list is final; a malformed push changes nothing", async () => {
  const now = { ms: 0 };
  const { creds, calls } = credentials(now);
  assert.equal(creds.offer({ iceServers: "nope" }), null);
  assert.equal(creds.fresh(), false);
  assert.deepEqual(creds.offer({ iceServers: [] }), []);
  now.ms += 86_400_000;
  assert.deepEqual(await creds.config(), { iceServers: [] });
  assert.deepEqual(calls, { authorize: 0, fetch: 0 });
});
