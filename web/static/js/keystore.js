// Room keys live only in this browser (local storage), never on the server. No DOM.
import { encode } from "./base64url.js";

const PREFIX = "ruang.key.";
export const ROOM_ID_RE = /^[A-Za-z0-9_-]{22}$/;
export const ROOM_KEY_RE = /^[A-Za-z0-9_-]{43}$/;

export function newRoomKey() {
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  return encode(bytes);
}

export function getKey(roomId) {
  try {
    const key = localStorage.getItem(PREFIX + roomId);
    return key && ROOM_KEY_RE.test(key) ? key : null;
  } catch {
    return null;
  }
}

export function setKey(roomId, key) {
  localStorage.setItem(PREFIX + roomId, key);
}

export function forgetKey(roomId) {
  try {
    localStorage.removeItem(PREFIX + roomId);
  } catch {
    /* storage unavailable: nothing to forget */
  }
}

export function roomLink(origin, roomId, key) {
  return `${origin}/r/${roomId}#${key}`;
}
