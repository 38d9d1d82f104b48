// The room's own counselor opened its full link (/r/<room id>#<key>, e.g. one made by
// `ruang room add`): keep the key in this browser, as the dashboard does for the rooms it makes,
// and go on to the room page. The key is read from the fragment, which never leaves the browser;
// location.replace drops this address (key included) from the history.
import { ROOM_ID_RE, ROOM_KEY_RE, setKey } from "./keystore.js";

const section = document.getElementById("owner-redirect");
const roomId = section ? section.dataset.roomId || "" : "";
const fragment = window.location.hash.slice(1);

if (ROOM_ID_RE.test(roomId)) {
  if (ROOM_KEY_RE.test(fragment)) {
    try {
      setKey(roomId, fragment);
    } catch {
      /* storage unavailable: the room page says this device has no key */
    }
  }
  window.location.replace(`/rooms/${roomId}`);
}
