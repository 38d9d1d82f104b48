// The client's page: pre-join (camera and microphone preview, device pickers, microphone level,
// name, connection check, data saver) -> "Join" knocks -> waiting room (with encrypted texts to
// the counselor) -> the call. The key is taken from the fragment, kept for this tab only
// (sessionStorage) and stripped from the address bar at once. The name goes only into the
// encrypted hello. Owns the DOM; text is written with textContent only.

import { t } from "./i18n.js";
import { ROOM_KEY_RE } from "./keystore.js";
import { COUNSELOR_ID, Session, cleanName } from "./session.js";
import { Call } from "./call.js";
import { CallUI, ChatPanel, byId } from "./callui.js";
import { getLocalMedia, listDevices, micLevel, stopStream } from "./media.js";
import { checkConnection } from "./precheck.js";
import { clientCredentials, watchedTokenStore } from "./turn.js";

const app = byId("client-app");
const roomId = app.dataset.roomId;
const KEY_ITEM = `ruang.client-key.${roomId}`;
const NAME_ITEM = `ruang.client-name.${roomId}`;
const SAVER_ITEM = `ruang.client-saver.${roomId}`;
const TOKEN_ITEM = `ruang.token.client.${roomId}`;
const tokens = watchedTokenStore(TOKEN_ITEM); // TURN credentials once the token says admitted
const turn = clientCredentials(tokens);

const screens = {
  prejoin: byId("prejoin"),
  waiting: byId("waiting"),
  ended: byId("ended"),
  call: byId("call"),
};
const preview = byId("preview");
const mediaNotice = byId("media-notice");
const cameraSelect = byId("camera-select");
const micSelect = byId("mic-select");
const meter = byId("mic-level");
const nameInput = byId("client-name");
const checkButton = byId("check");
const checkResult = byId("check-result");
const saverBox = byId("data-saver");
const joinButton = byId("join");
const waitingText = byId("waiting-text");

function storageGet(item) {
  try {
    return sessionStorage.getItem(item);
  } catch {
    return null;
  }
}

function storageSet(item, value) {
  try {
    sessionStorage.setItem(item, value);
  } catch {
    /* private mode without storage: memory only */
  }
}

function storageClear() {
  for (const item of [KEY_ITEM, NAME_ITEM, SAVER_ITEM, TOKEN_ITEM]) {
    try {
      sessionStorage.removeItem(item);
    } catch {
      /* nothing stored */
    }
  }
}

function takeKey() {
  const fragment = window.location.hash.slice(1);
  if (fragment) {
    history.replaceState(null, "", window.location.pathname + window.location.search);
    if (ROOM_KEY_RE.test(fragment)) {
      storageSet(KEY_ITEM, fragment);
      return fragment;
    }
  }
  return storageGet(KEY_ITEM);
}

const key = takeKey();
let stream = null;
let previewing = Promise.resolve(); // the latest camera/microphone request
let level = null;
let meterFrame = 0;
let session = null;
let call = null;
let exiting = false;

function show(name) {
  for (const [screen, node] of Object.entries(screens)) node.hidden = screen !== name;
}

// --- pre-join -------------------------------------------------------------------------------------

function fillSelect(select, devices, current) {
  const options = devices.map((d, i) => {
    const option = document.createElement("option");
    option.value = d.deviceId;
    option.textContent = d.label || t("device_unnamed", { n: i + 1 });
    option.selected = d.deviceId === current;
    return option;
  });
  if (options.length === 0) {
    const none = document.createElement("option");
    none.value = "";
    none.textContent = t("device_default");
    options.push(none);
  }
  select.replaceChildren(...options);
  select.disabled = devices.length === 0;
}

function trackDevice(kind) {
  const track = stream && stream.getTracks().find((x) => x.kind === kind);
  return track ? track.getSettings().deviceId || null : null;
}

function runMeter() {
  cancelAnimationFrame(meterFrame);
  if (level) level.close();
  level = micLevel(stream);
  const step = () => {
    meter.value = level.read();
    meterFrame = requestAnimationFrame(step);
  };
  meterFrame = requestAnimationFrame(step);
}

function stopMeter() {
  cancelAnimationFrame(meterFrame);
  if (level) level.close();
  level = null;
  meter.value = 0;
}

function startPreview(choice = {}) {
  previewing = openPreview(choice);
  return previewing;
}

async function openPreview(choice = {}) {
  stopStream(stream);
  stream = null;
  mediaNotice.textContent = "";
  try {
    stream = await getLocalMedia(choice);
  } catch (error) {
    mediaNotice.textContent = error.kind === "denied" ? t("media_denied") : t("media_none");
  }
  preview.srcObject = stream;
  preview.hidden = !(stream && stream.getVideoTracks().length);
  if (stream && !stream.getVideoTracks().length) mediaNotice.textContent = t("media_audio_only");
  try {
    const { cameras, microphones } = await listDevices();
    fillSelect(cameraSelect, cameras, trackDevice("video"));
    fillSelect(micSelect, microphones, trackDevice("audio"));
  } catch {
    /* no device list: the pickers stay as they are */
  }
  runMeter();
}

function onDeviceChange() {
  startPreview({ cameraId: cameraSelect.value || null, micId: micSelect.value || null });
}

async function runCheck() {
  checkButton.disabled = true;
  checkResult.textContent = t("check_running");
  try {
    await previewing; // a check started while the camera is still opening must wait for it
    const progress = (text) => { checkResult.textContent = text; };
    checkResult.textContent = (await checkConnection({ stream, onProgress: progress })).text;
  } finally {
    checkButton.disabled = false;
  }
}

// --- the session ----------------------------------------------------------------------------------

const chat = new ChatPanel({
  send: (text) => {
    if (!session) throw new Error("not joined");
    return session.sendChat(text);
  },
  peerLabel: t("chat_counselor"),
});

let dataSaver = false;
let ui = null;

function callUI() {
  if (!ui) {
    ui = new CallUI({
      role: "client",
      dataSaver,
      handlers: {
        onLeave: () => leave(),
        onEnd: () => undefined,
        onRemove: () => undefined,
        onLevel: () => undefined,
      },
    });
  }
  return ui;
}

function join({ resuming = false } = {}) {
  if (!key || session) return;
  const name = cleanName(nameInput.value);
  dataSaver = saverBox.checked;
  storageSet(NAME_ITEM, name);
  storageSet(SAVER_ITEM, dataSaver ? "1" : "");
  stopMeter();
  show("waiting");
  waitingText.textContent = resuming ? t("rejoining") : t("waiting_connecting");
  session = new Session({ roomId, roomKey: key, role: "client", name, tokenStore: tokens });
  session.addEventListener("waiting", (e) => {
    waitingText.textContent = e.detail.reason === "knocked" ? t("waiting_knocked") : t("waiting_away");
  });
  session.addEventListener("call", (e) => {
    if (e.detail.active) {
      enterCall();
    } else if (session.ended === null) {
      // The place was lost (the resume was refused): this is a new knock.
      closeCall();
      chat.moveTo(byId("waiting-chat-slot"));
      show("waiting");
    }
  });
  session.addEventListener("call_servers", (e) => turn.offer(e.detail));
  session.addEventListener("chat", (e) => chat.addTheirs(e.detail.text));
  session.addEventListener("chat-state", (e) => chat.delivered(e.detail.id));
  session.addEventListener("counselor", (e) => {
    if (!ui) return;
    const { present, reason } = e.detail;
    if (present) ui.note(t("counselor_back"));
    else ui.note(reason === "away" ? t("counselor_away") : t("counselor_left"));
  });
  session.addEventListener("status", (e) => {
    if (e.detail.state === "reconnecting" && ui && call) ui.note(t("state_signal_lost"));
  });
  session.addEventListener("ended", (e) => ended(e.detail.reason));
  session.start();
}

function enterCall() {
  const calls = callUI();
  show("call");
  chat.moveTo(calls.chatSlot);
  // Admission can come before the camera has opened (a slow phone, a permission prompt): the
  // call waits for the preview's stream instead of starting without one.
  const media = previewing.then(
    () => stream,
    () => stream,
  );
  calls.setLocalStream(stream);
  media.then((local) => {
    if (ui && local !== ui.stream) ui.setLocalStream(local);
  });
  call = new Call({
    session,
    peerId: COUNSELOR_ID,
    media,
    iceConfig: () => turn.config(),
    level: dataSaver ? "low-video" : "video",
    resumed: session.resumedCall,
  });
  session.attachCall(call);
  calls.attach(call);
  call.addEventListener("bye", (e) => {
    if (e.detail.reason === "ended") calls.note(t("bye_ended"));
  });
  calls.show();
}

function closeCall() {
  if (call) {
    session.detachCall(call);
    call.close();
    call = null;
  }
  if (ui) ui.detach();
}

function ended(reason) {
  if (exiting) return;
  closeCall();
  stopMeter();
  stopStream(stream);
  stream = null;
  byId("ended-text").textContent = t(`ended_${reason}`);
  show("ended");
  try {
    sessionStorage.removeItem(TOKEN_ITEM); // this place is gone; the key stays for a new knock
  } catch {
    /* nothing stored */
  }
}

async function leave() {
  if (!session) return;
  await session.leave("left");
}

function quickExit() {
  exiting = true;
  try {
    if (session) session.leaveNow();
    closeCall();
    stopStream(stream);
  } finally {
    storageClear();
    window.location.replace("/bye");
  }
}

// --- start ----------------------------------------------------------------------------------------

byId("quick-exit").addEventListener("click", quickExit);
byId("leave-waiting").addEventListener("click", () => leave());
cameraSelect.addEventListener("change", onDeviceChange);
micSelect.addEventListener("change", onDeviceChange);
checkButton.addEventListener("click", runCheck);
joinButton.addEventListener("click", () => join());
document.addEventListener("click", () => level && level.resume(), { once: false, passive: true });

byId("no-key").hidden = Boolean(key);
joinButton.disabled = !key;
const storedName = storageGet(NAME_ITEM);
if (storedName) nameInput.value = storedName;
saverBox.checked = storageGet(SAVER_ITEM) === "1";

if (key && storageGet(TOKEN_ITEM)) {
  // A reload during a session: take the place back without knocking again.
  show("waiting");
  waitingText.textContent = t("rejoining");
  startPreview().then(() => join({ resuming: true }));
} else {
  show("prejoin");
  startPreview();
}
