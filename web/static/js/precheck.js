// The pre-join "Check connection": a simple local check. No DOM.
//
// SEAM (issue 6, "TURN relay and the pre-call check"): this only checks that the camera and
// microphone opened and that a WebSocket to this server opens. The full network test (a call to
// the server's echo peer, through TURN when needed, measuring bitrate, loss and RTT) replaces
// checkConnection() with the same result shape: {verdict: "video"|"audio"|"text", server: bool}.

import { wsUrl } from "./protocol.js";

const WS_TIMEOUT_MS = 8000;

/** Whether a WebSocket to the server's /ws opens (closed at once, before any join). */
export function serverReachable(url = wsUrl(globalThis.location), timeoutMs = WS_TIMEOUT_MS) {
  return new Promise((resolve) => {
    let ws;
    let done = false;
    const finish = (ok) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        ws.close(1000);
      } catch {
        /* not open */
      }
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    try {
      ws = new WebSocket(url);
    } catch {
      finish(false);
      return;
    }
    ws.addEventListener("open", () => finish(true));
    ws.addEventListener("error", () => finish(false));
    ws.addEventListener("close", () => finish(false));
  });
}

/** {verdict, server}: the best call mode the local check supports. */
export async function checkConnection({ stream }) {
  const server = await serverReachable();
  const live = (kind) => Boolean(stream && stream.getTracks().some((t) => t.kind === kind && t.readyState === "live"));
  let verdict = "text";
  if (server && live("audio") && live("video")) verdict = "video";
  else if (server && live("audio")) verdict = "audio";
  return { verdict, server };
}
