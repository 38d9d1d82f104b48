// The counselor's dashboard: rooms, their links (key made and kept in this browser), QR codes,
// and who is waiting, live (/api/events): a badge per room, a count in the title bar and a knock
// sound, which also work in a background tab. Builds the DOM with textContent only.
import { api, ApiError } from "./api.js";
import { t } from "./i18n.js";
import { forgetKey, getKey, newRoomKey, roomLink, setKey } from "./keystore.js";
import { qrDataUrl } from "./qr.js";

const list = document.getElementById("rooms");
const empty = document.getElementById("no-rooms");
const notice = document.getElementById("dash-notice");
const form = document.getElementById("new-room");
const labelInput = document.getElementById("new-room-label");
const liveNotice = document.getElementById("live-notice");
const soundHint = document.getElementById("sound-hint");
const baseTitle = document.title;
let rooms = [];
let waiting = {}; // room id -> clients waiting, as the live feed last said

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

function say(text) {
  notice.textContent = text;
}

function fail(error) {
  if (error instanceof ApiError && error.status === 401) {
    say(t("session_expired"));
    window.location.assign("/login");
    return;
  }
  if (error instanceof ApiError && error.code === "too_many_rooms") {
    say(t("too_many_rooms"));
    return;
  }
  say(t("error", { message: error.message }));
}

function renderRoom(room) {
  const key = getKey(room.id);
  const item = el("li", { class: "room", "data-room-id": room.id });
  const title = el("h2", {}, room.label || t("untitled"));
  const badge = el("span", { class: "waiting-badge" });
  badge.hidden = true;
  title.append(" ", badge);
  item.append(title);

  const fieldId = `link-${room.id}`;
  const linkLabel = el("label", { for: fieldId }, t("room_link"));
  const field = el("input", { id: fieldId, class: "link-field", readonly: "", type: "text" });
  field.value = key ? roomLink(window.location.origin, room.id, key) : "";
  field.addEventListener("focus", () => field.select());
  item.append(linkLabel, field);

  if (!key) {
    item.append(el("p", { class: "hint" }, t("no_key")));
  }

  const actions = el("div", { class: "actions" });
  const copy = el("button", { type: "button" }, t("copy"));
  copy.disabled = !key;
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(field.value);
      say(t("copied"));
    } catch {
      field.focus();
      field.select();
      say(t("copy_failed"));
    }
  });
  const fresh = el("button", { type: "button" }, t("new_link"));
  fresh.addEventListener("click", () => makeNewLink(room));
  const rename = el("button", { type: "button" }, t("rename"));
  rename.addEventListener("click", () => renameRoom(room));
  const close = el("button", { type: "button", class: "danger" }, t("close_room"));
  close.addEventListener("click", () => closeRoom(room));
  const open = el("button", { type: "button", class: "primary" }, t("open_room"));
  open.addEventListener("click", () => window.location.assign(`/rooms/${room.id}`));
  actions.append(copy, fresh, rename, close, open);
  item.append(actions);

  if (key) {
    const link = field.value;
    const share = el("div", { class: "share qr-wrap" });
    const img = el("img", { class: "qr", alt: t("qr"), width: "164", height: "164" });
    img.src = qrDataUrl(link);
    const whatsapp = el("a", {
      href: `https://wa.me/?text=${encodeURIComponent(t("whatsapp_text", { link }))}`,
      target: "_blank",
      rel: "noopener noreferrer",
    }, t("share_whatsapp"));
    share.append(img, whatsapp);
    item.append(share);
  }
  return item;
}

function renderAll(fresh) {
  rooms = fresh;
  list.replaceChildren(...rooms.map(renderRoom));
  empty.hidden = rooms.length > 0;
  showWaiting();
}

// --- who is waiting, live ------------------------------------------------------------------

function showWaiting() {
  for (const item of list.querySelectorAll("li.room")) {
    const count = waiting[item.dataset.roomId] || 0;
    const badge = item.querySelector(".waiting-badge");
    badge.textContent = count ? t("waiting_count", { count }) : "";
    badge.hidden = count === 0;
  }
  const total = Object.values(waiting).reduce((sum, n) => sum + n, 0);
  document.title = total ? `(${total}) ${baseTitle}` : baseTitle;
}

// Browsers keep a page silent until the user has interacted with it, so the AudioContext is
// made (or resumed) on the first click or key press; the hint on the page says so until then.
let audio = null;

function updateSoundHint() {
  soundHint.hidden = Boolean(audio && audio.state === "running");
}

function unlockAudio() {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return;
  try {
    if (!audio) {
      audio = new Context();
      audio.addEventListener("statechange", updateSoundHint);
    }
    if (audio.state === "suspended") audio.resume().catch(() => {});
  } catch {
    audio = null;
  }
  updateSoundHint();
}

for (const type of ["pointerdown", "keydown", "touchend"]) {
  document.addEventListener(type, unlockAudio, { capture: true, passive: true });
}

// Two short wooden knocks, synthesised (no audio file).
function knock() {
  if (!audio || audio.state !== "running") return;
  const start = audio.currentTime + 0.02;
  for (const offset of [0, 0.17]) {
    const at = start + offset;
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    tone.type = "triangle";
    tone.frequency.setValueAtTime(210, at);
    tone.frequency.exponentialRampToValueAtTime(85, at + 0.09);
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.6, at + 0.004);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.13);
    tone.connect(gain).connect(audio.destination);
    tone.start(at);
    tone.stop(at + 0.14);
  }
}

function onFeed(event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return;
  }
  if (!data || typeof data.rooms !== "object" || data.rooms === null) return;
  const next = {};
  for (const [id, count] of Object.entries(data.rooms)) {
    if (Number.isInteger(count) && count > 0) next[id] = count;
  }
  const rose = Object.keys(next).filter((id) => next[id] > (waiting[id] || 0));
  waiting = next;
  showWaiting();
  if (rose.length) {
    knock();
    liveNotice.textContent = rose.map((id) => {
      const room = rooms.find((r) => r.id === id);
      const label = (room && room.label) || t("untitled");
      return t("knock_notice", { room: label, count: next[id] });
    }).join(" ");
  }
}

let retryDelay = 5000;

function connectLive() {
  if (!window.EventSource) return;
  const source = new EventSource("/api/events");
  source.addEventListener("message", onFeed);
  source.addEventListener("open", () => {
    retryDelay = 5000;
    if (notice.textContent === t("live_paused")) say("");
  });
  source.addEventListener("error", () => {
    // While the stream is merely interrupted the browser reconnects by itself. CLOSED means it
    // gave up (the session ended, too many tabs, a proxy's error page): check the session,
    // which sends the counselor to log in if it ended, and try again later.
    if (source.readyState !== EventSource.CLOSED) return;
    source.close();
    say(t("live_paused"));
    refresh();
    window.setTimeout(connectLive, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 60000);
  });
}

async function refresh() {
  try {
    const data = await api("GET", "/api/rooms");
    renderAll(data.rooms);
  } catch (error) {
    fail(error);
  }
}

async function createRoom(event) {
  event.preventDefault();
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const room = await api("POST", "/api/rooms", { label: labelInput.value });
    setKey(room.id, newRoomKey());
    labelInput.value = "";
    await refresh();
    say(t("created"));
    const field = document.getElementById(`link-${room.id}`);
    if (field) field.focus();
  } catch (error) {
    fail(error);
  } finally {
    button.disabled = false;
  }
}

async function makeNewLink(room) {
  if (!window.confirm(t("new_link_confirm"))) return;
  try {
    const updated = await api("POST", `/api/rooms/${room.id}/new-link`);
    setKey(updated.id, newRoomKey());
    forgetKey(room.id);
    await refresh();
    say(t("new_link_done"));
  } catch (error) {
    fail(error);
  }
}

async function renameRoom(room) {
  const label = window.prompt(t("rename_prompt"), room.label);
  if (label === null) return;
  try {
    await api("POST", `/api/rooms/${room.id}/rename`, { label });
    await refresh();
  } catch (error) {
    fail(error);
  }
}

async function closeRoom(room) {
  if (!window.confirm(t("close_confirm"))) return;
  try {
    await api("POST", `/api/rooms/${room.id}/close`);
    forgetKey(room.id);
    await refresh();
  } catch (error) {
    fail(error);
  }
}

form.addEventListener("submit", createRoom);
refresh();
connectLive();
