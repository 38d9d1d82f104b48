// The in-call screen and the chat panel, shared by the client page (client.js) and the
// counselor's room page (room.js). Owns its DOM (web/templates/_call.html, _chat.html) and
// writes text with textContent only: names and messages are never parsed as HTML, and each sits
// in its own <bdi> so right-to-left overrides cannot reorder what is around it.

import { t } from "./i18n.js";

export function el(tag, attrs = {}, text = undefined) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

export function byId(id) {
  return document.getElementById(id);
}

function modeName(level) {
  return t(`mode_${level}`);
}

// --- chat ---------------------------------------------------------------------------------------

/** The chat panel: a log and a form. send(text) returns [{id}] or throws. */
export class ChatPanel {
  constructor({ send, peerLabel }) {
    this.root = byId("chat");
    this.log = byId("chat-log");
    this.form = byId("chat-form");
    this.input = byId("chat-input");
    this.send = send;
    this.peerLabel = peerLabel;
    this.items = new Map(); // id -> state element
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
  }

  moveTo(slot) {
    if (slot && this.root.parentElement !== slot) slot.append(this.root);
  }

  submit() {
    const text = this.input.value;
    if (!text.trim()) return;
    let sent;
    try {
      sent = this.send(text);
    } catch {
      this.note(t("chat_not_sent"));
      return;
    }
    this.input.value = "";
    if (sent.length > 1) this.note(t("chat_split", { count: sent.length }));
    for (const m of sent) this.addMine(m.id, m.text);
  }

  entry(kind, who, text) {
    const item = el("li", { class: `msg ${kind}` });
    item.append(el("span", { class: "who" }, who));
    const body = el("bdi", { class: "text", dir: "auto" }, text);
    item.append(body);
    this.log.append(item);
    item.scrollIntoView({ block: "nearest" });
    return item;
  }

  addMine(id, text) {
    const item = this.entry("mine", t("chat_you"), text);
    const state = el("span", { class: "state" }, t("chat_sending"));
    item.append(state);
    item.dataset.id = id;
    this.items.set(id, state);
  }

  delivered(id) {
    const state = this.items.get(id);
    if (state) {
      state.textContent = t("chat_delivered");
      state.classList.add("delivered");
      this.items.delete(id);
    }
  }

  addTheirs(text, who = this.peerLabel) {
    this.entry("theirs", who, text);
  }

  note(text) {
    this.log.append(el("li", { class: "msg note" }, text));
  }
}

// --- the call screen ----------------------------------------------------------------------------

/**
 * role: "client"|"counselor". handlers: onLeave(), onEnd(), onRemove(), onLevel(level).
 * dataSaver: start at "low-video".
 */
export class CallUI {
  constructor({ role, handlers, dataSaver = false }) {
    this.role = role;
    this.handlers = handlers;
    this.section = byId("call");
    this.remoteVideo = byId("remote-video");
    this.localVideo = byId("local-video");
    this.placeholder = byId("remote-placeholder");
    this.status = byId("mode-status");
    this.stateLine = byId("call-state");
    this.pathEl = byId("path");
    this.pathNotice = byId("path-notice");
    this.codeEl = byId("safety-code");
    this.codeChanged = byId("safety-changed");
    this.securityAlert = byId("security-alert");
    this.muteButton = byId("mute");
    this.cameraButton = byId("camera");
    this.modeButtons = [...this.section.querySelectorAll(".mode-button")];
    this.chatSlot = byId("call-chat-slot");
    this.muted = false;
    this.cameraOff = false;
    this.stream = null;
    this.call = null;
    this.level = dataSaver ? "low-video" : "video";
    this.chosen = this.level;
    this.dataSaver = dataSaver;
    this.path = null;
    this.bind();
    this.renderMode({ level: this.level }, true);
  }

  bind() {
    this.muteButton.addEventListener("click", () => this.setMuted(!this.muted));
    this.cameraButton.addEventListener("click", () => this.setCameraOff(!this.cameraOff));
    byId("leave").addEventListener("click", () => this.handlers.onLeave());
    const end = byId("end-session");
    if (end) {
      end.addEventListener("click", () => {
        if (window.confirm(t("end_confirm"))) this.handlers.onEnd();
      });
    }
    const remove = byId("remove");
    if (remove) {
      remove.addEventListener("click", () => {
        if (window.confirm(t("remove_confirm"))) this.handlers.onRemove();
      });
    }
    for (const button of this.modeButtons) {
      button.addEventListener("click", () => this.choose(button.dataset.level));
    }
    this.remoteVideo.addEventListener("playing", () => {
      this.placeholder.hidden = true;
    });
  }

  show() {
    this.section.hidden = false;
  }

  hide() {
    this.section.hidden = true;
  }

  setLocalStream(stream) {
    this.stream = stream;
    this.localVideo.srcObject = stream || null;
    this.localVideo.hidden = !(stream && stream.getVideoTracks().length);
    this.applyTrackState();
  }

  /** Follow a call.js Call (a new one after each session). */
  attach(call) {
    this.call = call;
    this.path = null;
    this.placeholder.hidden = false;
    this.remoteVideo.srcObject = null;
    this.pathEl.textContent = t("path_unknown");
    this.pathEl.className = "path path-unknown";
    this.codeEl.textContent = t("safety_pending");
    this.codeChanged.hidden = true;
    this.securityAlert.hidden = true;
    this.setState("connecting");
    call.addEventListener("remote-stream", (e) => {
      this.remoteVideo.srcObject = e.detail.stream;
      this.remoteVideo.play().catch(() => undefined);
    });
    call.addEventListener("safety-code", (e) => this.showCode(e.detail));
    call.addEventListener("path", (e) => this.showPath(e.detail.path));
    call.addEventListener("state", (e) => this.setState(e.detail.state));
    call.addEventListener("level", (e) => this.renderMode(e.detail));
    call.addEventListener("security", () => {
      this.securityAlert.hidden = false;
      this.codeEl.textContent = "—";
    });
    if (this.chosen !== "video") call.setLevel(this.chosen);
  }

  setState(state) {
    this.stateLine.textContent = t(`state_${state}`);
    this.section.dataset.state = state;
    if (state !== "connected") this.placeholder.hidden = false;
    else if (this.remoteVideo.readyState >= 2) this.placeholder.hidden = true;
  }

  note(text) {
    this.stateLine.textContent = text;
  }

  showCode({ digits, words, changed }) {
    this.codeEl.textContent = `${digits} · ${words.join(" ")}`;
    if (changed) {
      this.codeChanged.textContent = t("safety_changed");
      this.codeChanged.hidden = false;
    }
  }

  showPath(path) {
    const previous = this.path;
    this.path = path;
    const label = t(`path_${path}`);
    this.pathEl.textContent = label;
    this.pathEl.className = `path path-${path}`;
    if (previous !== null && previous !== path) {
      this.pathNotice.textContent = t("path_changed", { path: label });
      this.pathEl.classList.add("path-flash");
    }
  }

  choose(level) {
    // Data saver turns "Video" into low video: still video, lighter.
    const own = level === "video" && this.dataSaver ? "low-video" : level;
    this.chosen = own;
    for (const button of this.modeButtons) {
      button.setAttribute("aria-pressed", String(button.dataset.level === level));
    }
    if (this.call) this.call.setLevel(own);
    else this.renderMode({ level: own, cause: "mine", ownCause: own === "video" ? "normal" : "manual" });
    if (this.handlers.onLevel) this.handlers.onLevel(own);
  }

  // The one role="status" element: "<mode> — <why>". Why: the other person's connection or
  // choice when theirs decides, else mine: my connection, my choice (or data saver), or normal.
  renderMode({ level, cause = "mine", ownCause = "normal", peerReason = null }, starting = false) {
    this.level = level;
    let reason;
    if (starting) reason = t("reason_connecting");
    else if (this.call && this.call.textOnly()) reason = t("reason_text_peer");
    else if (cause === "theirs") reason = t(peerReason === "network" ? "reason_peer_network" : "reason_peer");
    else if (ownCause === "manual") {
      reason = level === "low-video" && this.dataSaver ? t("reason_saver") : t("reason_you");
    } else if (ownCause === "network" && level !== "video") reason = t("reason_network");
    else reason = t("reason_normal");
    this.status.textContent = t("mode_status", { mode: modeName(level), reason });
    this.section.dataset.level = level;
  }

  setMuted(muted) {
    this.muted = muted;
    this.muteButton.textContent = muted ? t("unmute") : t("mute");
    this.muteButton.setAttribute("aria-pressed", String(muted));
    this.applyTrackState();
  }

  setCameraOff(off) {
    this.cameraOff = off;
    this.cameraButton.textContent = off ? t("camera_on") : t("camera_off");
    this.cameraButton.setAttribute("aria-pressed", String(off));
    this.applyTrackState();
  }

  applyTrackState() {
    if (!this.stream) return;
    for (const track of this.stream.getAudioTracks()) track.enabled = !this.muted;
    for (const track of this.stream.getVideoTracks()) track.enabled = !this.cameraOff;
  }

  detach() {
    this.call = null;
    this.remoteVideo.srcObject = null;
  }
}

/** A mm:ss or h:mm:ss clock. */
export function clock(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(s)}` : `${two(m)}:${two(s)}`;
}
