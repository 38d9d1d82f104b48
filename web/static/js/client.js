// The client's pre-join page: take the key from the fragment, keep it for this tab only,
// and strip it from the address bar at once. (The call UI comes with the browser-call issue.)
import { ROOM_KEY_RE } from "./keystore.js";

const section = document.getElementById("prejoin");
const roomId = section.dataset.roomId;
const storageKey = `ruang.client-key.${roomId}`;

function takeKey() {
  const fragment = window.location.hash.slice(1);
  if (fragment) {
    history.replaceState(null, "", window.location.pathname + window.location.search);
    if (ROOM_KEY_RE.test(fragment)) {
      try {
        sessionStorage.setItem(storageKey, fragment);
      } catch {
        /* private mode without storage: the key lives in memory only */
      }
      return fragment;
    }
  }
  try {
    return sessionStorage.getItem(storageKey);
  } catch {
    return null;
  }
}

const key = takeKey();
document.getElementById("no-key").hidden = Boolean(key);
document.getElementById("join").disabled = !key;
