// QR codes made in the browser from the vendored, pinned encoder (MIT). No DOM.
import qrcode from "../vendor/qrcode-generator-2.0.4.mjs";

export function qrDataUrl(text, cellSize = 4, margin = 4) {
  const code = qrcode(0, "M");
  code.addData(text, "Byte");
  code.make();
  return code.createDataURL(cellSize, margin);
}
