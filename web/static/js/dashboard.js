// The counselor's dashboard: rooms, their links (key made and kept in this browser), QR codes.
// Builds the DOM with textContent only.
import { api, ApiError } from "./api.js";
import { t } from "./i18n.js";
import { forgetKey, getKey, newRoomKey, roomLink, setKey } from "./keystore.js";
import { qrDataUrl } from "./qr.js";

const list = document.getElementById("rooms");
const empty = document.getElementById("no-rooms");
const notice = document.getElementById("dash-notice");
const form = document.getElementById("new-room");
const labelInput = document.getElementById("new-room-label");

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
  say(t("error", { message: error.message }));
}

function renderRoom(room) {
  const key = getKey(room.id);
  const item = el("li", { class: "room", "data-room-id": room.id });
  const title = el("h2", {}, room.label || t("untitled"));
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

function renderAll(rooms) {
  list.replaceChildren(...rooms.map(renderRoom));
  empty.hidden = rooms.length > 0;
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
