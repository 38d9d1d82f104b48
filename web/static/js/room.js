// The counselor's room page: the waiting list (each client's name, decrypted here, with
// "Admit" and "Decline", and the texts they sent while waiting), then the call with
// "End session", "Remove" and a session timer with gentle warnings. The room key comes from
// this browser's storage (keystore.js); without it the page says so and points to "New link".
// Owns the DOM; text is written with textContent only.

import { t } from "./i18n.js";
import { getKey } from "./keystore.js";
import { Session } from "./session.js";
import { Call } from "./call.js";
import { CallUI, ChatPanel, byId, clock, el } from "./callui.js";
import { getLocalMedia, stopStream } from "./media.js";
import { counselorCredentials } from "./turn.js";

const root = byId("room");
const roomId = root.dataset.roomId;
const minutes = Math.max(1, Number(root.dataset.sessionMinutes) || 50);
const notice = byId("room-notice");
const stateLine = byId("room-state");
const list = byId("waiting-list");
const none = byId("waiting-none");
const chatHome = byId("room-chat-home");
const baseTitle = document.title;

const key = getKey(roomId);
const turn = counselorCredentials(); // TURN credentials for each new round
let session = null;
let call = null;
let ui = null;
let media = null; // Promise<MediaStream|null>
let stream = null;
let timer = null;
let startedAt = null;
let warned = new Set();
let callPeerConnected = true;
const waitingTexts = new Map(); // peer id -> [text]
let lastPeers = [];

function say(text) {
  notice.textContent = text;
}

function ensureMedia() {
  if (!media) {
    const asked = getLocalMedia()
      .catch(() => null)
      .then((s) => {
        if (media !== asked) {
          stopStream(s); // the call ended before the camera opened
          return null;
        }
        stream = s;
        if (!s) say(t("camera_unavailable"));
        if (ui) ui.setLocalStream(s);
        return s;
      });
    media = asked;
  }
  return media;
}

function releaseMedia() {
  stopStream(stream);
  stream = null;
  media = null;
}

// --- the waiting list -----------------------------------------------------------------------------

function timeOf(ms) {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

function renderWaiting(peers) {
  lastPeers = peers;
  const waiting = peers.filter((p) => p.state === "waiting");
  const items = waiting.map((p) => {
    const item = el("li", { class: "waiting-item", "data-peer-id": p.id });
    const who = el("p", { class: "who" });
    const name = el("bdi", { dir: "auto", class: p.name ? "name" : "name pending" }, p.name || t("name_pending"));
    who.append(name);
    item.append(who);
    const meta = t("knocked_at", { time: timeOf(p.knockedAt) }) + (p.connected ? "" : ` · ${t("away")}`);
    item.append(el("p", { class: "hint" }, meta));
    const texts = waitingTexts.get(p.id) || [];
    if (texts.length) {
      item.append(el("p", { class: "hint" }, t("waiting_messages")));
      const ul = el("ul", { class: "waiting-texts" });
      for (const text of texts) {
        const li = el("li");
        li.append(el("bdi", { dir: "auto" }, text));
        ul.append(li);
      }
      item.append(ul);
    }
    const actions = el("div", { class: "actions" });
    const admit = el("button", { type: "button", class: "primary" }, t("admit"));
    admit.addEventListener("click", () => admitClient(p.id, admit));
    const decline = el("button", { type: "button", class: "danger" }, t("decline"));
    decline.addEventListener("click", () => {
      decline.disabled = true;
      session.decline(p.id);
    });
    actions.append(admit, decline);
    item.append(actions);
    return item;
  });
  list.replaceChildren(...items);
  none.hidden = waiting.length > 0;
  document.title = waiting.length ? `(${waiting.length}) ${baseTitle}` : baseTitle;
  if (session && session.callPeer && ui) {
    const peer = peers.find((p) => p.id === session.callPeer);
    if (peer && peer.connected !== callPeerConnected) {
      callPeerConnected = peer.connected;
      ui.note(peer.connected ? t("state_connected") : t("client_away"));
    }
  }
}

async function admitClient(id, button) {
  button.disabled = true;
  say(t("admitting"));
  await ensureMedia(); // the camera is ready before the call starts
  session.admit(id);
  setTimeout(() => {
    button.disabled = false;
  }, 1500);
}

// --- the call -------------------------------------------------------------------------------------

const chat = new ChatPanel({
  send: (text) => session.sendChat(text),
  peerLabel: t("chat_client"),
});

function callUI() {
  if (!ui) {
    ui = new CallUI({
      role: "counselor",
      handlers: {
        onLeave: async () => {
          await session.leave("left");
          window.location.assign("/");
        },
        onEnd: () => session.end(),
        onRemove: () => {
          if (session.callPeer) session.remove(session.callPeer);
        },
      },
    });
  }
  return ui;
}

function enterCall(peerId) {
  const calls = callUI();
  root.dataset.inCall = "true";
  callPeerConnected = true;
  chat.moveTo(calls.chatSlot);
  call = new Call({
    session, peerId, media: ensureMedia(), iceConfig: () => turn.config(), resumed: session.resumedCall,
  });
  session.attachCall(call);
  calls.attach(call);
  calls.setLocalStream(stream);
  call.addEventListener("state", (e) => {
    if (e.detail.state === "connected" && startedAt === null) startTimer();
  });
  calls.show();
  say("");
}

function leaveCall() {
  if (call) {
    session.detachCall(call);
    call.close();
    call = null;
  }
  if (ui) {
    ui.detach();
    ui.hide();
  }
  delete root.dataset.inCall;
  chat.moveTo(chatHome);
  stopTimer();
  releaseMedia();
  if (ui) ui.setLocalStream(null);
}

function startTimer() {
  startedAt = Date.now();
  warned = new Set();
  const total = minutes * 60 * 1000;
  const line = byId("session-timer");
  const warning = byId("timer-notice");
  const tickTimer = () => {
    const elapsed = Date.now() - startedAt;
    line.textContent = t("timer", { elapsed: clock(elapsed), total: clock(total) });
    const left = total - elapsed;
    const marks = [
      ["10", minutes > 10 && left <= 10 * 60 * 1000],
      ["5", minutes > 5 && left <= 5 * 60 * 1000],
      ["over", left <= 0],
    ];
    for (const [mark, due] of marks) {
      if (due && !warned.has(mark)) {
        warned.add(mark);
        warning.textContent = t(`timer_${mark}`);
        line.classList.toggle("timer-over", mark === "over");
      }
    }
  };
  tickTimer();
  timer = setInterval(tickTimer, 1000);
}

function stopTimer() {
  clearInterval(timer);
  timer = null;
  startedAt = null;
  const line = byId("session-timer");
  if (line) line.textContent = "";
}

// --- start ----------------------------------------------------------------------------------------

function start() {
  session = new Session({ roomId, roomKey: key, role: "counselor" });
  session.addEventListener("status", (e) => {
    const state = e.detail.state;
    if (state === "open") stateLine.textContent = t("room_open");
    else if (state === "reconnecting") stateLine.textContent = t("room_reconnecting");
    else if (state === "connecting") stateLine.textContent = t("room_connecting");
  });
  session.addEventListener("call_servers", (e) => turn.offer(e.detail));
  session.addEventListener("roster", (e) => renderWaiting(e.detail.peers));
  session.addEventListener("chat", (e) => {
    const { peer, text } = e.detail;
    if (peer === session.callPeer && session.inCall) {
      chat.addTheirs(text);
      return;
    }
    const texts = waitingTexts.get(peer) || [];
    texts.push(text);
    waitingTexts.set(peer, texts.slice(-20));
    renderWaiting(lastPeers);
  });
  session.addEventListener("chat-state", (e) => chat.delivered(e.detail.id));
  session.addEventListener("call", (e) => {
    if (e.detail.active) enterCall(e.detail.peerId);
    else leaveCall();
  });
  session.addEventListener("peer-gone", (e) => {
    waitingTexts.delete(e.detail.id);
    const texts = {
      left: "client_left", removed: "client_removed", ended: "session_ended",
      expired: "client_expired", declined: "declined_done",
    };
    say(t(texts[e.detail.reason] || "client_left"));
  });
  session.addEventListener("refused", (e) => {
    if (e.detail.code === "room_full") say(t("room_full"));
    else if (e.detail.ref === "admit" || e.detail.ref === "decline" || e.detail.ref === "remove") {
      say(t("refused", { code: e.detail.code }));
    }
  });
  session.addEventListener("ended", (e) => {
    leaveCall();
    list.replaceChildren();
    stateLine.textContent = "";
    say(t(`ended_${e.detail.reason}`));
  });
  session.start();
}

if (!key) {
  byId("no-room-key").hidden = false;
  none.hidden = true;
} else {
  start(); // call credentials come with "joined" and each admission (call_servers)
}
